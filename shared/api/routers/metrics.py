"""Metrics: per profile and entity (DES's counters, lag), and the service's (profiles per state, unrouted)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from shared.api.deps import ERRORS, ProfileId, Svc
from shared.api.schemas import EntityMetricsOut, MetricsOut, ServiceMetricsOut, SourceEntityOut, SourceOut
from shared.profiles.model import ProfileState
from shared.store.base import UNROUTED, EntityMetrics

router = APIRouter()


def _entity_out(e: EntityMetrics, now: datetime) -> EntityMetricsOut:
    lag = (now - e.last_changed_on).total_seconds() if e.last_changed_on else None
    return EntityMetricsOut(
        entity=e.entity,
        TotalNotifications=e.total,
        SuccessNotifications=e.success,
        FailureNotifications=e.failure,
        StaleNotifications=e.stale,
        UnprocessableNotifications=e.unprocessable,
        SkippedNotifications=e.skipped,
        LastExportDate=e.last_export_date,
        LastExportStatus=e.last_export_status,
        InitialSyncState=e.initial_sync_state,
        lastChangedOn=e.last_changed_on,
        lagSeconds=None if lag is None else max(0.0, round(lag, 3)),
    )

@router.get("/profiles/{profile_id}/metrics", response_model=MetricsOut, tags=["metrics"], responses=ERRORS)
def profile_metrics(s: Svc, profile_id: ProfileId) -> Any:
    """Per entity: notifications total, succeeded, failed, stale, unprocessable, skipped; last
    export date and status; initial sync state; lag (now minus changedOn of the last applied)."""
    p, m = s.profiles.metrics(profile_id)
    now = s.clock()
    entities = [_entity_out(e, now) for e in m.entities]
    totals = {
        "TotalNotifications": sum(e.total for e in m.entities),
        "SuccessNotifications": sum(e.success for e in m.entities),
        "FailureNotifications": sum(e.failure for e in m.entities),
        "StaleNotifications": sum(e.stale for e in m.entities),
        "UnprocessableNotifications": sum(e.unprocessable for e in m.entities),
        "SkippedNotifications": sum(e.skipped for e in m.entities),
    }
    return MetricsOut(
        profileId=p.id, state=p.state, pendingRetry=m.pending_retry, lastBatchAt=m.last_batch_at,
        totals=totals, entities=entities,
    )  # fmt: skip

@router.get("/profiles/{profile_id}/source", response_model=SourceOut, tags=["metrics"], responses=ERRORS)
def profile_source(s: Svc, profile_id: ProfileId) -> Any:
    """The profile's Dataverse source per table: initial sync state (with the reason when Failed),
    rows read, pages, last poll, source lag (now minus the newest modifiedon read), next poll."""
    p, rows = s.profiles.source_status(profile_id)
    assert p.source is not None
    entities = [SourceEntityOut(
        entity=r.entity, InitialSyncState=r.initial_sync_state, reason=r.reason, phase=r.phase, rowsRead=r.rows_read,
        deletesRead=r.deletes_read, pages=r.pages, lastPoll=r.last_poll, sourceLagSeconds=r.source_lag_seconds,
        nextPoll=r.next_poll,
    ) for r in rows]  # fmt: skip
    return SourceOut(profileId=p.id, state=p.state, environmentUrl=p.source.environmentUrl,
                     authKind=p.source.auth.kind.value, entities=entities)  # fmt: skip

@router.get("/metrics", response_model=ServiceMetricsOut, tags=["metrics"], responses=ERRORS)
def service_metrics(s: Svc) -> Any:
    """Profiles per state, and notifications that matched no profile (skipped), per entity."""
    counts = {st.value: 0 for st in ProfileState}
    for p in s.profiles.list_profiles():
        counts[p.state.value] += 1
    now = s.clock()
    unrouted = [_entity_out(e, now) for e in s.store.metrics(UNROUTED).entities]
    return ServiceMetricsOut(profiles=counts, unrouted=unrouted)
