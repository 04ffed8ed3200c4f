"""What each function does, as plain calls: the function app only converts bindings to these.

Every handler takes the composition root (:mod:`shared.root`) and passes on narrow parts of it:
the router (both modes, :mod:`shared.routing`) and the retry dependencies (Blob storage).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from shared.chunking import chunks
from shared.profiles.fanout import UNROUTED_FOLDER, FanOutResult
from shared.retry.attempt import run_retry_blob
from shared.retry.park import hold_batch
from shared.retry.poison import PoisonScan, scan_poison_queue
from shared.retry.sweep import SweepReport, blob_name_in, sweep_retries
from shared.root import Holding, Root
from shared.source.dataverse.push import Message, StoreDown, parse_messages
from shared.storage.blobs import RETRY
from shared.storage.claimcheck import Resolution, resolve_references
from shared.storage.failurelog import cleanup_retention
from shared.store.base import StoreUnavailable

if TYPE_CHECKING:
    from shared.contract.parse import ParsedBatch
    from shared.rejects import RejectSink
    from shared.storage.account import Storage

log = logging.getLogger(__name__)


def handle_notifications(bodies: Sequence[Message], root: Root) -> FanOutResult:
    """Apply one Service Bus batch through the root's router: fanned out to the profiles (profile
    mode) or to the one fixed target (single-destination mode), the same code and result type.

    Claim checks (``payloadRef``) are resolved first (download + decrypt); their blobs are deleted
    only after every destination committed or parked them. Failed records go to the failure log and
    unprocessable bodies are kept; both are outcomes, so the messages complete. On a transient
    destination error the failing target's notifications are parked in an encrypted retry blob
    (shared.retry; the other targets committed) and the function returns normally: the messages are
    completed after the blob is written. Without blob storage the error propagates and Service Bus
    redelivers the batch (the engine is idempotent, so that is safe; the chunks before it stay
    applied and are stale on redelivery).

    The batch is applied in chunks of at most ``DES_BATCH_BYTES`` bytes of message bodies (default
    2 MiB; a large contract envelope is cut too: shared/chunking.py), one after the other, so memory
    is bounded by a chunk whatever the host delivers; the result is the chunks' results merged.
    """
    return _merged(_apply_chunk(chunk, root) for chunk in chunks(bodies, root.config.batch_bytes))


def _merged(results: Iterable[FanOutResult]) -> FanOutResult:
    total: FanOutResult | None = None
    for result in results:
        if total is None:
            total = result
        else:
            total.merge(result)
    return total if total is not None else FanOutResult()


def _apply_chunk(bodies: Sequence[Message], root: Root) -> FanOutResult:
    # Contract v1 bodies and Dataverse's own Service Bus messages (RemoteExecutionContext, recognised
    # by their application properties or shape: docs/dataverse-push.md) on the same queue. A Dataverse
    # message without a full post-image is re-read by id through the Dataverse source of its
    # organization's profiles (root.rereads); without one it is unprocessable with the reason
    # (register the post-image), never applied partially.
    parsed = parse_messages(bodies, reread_for=root.rereads)
    if parsed.skipped:
        log.info("Service Bus batch: %s Dataverse message(s) superseded at the source, skipped", len(parsed.skipped))
    resolution = resolve_references(parsed, root.storage.payloads if root.storage is not None else None)
    try:
        return root.router.apply_batch(parsed, resolution, root.retries)
    except StoreUnavailable as exc:
        # The admin store cannot be reached: the batch is healthy, so it is held in Blob storage and
        # the messages complete; no delivery attempt is spent and nothing is dead-lettered
        # (docs/deploy.md "A configuration mistake never dead-letters healthy messages").
        if root.storage is None:
            raise  # no Blob storage to hold it in (local runs): Service Bus redelivers
        return _held(root.storage, root.router.rejects_of(UNROUTED_FOLDER), parsed, resolution, exc,
                     root.config.retry.interval_seconds)  # fmt: skip


def _held(
    storage: Storage, unrouted: RejectSink, parsed: ParsedBatch, resolution: Resolution, exc: StoreUnavailable,
    interval_seconds: float,
) -> FanOutResult:
    """Hold a healthy batch whole in ``retry/held-for-routing/`` (the admin store is unreachable);
    its unprocessable bodies are kept, so the messages complete."""
    hold_batch(storage.retries, unrouted, parsed, resolution, exc, now=storage.clock(),
               interval_seconds=interval_seconds)  # fmt: skip
    return FanOutResult(received=parsed.received, unprocessable=list(parsed.unprocessable))


def handle_service_bus(
    bodies: Sequence[Message], get_root: Callable[[], Root], get_holding: Callable[[], Holding]
) -> FanOutResult:
    """The Service Bus function: :func:`handle_notifications` through the process's root. When the
    root cannot even be built because the admin store is unreachable (its first connection fails),
    the batch is held the same way with the storage account alone, and the messages complete.
    Without Blob storage the error propagates (Service Bus redelivers; local runs only)."""
    try:
        r = get_root()
    except StoreUnavailable as exc:
        held = get_holding()
        storage = held.storage
        if storage is None:
            raise
        results = []
        why = str(exc)
        for chunk in chunks(bodies, held.batch_bytes):  # bounded memory, as when applying
            # Messages needing a re-read are kept with the reason (no profile, so no source, to read)
            parsed = parse_messages(chunk, reread_for=lambda org: StoreDown(org, why))
            resolution = resolve_references(parsed, storage.payloads)
            results.append(_held(storage, storage.rejects(UNROUTED_FOLDER), parsed, resolution, exc,
                                 held.interval_seconds))  # fmt: skip
        return _merged(results)
    return handle_notifications(bodies, r)


def handle_retry_event(path: str, get_root: Callable[[], Root]) -> str:
    """The blob trigger function: :func:`handle_retry_blob` through the process's root. When the root
    cannot be built because the admin store is unreachable, the blob is left as it is for the retry
    sweeper (which runs every minute and takes it once the store answers): raising would spend the
    trigger's retries and put a healthy batch on the poison path."""
    try:
        r = get_root()
    except StoreUnavailable as exc:
        log.warning("retry blob %s left for the sweeper: the admin store is unavailable (%s)", path, exc)
        return "deferred"
    return handle_retry_blob(path, r)


