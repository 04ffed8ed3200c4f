"""The admin store's interface: profiles and per-entity sync metrics, one API over three databases.

SQLite (the embedded default), PostgreSQL and Azure SQL / SQL Server implement :class:`Store`
(:mod:`shared.store.sql`); the admin API and the fan-out use only this module's types.

Metrics are kept as counters per (profile, entity), added to in batches: one multi-row upsert per
Service Bus batch covers every profile and entity it touched (:meth:`Store.record_batch`). Two
reserved keys live in the same table so that one statement carries everything:

* entity ``""`` of a profile holds profile-level figures (``pending_retry``; entity names always
  start with a letter, so ``""`` is never an entity);
* profile ``""`` holds notifications that matched no profile at all ("unrouted"; profile ids are
  GUIDs, so ``""`` is never a profile).

The same upsert's transaction adds the batch to a **per-minute history** (``des_metrics_history``:
one row per profile, entity and UTC minute with the minute's counters and the largest lag seen),
which the console's charts read (:meth:`Store.metrics_history`); rows older than
:data:`HISTORY_RETENTION` are pruned as new minutes are written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from shared.engine.outcomes import BatchResult
from shared.metrics import MetricsSink  # noqa: F401  (re-exported: SqlStore implements it)

PROFILE_LEVEL = ""  # the entity key of a profile's own row
UNROUTED = ""  # the profile key of notifications that matched no profile
UNKNOWN_ENTITY = "?"  # the entity key of unprocessable notifications whose entity could not be read
HISTORY_RETENTION = timedelta(days=7)  # per-minute history kept this long


class StoreError(RuntimeError):
    """The store could not be used (unreachable, newer schema, bad DSN)."""


class StoreUnavailable(StoreError):
    """The store's database could not be reached or failed transiently."""


class ProfileExists(StoreError):
    """A profile with this id already exists."""


class DuplicateName(StoreError):
    """Another profile already has this name (names are unique, case-insensitively)."""


class ProfileNotFound(StoreError):
    pass


class RevisionConflict(StoreError):
    """The profile changed since the caller read it (optimistic concurrency)."""


