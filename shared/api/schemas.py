"""Response bodies of the admin API (request bodies are in :mod:`shared.profiles.model`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from shared.profiles.checks import CheckReport
from shared.profiles.model import Guid, LogicalName, ProfileState

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: object) -> object:
    """A time in a request: an RFC 3339 date-time with its offset (``2026-11-30T08:00:00Z``), as the
    schema's ``format: date-time`` says; not a number of seconds, not a naive or date-only value."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, such as 2026-11-30T08:00:00Z")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]


class ValidationItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class CheckOut(BaseModel):
    name: str = Field(description="secret, connect, schema, create table, drop table, destination, name")
    ok: bool
    detail: str


class Problem(BaseModel):
    """Every error: a reason, or for request validation the failing fields."""

    detail: str | list[ValidationItem]
    checks: list[CheckOut] | None = Field(default=None, description="The destination check, when it failed.")


class ValidationOut(BaseModel):
    valid: bool
    checks: list[CheckOut]

    @classmethod
    def of(cls, report: CheckReport) -> ValidationOut:
        return cls(valid=report.ok, checks=[CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in report.checks])


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    store: Literal["ok", "unavailable"]
    schemaVersion: int | None = None


class DeletedOut(BaseModel):
    id: str
    blobsDeleted: int = Field(description="Failure-log, parked and retry blobs removed with it.")


class EntityMetricsOut(BaseModel):
    entity: str
    TotalNotifications: int
    SuccessNotifications: int
    FailureNotifications: int
    StaleNotifications: int
    UnprocessableNotifications: int
    SkippedNotifications: int = Field(description="Completed without applying: the profile was inactive.")
    LastExportDate: datetime | None
    LastExportStatus: str | None = Field(description="Success, PartialSuccess or Failure (last batch).")
    InitialSyncState: str
    lastChangedOn: datetime | None = Field(description="changedOn of the newest applied notification.")
    lagSeconds: float | None = Field(description="Now minus lastChangedOn.")


class MetricsOut(BaseModel):
    profileId: str
    state: ProfileState
    pendingRetry: int = Field(description="Notifications parked in retry blobs, waiting for the destination.")
    lastBatchAt: datetime | None
    totals: dict[str, int]
    entities: list[EntityMetricsOut]


class ServiceMetricsOut(BaseModel):
    profiles: dict[str, int] = Field(description="Profiles per state.")
    unrouted: list[EntityMetricsOut] = Field(description="Notifications that matched no profile, per entity.")


class FailureOut(BaseModel):
    Entity: str
    RecordId: str
    NotificationTime: str
    ChangeType: str
    Version: str
    FailureReason: str
    LoggedAt: str


class LinkOut(BaseModel):
    blob: str
    url: str
    expiresOn: datetime


class LinksOut(BaseModel):
    links: list[LinkOut]


class ResyncIn(BaseModel):
    model_config = {"extra": "forbid"}

    start: Rfc3339 | None = Field(default=None, description="Failures logged from (default: end minus 24 hours).")
    end: Rfc3339 | None = Field(default=None, description="Failures logged until (default: now).")
    entities: list[LogicalName] = Field(default_factory=list, max_length=1000, description="Only these entities.")
    recordIds: list[Guid] = Field(default_factory=list, max_length=10_000, description="Only these records.")


class ResyncOut(BaseModel):
    selected: int
    missing: int = Field(description="Selected failures with no parked notification left.")
    fromSource: int = Field(
        default=0,
        description="Selected failures re-read from the profile's Dataverse source by id (current state; "
        "a record that is gone is deleted).",
    )
    counts: dict[str, Any]


class SourceEntityOut(BaseModel):
    entity: str
    InitialSyncState: str = Field(description="NotStarted, InProgress, Completed or Failed (see reason).")
    reason: str | None = Field(description="Why the table failed, or the last fault it recovered from.")
    phase: str = Field(description="metadata, initial, reconcile, delta or resync (empty before the first unit).")
    rowsRead: int
    deletesRead: int
    pages: int
    lastPoll: datetime | None
    sourceLagSeconds: float | None = Field(description="Now minus the newest modifiedon read.")
    nextPoll: datetime | None


class SourceOut(BaseModel):
    profileId: str
    state: ProfileState
    environmentUrl: str
    authKind: str
    entities: list[SourceEntityOut]
