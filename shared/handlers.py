"""What each function does, as plain calls: the function app only converts bindings to these."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from shared.bootstrap import Container
from shared.contract.parse import parse_bodies
from shared.engine.outcomes import BatchResult
from shared.retry import (
    TRANSIENT,
    SweepReport,
    blob_name_in,
    handle_poison_message,
    park_batch,
    run_retry_blob,
    sweep_retries,
)
from shared.storage.blobs import RETRY
from shared.storage.claimcheck import resolve_references
from shared.storage.failurelog import cleanup_retention

log = logging.getLogger(__name__)


def handle_notifications(bodies: Sequence[bytes | str], c: Container) -> BatchResult:
    """Apply one Service Bus batch.

    Claim checks (``payloadRef``) are resolved first (download + decrypt); their blobs are deleted
    only after the destination commit. Failed records go to the failure log and unprocessable
    bodies are kept; both are outcomes, so the messages complete. On a transient destination error
    the batch is parked in an encrypted retry blob (shared.retry) and the function returns
    normally: the messages are completed after the blob is written. Without blob storage the error
    propagates and Service Bus redelivers the batch (the engine is idempotent, so that is safe).
    """
    parsed = parse_bodies(bodies)
    storage = c.storage
    resolution = resolve_references(parsed, storage.payloads if storage is not None else None)
    try:
        with c.lock:
            result = c.engine.apply_parsed(parsed)
    except TRANSIENT as exc:
        if storage is None:
            raise
        result = park_batch(c, parsed, resolution, exc)
        log.info(
            "batch of %s messages parked for retry: received=%s unprocessable=%s failed=%s",
            len(bodies), result.received, result.unprocessable, result.failed,
        )
        return result
    if storage is not None and resolution.blobs:
        storage.payloads.delete(resolution.blobs)
    c.rejects.failures(result.failures)
    c.rejects.unprocessable(result.unprocessables)
    if c.metrics is not None:
        c.metrics.record(c.profile_id, result)
    log.info(
        "batch of %s messages: received=%s applied=%s stale=%s failed=%s unprocessable=%s",
        len(bodies), result.received, result.applied, result.stale, result.failed, result.unprocessable,
    )
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
