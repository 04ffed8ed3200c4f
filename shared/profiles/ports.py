"""What the admin API needs from Blob storage (issue 3), as small protocols.

* :class:`FailureLogReader`: the failure log (``failurelog/<profile>/<yyyy>/<mm>/<dd>/<hh>/...``,
  CSV like DES's), read by time range, streamed; in Azure also read-only SAS links.
* :class:`ParkedFailureReader`: the failed notifications themselves, kept encrypted for the retention
  period so a re-sync can re-apply them.
* :class:`ProfileBlobs`: removes everything a deleted profile left in Blob storage (failure log,
  parked failures, retry blobs).

The API works without them (the endpoints then answer 503 with the reason); the function app wires
the Blob storage implementations in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.contract.models import Notification
from shared.destinations.checks import CheckReport
from shared.engine import failure_schema as F
from shared.profiles.model import DataverseSource, Profile


@dataclass(frozen=True, slots=True)
class FailureEntry:
    """One failure-log line."""

    entity: str
    record_id: str
    notification_time: str  # as logged (ISO 8601)
    change_type: str
    failure_reason: str
    logged_at: datetime  # when the line was written (the log's hour folder, or the line's own time)
    version: int | None = None

    def row(self) -> dict[str, str]:
        return {
            F.ENTITY: self.entity,
            F.RECORD_ID: self.record_id,
            F.NOTIFICATION_TIME: self.notification_time,
            F.CHANGE_TYPE: self.change_type,
            F.VERSION: "" if self.version is None else str(self.version),
            F.FAILURE_REASON: self.failure_reason,
            F.LOGGED_AT: self.logged_at.isoformat().replace("+00:00", "Z"),
        }

    @property
    def key(self) -> tuple[str, str]:
        return (self.entity, self.record_id.lower())


@dataclass(frozen=True, slots=True)
class SasLink:
    blob: str
    url: str
    expires_on: datetime


class FailureLogReader(Protocol):
    def entries(self, profile_id: str, start: datetime, end: datetime) -> Iterator[FailureEntry]:
        """Failure-log lines of the profile logged in [start, end), oldest first, streamed."""

    def links(self, profile_id: str, start: datetime, end: datetime) -> list[SasLink] | None:
        """Read-only user-delegation SAS URLs (24 hours) of the log blobs in range; None where
        the storage account has no Entra authentication (local development)."""


class ParkedFailureReader(Protocol):
    def get(self, profile_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Notification]:
        """The newest parked failed notification per (entity, lower-case record id) found."""

    def resolved(self, profile_id: str, keys: Sequence[tuple[str, str]]) -> None:
        """Forget parked notifications that were re-applied (or became stale)."""


class ProfileBlobs(Protocol):
    def delete_profile(self, profile_id: str) -> int:
        """Delete the profile's failure logs, parked failures and retry blobs; return how many."""


@dataclass(frozen=True, slots=True)
class SourceTable:
    """A table of a source environment, as its metadata describes it (``EntityDefinitions``)."""

    logical_name: str
    schema_name: str
    entity_set_name: str
    display_name: str | None
    change_tracking: bool
    is_intersect: bool


class SourceReadError(Exception):
    """The source could not be read: ``transient`` (unreachable, throttled) or not (token, access, request)."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True, slots=True)
class SourceRecords:
    """Failed records re-read from the source: notification bodies (current rows, or deletes for
    records that are gone), and the keys the source does not read (re-synced from the parked copy)."""

    bodies: list[bytes]
    unread: list[tuple[str, str]]


class SourcePort(Protocol):
    """The Dataverse source of the profiles (shared/pull/work.py), as the profile service needs it."""

    def check(self, source: DataverseSource, organization_id: str, tables: Sequence[str]) -> CheckReport:
        """Token, reachability, organization, and per table: exists, change tracking, organization-level read."""

    def tables(self, source: DataverseSource) -> list[SourceTable]:
        """Every table of the environment, by logical name; :class:`SourceReadError` with the reason."""

    def activated(self, profile: Profile) -> int:
        """Enqueue the initial sync of every table (asynchronous: returns at once); units sent."""

    def forget(self, profile_id: str, entities: Sequence[str] | None = None) -> None:
        """Drop the profile's cursors (all, or of these tables)."""

    def status(self, profile: Profile) -> list[Any]:
        """Per table: initial sync state, rows read, pages, last poll, source lag, next poll."""

    def reread(self, profile: Profile, keys: Sequence[tuple[str, str]]) -> SourceRecords:
        """The current state of (entity, record id) from the source by id; :class:`SourceReadError`."""
