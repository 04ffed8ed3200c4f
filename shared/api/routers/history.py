"""``GET /profiles/{id}/metrics/history``: a profile's per-minute metrics over the last minutes,
from the store's history (:meth:`shared.store.base.Store.metrics_history`). The console's charts
and its "failures in the last 24 hours" read it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from shared.api.deps import ERRORS as DEPS_ERRORS
from shared.api.deps import ProfileId, Svc
from shared.contract.models import NAME_PATTERN
from shared.store.base import HISTORY_RETENTION, HistoryBucket

DEFAULT_MINUTES = 180
MAX_MINUTES = int(HISTORY_RETENTION.total_seconds() // 60)

router = APIRouter(tags=["metrics"])


ERRORS: dict[int | str, dict[str, Any]] = {k: v for k, v in DEPS_ERRORS.items() if k in (401, 403, 404, 422, 503)}


class HistoryPointOut(BaseModel):
    minute: datetime = Field(description="Start of the UTC minute.")
    TotalNotifications: int
    SuccessNotifications: int
    FailureNotifications: int
    StaleNotifications: int
    UnprocessableNotifications: int
    SkippedNotifications: int
    lagSeconds: float | None = Field(
        description="The largest lag recorded in the minute: when a batch was counted, minus changedOn of its "
        "newest applied notification (null: nothing applied)."
    )

    @classmethod
    def of(cls, b: HistoryBucket) -> HistoryPointOut:
        return cls(
            minute=b.minute, TotalNotifications=b.total, SuccessNotifications=b.success,
            FailureNotifications=b.failure, StaleNotifications=b.stale,
            UnprocessableNotifications=b.unprocessable, SkippedNotifications=b.skipped, lagSeconds=b.lag_seconds,
        )  # fmt: skip


class EntityHistoryOut(BaseModel):
    entity: str
    points: list[HistoryPointOut] = Field(description="Minutes with notifications, oldest first (absent: none).")


class MetricsHistoryOut(BaseModel):
    profileId: str
    start: datetime = Field(description="The first minute of the window (inclusive).")
    end: datetime = Field(description="The end of the window (exclusive): the start of the next minute.")
    bucketSeconds: int = Field(description="Every point covers this many seconds (60).")
    entities: list[EntityHistoryOut]


@router.get("/profiles/{profile_id}/metrics/history", response_model=MetricsHistoryOut, responses=ERRORS)
def metrics_history(
    s: Svc,
    profile_id: ProfileId,
    minutes: Annotated[
        int, Query(ge=1, le=MAX_MINUTES, description=f"The last N minutes (at most {MAX_MINUTES}: 7 days kept).")
    ] = DEFAULT_MINUTES,
    entity: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this entity.")] = None,
) -> Any:
    """Per entity and minute: notifications total, succeeded, failed, stale, unprocessable, skipped,
    and the largest lag, over the last ``minutes`` minutes (the current one included)."""
    p = s.profiles.get(profile_id)
    end = s.clock().replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    grouped: dict[str, list[HistoryPointOut]] = {}
    for b in s.store.metrics_history(p.id, start, end, entity=entity):
        grouped.setdefault(b.entity, []).append(HistoryPointOut.of(b))
    return MetricsHistoryOut(
        profileId=p.id, start=start, end=end, bucketSeconds=60,
        entities=[EntityHistoryOut(entity=e, points=pts) for e, pts in grouped.items()],
    )  # fmt: skip
