"""Response bodies of the admin API (request bodies are in :mod:`shared.profiles.model`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.profiles.checks import CheckReport
from shared.profiles.model import Guid, LogicalName, ProfileState


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

    start: datetime | None = Field(default=None, description="Failures logged from (default: 24 hours ago).")
    end: datetime | None = Field(default=None, description="Failures logged until (default: now).")
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