def handle_retry_blob(path: str, root: Root) -> str:
    """The blob trigger on ``retry/``: retry the parked batch (shared.retry has the design)."""
    retries = root.retries
    if retries is None:
        log.error("retry blob %s arrived but no blob storage is configured", path)
        return "ignored"
    return run_retry_blob(blob_name_in(RETRY, path), retries).status.value


def handle_retry_sweep(root: Root) -> SweepReport | None:
    """The retry sweeper timer: due retry blobs (long intervals, lost events, local polling mode)."""
    retries = root.retries
    if retries is None:
        return None
    report = sweep_retries(retries)
    if report.seen:
        log.info("retry sweep: %s due, %s, %s crashed, %s given up", report.seen, report.processed,
                 report.crashed, report.given_up)
    return report


def handle_blob_poison(root: Root) -> PoisonScan | None:
    """The poison queue timer: our retry blobs that kept failing out of limbo (failure log or
    unprocessable store); other containers' and apps' receipts on the shared queue left alone."""
    retries, queue = root.retries, root.poison_queue()
    if retries is None or queue is None:
        return None
    return scan_poison_queue(queue, retries)


def handle_retention(root: Root) -> int:
    """Daily: delete failure logs, parked failures and unprocessables older than 30 days."""
    return cleanup_retention(root.storage.stores) if root.storage is not None else 0


def handle_source_page(text: str | bytes, root: Root) -> str:
    """The page queue trigger: one unit of the Dataverse source (one page of one table of one profile)."""
    if root.source is None:
        log.error("a source page unit arrived but this app runs no Dataverse source (profile mode only)")
        return "ignored"
    return root.source.handle_page(text).value


def handle_source_poll(root: Root) -> int:
    """The poll timer: a unit for every table whose delta link is due, or whose pass was interrupted."""
    return root.source.poll() if root.source is not None else 0