class ExportStatus(str, Enum):
    SUCCESS = "Success"
    PARTIAL = "PartialSuccess"
    FAILURE = "Failure"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A profile as the store keeps it: indexed columns plus the validated definition (JSON)."""

    id: str  # lower-case GUID
    name: str
    organization_id: str  # lower-case GUID
    state: str  # draft | active | inactive
    definition: Mapping[str, Any]  # every other field, as the API validated it
    revision: int = 1
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def name_key(self) -> str:
        return self.name.casefold()


@dataclass(slots=True)
class EntityDelta:
    """What one batch adds to one (profile, entity) row."""

    received: int = 0
    applied: int = 0
    failed: int = 0
    stale: int = 0
    unprocessable: int = 0
    skipped: int = 0
    pending_retry: int = 0
    last_changed_on: datetime | None = None
    status: ExportStatus | None = None  # None: leave LastExportStatus/LastExportDate as they are

    def empty(self) -> bool:
        return not (
            self.received
            or self.applied
            or self.failed
            or self.stale
            or self.unprocessable
            or self.skipped
            or self.pending_retry
            or self.last_changed_on
            or self.status
        )


def _status(applied: int, stale: int, failed: int, unprocessable: int) -> ExportStatus | None:
    bad = failed + unprocessable
    good = applied + stale
    if not bad and not good:
        return None
    if not bad:
        return ExportStatus.SUCCESS
    return ExportStatus.PARTIAL if good else ExportStatus.FAILURE


@dataclass(slots=True)
class MetricsEntry:
    """One profile's (or the unrouted bucket's) additions from one batch."""

    profile_id: str
    entities: dict[str, EntityDelta] = field(default_factory=dict)

    @classmethod
    def from_result(cls, profile_id: str, result: BatchResult, *, pending_retry: int = 0) -> MetricsEntry:
        entry = cls(profile_id.lower())
        for name, c in result.per_entity.items():
            entry.entities[name] = EntityDelta(
                received=c.received,
                applied=c.applied,
                failed=c.failed,
                stale=c.stale,
                unprocessable=c.unprocessable,
                last_changed_on=c.last_changed_on,
                status=_status(c.applied, c.stale, c.failed, c.unprocessable),
            )
        # Notifications whose entity could not be read (unprocessable bodies) are in the totals only.
        rest = EntityDelta(
            received=result.received - sum(c.received for c in result.per_entity.values()),
            applied=result.applied - sum(c.applied for c in result.per_entity.values()),
            failed=result.failed - sum(c.failed for c in result.per_entity.values()),
            stale=result.stale - sum(c.stale for c in result.per_entity.values()),
            unprocessable=result.unprocessable - sum(c.unprocessable for c in result.per_entity.values()),
        )
        if not rest.empty():
            known = entry.entities.get(UNKNOWN_ENTITY) or EntityDelta()
            for name in ("received", "applied", "failed", "stale", "unprocessable"):
                setattr(known, name, getattr(known, name) + getattr(rest, name))
            known.status = _status(known.applied, known.stale, known.failed, known.unprocessable)
            entry.entities[UNKNOWN_ENTITY] = known
        if pending_retry:
            entry.entities[PROFILE_LEVEL] = EntityDelta(pending_retry=pending_retry)
        return entry

    @classmethod
    def skipped(cls, profile_id: str, per_entity: Mapping[str, int]) -> MetricsEntry:
        """Notifications completed without applying them (the profile is inactive)."""
        return cls(
            profile_id.lower(),
            {e: EntityDelta(received=n, skipped=n) for e, n in per_entity.items() if n},
        )

    @classmethod
    def unrouted(cls, per_entity: Mapping[str, int]) -> MetricsEntry:
        """Notifications that matched no profile: counted as skipped under the reserved key."""
        return cls(UNROUTED, {e: EntityDelta(received=n, skipped=n) for e, n in per_entity.items() if n})


@dataclass(frozen=True, slots=True)
class EntityMetrics:
    entity: str
    total: int
    success: int
    failure: int
    stale: int
    unprocessable: int
    skipped: int
    pending_retry: int
    last_export_date: datetime | None
    last_export_status: str | None
    last_changed_on: datetime | None
    initial_sync_state: str


@dataclass(frozen=True, slots=True)
class ProfileMetrics:
    profile_id: str
    entities: list[EntityMetrics]
    pending_retry: int
    last_batch_at: datetime | None


@dataclass(frozen=True, slots=True)
class HistoryBucket:
    """One (entity, UTC minute) of a profile's history: what the batches of that minute added."""

    entity: str
    minute: datetime  # the minute's start, UTC
    total: int
    success: int
    failure: int
    stale: int
    unprocessable: int
    skipped: int
    lag_seconds: float | None  # largest (record time - changedOn of the newest applied) in the minute


class Store(Protocol):
    """Profiles and metrics. Every method is thread-safe; connections are pooled per store."""

    dialect: str

    def migrate(self) -> int:
        """Apply pending schema migrations (done on open); return the schema version."""

    def schema_version(self) -> int: ...

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""

    # ------------------------------------------------------------------------------- profiles
    def create_profile(self, profile: StoredProfile) -> StoredProfile: ...

    def get_profile(self, profile_id: str) -> StoredProfile | None: ...

    def list_profiles(
        self, *, organization_id: str | None = None, states: Sequence[str] | None = None
    ) -> list[StoredProfile]: ...

    def update_profile(self, profile: StoredProfile, *, expected_revision: int | None = None) -> StoredProfile:
        """Replace the profile's name, organization, state and definition; bump its revision."""

    def delete_profile(self, profile_id: str) -> bool:
        """Delete the profile and its metrics in one transaction; False when there was none."""

    # -------------------------------------------------------------------------------- metrics
    def record(self, profile_id: str, result: BatchResult, *, pending_retry: int = 0) -> None:
        """:class:`MetricsSink`: add one batch's outcomes for one profile (one round trip)."""

    def record_batch(self, entries: Sequence[MetricsEntry]) -> None:
        """Add many profiles' outcomes of one batch in one round trip (one multi-row upsert)."""

    def metrics(self, profile_id: str) -> ProfileMetrics: ...

    def metrics_history(
        self, profile_id: str, start: datetime, end: datetime, *, entity: str | None = None
    ) -> list[HistoryBucket]:
        """The profile's per-minute buckets with ``start <= minute < end``, by entity then minute."""

    def set_initial_sync_state(self, profile_id: str, entity: str, state: str) -> None: ...

    def close(self) -> None: ...
