"""What each function does, as plain calls: the function app only converts bindings to these."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from shared.bootstrap import Container
from shared.contract.parse import ParsedBatch, parse_bodies
from shared.engine.outcomes import BatchResult
from shared.profiles.fanout import FanOutResult
from shared.retry import (
    TRANSIENT,
    ParkedBlob,
    SweepReport,
    blob_name_in,
    handle_poison_message,
    mark_counted,
    park_batch,
    park_profile,
    run_retry_blob,
    sweep_retries,
)
from shared.storage.blobs import RETRY
from shared.storage.claimcheck import Resolution, resolve_references
from shared.storage.failurelog import cleanup_retention
from shared.store.base import MetricsEntry

log = logging.getLogger(__name__)


def handle_notifications(bodies: Sequence[bytes | str], c: Container) -> BatchResult | FanOutResult:
    """Apply one Service Bus batch: fanned out to the profiles (profile mode, a
    :class:`FanOutResult`), or to the one destination (single-destination mode, a :class:`BatchResult`).

    Claim checks (``payloadRef``) are resolved first (download + decrypt); their blobs are deleted
    only after every destination committed or parked them. Failed records go to the failure log and
    unprocessable bodies are kept; both are outcomes, so the messages complete. On a transient
    destination error the notifications are parked in an encrypted retry blob (shared.retry) and
    the function returns normally: the messages are completed after the blob is written. Without
    blob storage the error propagates and Service Bus redelivers the batch (the engine is
    idempotent, so that is safe).
    """
    parsed = parse_bodies(bodies)
    resolution = resolve_references(parsed, c.storage.payloads if c.storage is not None else None)
    if c.runtime is not None:
        return apply_to_profiles(parsed, resolution, c)
    return apply_to_destination(parsed, resolution, c)


# ------------------------------------------------------------------------------ profile mode
def apply_to_profiles(parsed: ParsedBatch, resolution: Resolution, c: Container) -> FanOutResult:
    """Fan out; park each failing profile's own notifications (the others committed and are not
    applied again); keep failures per profile and unprocessable bodies once (``unrouted/``); record
    every profile's metrics in one store round trip; then delete the payload blobs."""
    assert c.runtime is not None
    fan = c.runtime.fanout.apply_parsed(parsed)
    parked = _park_failing_profiles(fan, c)
    _keep_rejects(fan, c)
    c.runtime.store.record_batch(fan.metrics_entries())
    for blob in parked:
        mark_counted(c, blob)
    _delete_payloads(resolution, c)
    _log_fan_out(fan)
    return fan


def _park_failing_profiles(fan: FanOutResult, c: Container) -> list[ParkedBlob]:
    """Retry blobs for the profiles whose destination (or secret) was unavailable."""
    failing = [o.error for o in fan.outcomes.values() if o.error is not None]
    if not failing:
        return []
    if c.storage is None:
        _count_committed(fan, c)
        raise failing[0]
    parked = [park_profile(c, o) for o in fan.outcomes.values() if o.error is not None]
    return [p for p in parked if p is not None]


def _count_committed(fan: FanOutResult, c: Container) -> None:
    """Without Blob storage nothing can be parked and the caller raises, so that Service Bus
    redelivers the batch. What the committed profiles did is final: kept and counted now (to them
    the redelivery is stale); the rest of the batch is counted when it is redelivered."""
    assert c.runtime is not None
    _keep_failures(fan, c)
    committed = [
        MetricsEntry.from_result(pid, o.result) for pid, o in fan.outcomes.items()
        if o.error is None and o.result is not None
    ]  # fmt: skip
    c.runtime.store.record_batch(committed)


def _keep_failures(fan: FanOutResult, c: Container) -> None:
    for pid, o in fan.outcomes.items():
        if o.result is not None:
            c.rejects_of(pid).failures(o.result.failures)


def _keep_rejects(fan: FanOutResult, c: Container) -> None:
    _keep_failures(fan, c)
    c.rejects.unprocessable(fan.unprocessable)  # once for the batch, under unrouted/


def _delete_payloads(resolution: Resolution, c: Container) -> None:
    if c.storage is not None and resolution.blobs:
        c.storage.payloads.delete(resolution.blobs)


def _log_fan_out(fan: FanOutResult) -> None:
    summary = fan.summary()
    log.info(
        "batch of %s notifications to %s profiles: unrouted=%s unprocessable=%s profiles=%s",
        fan.received, len(fan.outcomes), summary["unrouted"], summary["unprocessable"], summary["profiles"],
    )  # fmt: skip


# ------------------------------------------------------------------ single-destination mode
def apply_to_destination(parsed: ParsedBatch, resolution: Resolution, c: Container) -> BatchResult:
    """The one destination of the settings (``DES_DESTINATION_DSN``), as the implicit profile."""
    assert c.engine is not None
    try:
        with c.lock:
            result = c.engine.apply_parsed(parsed)
    except TRANSIENT as exc:
        if c.storage is None:
            raise
        result = park_batch(c, parsed, resolution, exc)
        log.info(
            "batch parked for retry: received=%s unprocessable=%s failed=%s",
            result.received, result.unprocessable, result.failed,
        )  # fmt: skip
        return result
    _delete_payloads(resolution, c)
    c.rejects.failures(result.failures)
    c.rejects.unprocessable(result.unprocessables)
    if c.metrics is not None:
        c.metrics.record(c.profile_id, result)
    log.info(
        "batch: received=%s applied=%s stale=%s failed=%s unprocessable=%s",
        result.received, result.applied, result.stale, result.failed, result.unprocessable,
    )  # fmt: skip
    return result


def handle_retry_blob(path: str, c: Container) -> str:
    """The blob trigger on ``retry/``: retry the parked batch (shared.retry has the design)."""
    if c.storage is None:
        log.error("retry blob %s arrived but no blob storage is configured", path)
        return "ignored"
    outcome = run_retry_blob(blob_name_in(RETRY, path), c)
    return outcome.status.value


def handle_retry_sweep(c: Container) -> SweepReport | None:
    """The retry sweeper timer: due retry blobs (long intervals, lost events, local polling mode)."""
    if c.storage is None:
        return None
    report = sweep_retries(c)
    if report.seen:
        log.info("retry sweep: %s due, %s, %s crashed, %s given up", report.seen, report.processed,
                 report.crashed, report.given_up)
    return report


def handle_blob_poison(text: str, c: Container) -> str:
    """The blob trigger's poison queue: take the blob out of limbo (failure log or unprocessable store)."""
    if c.storage is None:
        return "ignored"
    return handle_poison_message(text, c)


def handle_retention(c: Container) -> int:
    """Daily: delete failure logs, parked failures and unprocessables older than 30 days."""
    if c.storage is None:
        return 0
    return cleanup_retention(c.storage.stores)
