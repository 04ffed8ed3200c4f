"""The retry sweeper (due blobs, lost events, local polling) and giving up on a blob (also for the
poison queue: :mod:`shared.retry.poison`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from shared.retry.attempt import process_retry_blob
from shared.retry.batch import M_COUNTED, fail_all, parse_parked, short, unprocessable_too
from shared.retry.ports import RetryDeps
from shared.retry.quarantine import profile_of, quarantine
from shared.storage.blobs import (
    M_CRASHES,
    M_LAST_ERROR,
    BlobMissing,
    BlobStoreError,
    RetryState,
    verify_retry_batch,
)

log = logging.getLogger(__name__)

POISON_THRESHOLD = 5  # like the Functions host's blob trigger (maxDequeueCount 5)


def give_up(name: str, deps: RetryDeps, reason: str) -> str:
    """Take a retry blob out of limbo: its notifications to the failure log, or, if it cannot be read,
    the blob as it is (still encrypted) to unprocessablemessages/ with the reason. Returns what was done."""
    retries, router = deps.retries, deps.router
    try:
        state = retries.state(name)
    except BlobMissing:
        return "gone"
    if state.problem is not None:
        quarantine(deps, state, f"{reason}; {state.problem}")
        return "unprocessable"
    profile_id = profile_of(state, router.default_profile_id)
    counted = state.raw.get(M_COUNTED) == "1"
    pending = -state.count if counted else 0
    try:
        batch = retries.read(name, state=state)
        verify_retry_batch(name, batch)
    except BlobStoreError as exc:  # cannot be decrypted, or not what its name says: kept as it is
        quarantine(deps, state, f"{reason}; {short(exc)}")
        return "unprocessable"
    parsed = parse_parked(batch.notifications)
    failed = fail_all(parsed.notifications, f"retry processing kept failing: {reason}", parsed.metadata)
    result = unprocessable_too(failed, parsed.unprocessable)
    rejects = router.rejects_of(profile_id)
    rejects.failures(result.failures)
    rejects.unprocessable(result.unprocessables)
    router.record(profile_id, result, pending)
    retries.delete(name)
    log.error("retry blob %s kept failing (%s); %s notifications in the failure log", name, reason,
              len(parsed.notifications))
    return "failed"


def blob_name_in(container: str, path: str) -> str:
    """``retry/<name>`` (what the trigger's InputStream.name holds) to ``<name>``."""
    prefix = f"{container}/"
    return path[len(prefix):] if path.startswith(prefix) else path


@dataclass
class SweepReport:
    seen: int = 0
    processed: dict[str, int] = field(default_factory=dict)
    crashed: int = 0
    given_up: int = 0


def sweep_retries(deps: RetryDeps, *, now: datetime | None = None, limit: int = 200) -> SweepReport:
    """The timer function: process the retry blobs that are due (also those whose event was lost)."""
    report = SweepReport()
    now = now or deps.clock()
    due = [s for s in deps.retries.states() if s.not_before <= now or s.problem is not None]
    for state in due[:limit]:
        report.seen += 1
        try:
            outcome = process_retry_blob(state.name, deps, now=now)
        except Exception as exc:
            report.crashed += 1
            _count_crash(deps, state, exc, report)
            continue
        report.processed[outcome.status.value] = report.processed.get(outcome.status.value, 0) + 1
    return report


def _count_crash(deps: RetryDeps, state: RetryState, exc: Exception, report: SweepReport) -> None:
    log.error("retry blob %s raised: %s", state.name, short(exc))
    try:
        fresh = deps.retries.state(state.name)
    except BlobMissing:
        return
    crashes = fresh.crashes + 1
    if crashes >= POISON_THRESHOLD:
        give_up(state.name, deps, f"processing raised {crashes} times: {short(exc)}")
        report.given_up += 1
        return
    deps.retries.update(fresh, {M_CRASHES: str(crashes), M_LAST_ERROR: short(exc)})
