"""Retries through blobs: park a batch on a transient destination error, retry it later, log what still fails.

The design (docs/storage.md has the whole story):

1. The Service Bus handler catches a transient destination error, writes the batch's valid
   notifications to an encrypted blob ``retry/<profile>/<batch key>.json`` (metadata: attempt 0,
   not-before = now + interval, first-seen, profile, count) and returns normally, so the messages
   are completed only after the blob is safely written. The batch key is a hash of the
   notifications: a redelivered batch parks into the same blob, never twice.
2. The blob-triggered function (Event Grid source) gets the new blob and calls
   :func:`run_retry_blob`: it waits for the not-before time only when that is within the inline
   wait budget (short intervals: the default is 5 s), then :func:`process_retry_blob` takes a blob
   lease (one worker at a time), applies, and either deletes the blob (done), reschedules it by
   updating its metadata (attempt + 1, new not-before; no rewrite, so no new event and no busy
   loop), or, after the profile's retry count, writes each notification to the failure log with
   the reason and deletes the blob.
3. Long intervals are not waited for in a worker: the retry sweeper (a timer function, every
   minute) lists ``retry/`` with metadata and processes the blobs that are due. It also picks up
   blobs whose event was lost, and is the local polling mode (Azurite has no Event Grid).
4. Poison: an exception (a blob that cannot be decrypted, storage trouble) propagates, so the host
   retries the blob trigger and finally puts the blob on its poison queue
   ``webjobs-blobtrigger-poison``; :func:`handle_poison_message` then moves it out of limbo: its
   notifications to the failure log, or, if it cannot be read, the encrypted blob as it is to
   ``unprocessablemessages/`` with the reason. The sweeper counts its own crashes per blob in the
   metadata and does the same after the same threshold.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from shared.contract.models import Notification
from shared.contract.parse import ParsedBatch, Unprocessable
from shared.destinations.base import ConnectionFailed, TransientDestinationError
from shared.engine.outcomes import BatchResult, RecordFailure
from shared.settings import (
    RETRY_COUNT,
    RETRY_INLINE_WAIT_SECONDS,
    RETRY_INTERVAL_SECONDS,
    SettingsError,
)
from shared.storage.blobs import (
    M_ATTEMPT,
    M_CRASHES,
    M_LAST_ERROR,
    M_NOT_BEFORE,
    RETRY,
    BlobMissing,
    BlobStoreError,
    RetryState,
    iso,
)
from shared.storage.claimcheck import Resolution, resolve_references

if TYPE_CHECKING:
    from shared.bootstrap import Container

log = logging.getLogger(__name__)

TRANSIENT = (TransientDestinationError, ConnectionFailed)
M_COUNTED = "descounted"  # "1" once the parked notifications were added to the pending-retry gauge
POISON_THRESHOLD = 5  # like the Functions host's blob trigger (maxDequeueCount 5)
LEASE_SECONDS = 60
MAX_REASON = 1000
_ONE = TypeAdapter(Notification)


@dataclass(frozen=True)
class RetryPolicy:
    """A profile's retry settings: how often and how far apart a parked batch is retried (DES's)."""

    count: int = 12  # 0-20: retries after the first failure; 0 logs the failure at once
    interval_seconds: float = 5.0  # 0-3600
    inline_wait_seconds: float = 30.0  # longest one invocation waits for a due time (no long sleeps)

    def __post_init__(self) -> None:
        if not 0 <= self.count <= 20:
            raise ValueError(f"retry count {self.count} is outside 0-20")
        if not 0 <= self.interval_seconds <= 3600:
            raise ValueError(f"retry interval {self.interval_seconds} s is outside 0-3600")
        if self.inline_wait_seconds < 0:
            raise ValueError("the inline wait cannot be negative")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryPolicy:
        env = os.environ if env is None else env
        try:
            return cls(
                count=int(env.get(RETRY_COUNT, "12")),
                interval_seconds=float(env.get(RETRY_INTERVAL_SECONDS, "5")),
                inline_wait_seconds=float(env.get(RETRY_INLINE_WAIT_SECONDS, "30")),
            )
        except ValueError as exc:
            raise SettingsError(f"retry settings ({RETRY_COUNT}, {RETRY_INTERVAL_SECONDS}): {exc}") from exc


class Status(enum.Enum):
    RESOLVED = "resolved"  # applied (with its outcomes); blob deleted
    RESCHEDULED = "rescheduled"  # still failing; next attempt at not_before
    EXHAUSTED = "exhausted"  # retry count reached; notifications in the failure log; blob deleted
    NOT_DUE = "not due"  # its not-before time has not come
    BUSY = "busy"  # another worker holds its lease
    GONE = "gone"  # no such blob (done by another worker)


@dataclass
class RetryOutcome:
    status: Status
    name: str
    result: BatchResult | None = None
    not_before: datetime | None = None
    attempt: int = 0


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _fail_all(notifications: list[Notification], reason: str) -> BatchResult:
    result = BatchResult(received=len(notifications))
    for n in notifications:
        result.failed += 1
        counts = result.entity(n.entity)
        counts.received += 1
        counts.failed += 1
        result.failures.append(RecordFailure(n, reason[:MAX_REASON]))
    return result


def _record(c: Container, profile_id: str, result: BatchResult, pending: int) -> None:
    if c.metrics is not None:
        c.metrics.record(profile_id, result, pending_retry=pending)


# ------------------------------------------------------------------------------------- parking
def park_batch(
    c: Container,
    parsed: ParsedBatch,
    resolution: Resolution,
    exc: BaseException,
    *,
    profile_id: str | None = None,
    policy: RetryPolicy | None = None,
) -> BatchResult:
    """After a transient error: park the valid notifications in ``retry/``; report the final outcomes.

    The returned result holds the outcomes that are final now (unprocessables; with a retry count
    of 0, every notification as failed); the parked ones are pending and reported when they
    resolve. Raises only when the blob cannot be written: then the host redelivers the batch.
    """
    assert c.storage is not None
    profile_id = profile_id or c.profile_id
    policy = policy or c.retry_policy
    now = c.storage.clock()
    result = BatchResult(received=len(parsed.unprocessable))
    for u in parsed.unprocessable:
        result.unprocessable += 1
        result.unprocessables.append(u)
        if u.entity:
            counts = result.entity(u.entity)
            counts.received += 1
            counts.unprocessable += 1
    notifications = parsed.notifications
    rejects = c.storage.rejects(profile_id)
    if policy.count == 0 and notifications:
        failed = _fail_all(notifications, f"destination unavailable (retry count 0): {_short(exc)}")
        c.storage.payloads.delete(resolution.blobs)  # the full notifications are parked with the failures
        result.merge(failed)
        rejects.failures(result.failures)
        rejects.unprocessable(result.unprocessables)
        _record(c, profile_id, result, 0)
        return result
    pending = 0
    if notifications:
        docs = [resolution.original(n) for n in notifications]
        not_before = now + timedelta(seconds=policy.interval_seconds)
        name, created = c.storage.retries.park(
            profile_id, docs, reason=_short(exc), now=now, not_before=not_before
        )
        state = c.storage.retries.state(name)
        counted = state.raw.get(M_COUNTED) == "1"
        pending = 0 if counted else len(docs)
        log.warning(
            "destination unavailable (%s); %s notifications parked in %s/%s (%s), first retry after %s",
            _short(exc), len(docs), RETRY, name, "new" if created else "already there", iso(not_before),
        )
    rejects.unprocessable(result.unprocessables)
    _record(c, profile_id, result, pending)
    if pending:
        try:
            c.storage.retries.update(state, {M_COUNTED: "1"})
        except Exception as err:  # a worker holding its lease: the resolution will count it
            log.info("could not mark %s as counted: %s", name, _short(err))
    return result


# ---------------------------------------------------------------------------------- processing
def _notifications(docs: Sequence[object]) -> ParsedBatch:
    parsed = ParsedBatch(received=len(docs))
    for doc in docs:
        try:
            n = _ONE.validate_python(doc)
        except ValidationError as exc:
            text = json.dumps(doc, ensure_ascii=False)[:100_000]
            entity = doc.get("entity") if isinstance(doc, dict) else None
            rid = doc.get("recordId") if isinstance(doc, dict) else None
            parsed.unprocessable.append(
                Unprocessable(text, f"retry blob entry fails the contract: {exc.error_count()} errors",
                              entity if isinstance(entity, str) else None, rid if isinstance(rid, str) else None)
            )
            continue
        parsed.notifications.append(n)
    return parsed


def process_retry_blob(
    name: str, c: Container, *, now: datetime | None = None, policy_for: Callable[[str], RetryPolicy] | None = None
) -> RetryOutcome:
    """One retry attempt of ``retry/<name>`` if it is due. Raises on what is not a destination problem
    (a blob that cannot be decrypted stays as it is; the trigger's retries and poison queue follow)."""
    assert c.storage is not None
    retries = c.storage.retries
    try:
        state = retries.state(name)
    except BlobMissing:
        return RetryOutcome(Status.GONE, name)
    now = now or c.storage.clock()
    if state.not_before > now:
        return RetryOutcome(Status.NOT_DUE, name, not_before=state.not_before, attempt=state.attempt)
    try:
        lease = retries.lease(name, LEASE_SECONDS)
    except BlobMissing:
        return RetryOutcome(Status.GONE, name)
    if lease is None:
        return RetryOutcome(Status.BUSY, name)
    held = True
    try:
        batch = retries.read(name, lease=lease, state=state)
        profile_id = batch.profile_id or state.profile_id or c.profile_id
        policy = (policy_for or c.policy_for)(profile_id)
        parsed = _notifications(batch.notifications)
        resolution = resolve_references(parsed, c.storage.payloads)
        counted = state.raw.get(M_COUNTED) == "1"
        rejects = c.storage.rejects(profile_id)
        try:
            with c.lock:
                result = c.engine.apply_parsed(parsed)
        except TRANSIENT as exc:
            attempt = state.attempt + 1
            if attempt < policy.count:
                not_before = now + timedelta(seconds=policy.interval_seconds)
                retries.update(
                    state,
                    {M_ATTEMPT: str(attempt), M_NOT_BEFORE: iso(not_before), M_LAST_ERROR: _short(exc)},
                    lease=lease,
                )
                log.info("retry %s of %s for %s failed (%s); next at %s", attempt, policy.count, name,
                         _short(exc), iso(not_before))
                return RetryOutcome(Status.RESCHEDULED, name, not_before=not_before, attempt=attempt)
            reason = (
                f"destination unavailable after {attempt} retries (first seen {iso(batch.first_seen)}): {_short(exc)}"
            )
            result = _fail_all(parsed.notifications, reason)
            for u in parsed.unprocessable:
                result.received += 1
                result.unprocessable += 1
                result.unprocessables.append(u)
                if u.entity:
                    result.entity(u.entity).received += 1
                    result.entity(u.entity).unprocessable += 1
            rejects.failures(result.failures)
            rejects.unprocessable(result.unprocessables)
            c.storage.payloads.delete(resolution.blobs)
            _record(c, profile_id, result, -state.count if counted else 0)
            retries.delete(name, lease=lease)
            held = False
            log.warning("gave up on %s after %s retries: %s notifications in the failure log", name, attempt,
                        len(parsed.notifications))
            return RetryOutcome(Status.EXHAUSTED, name, result=result, attempt=attempt)
        # Committed: only now the payload blobs and the retry blob go.
        c.storage.payloads.delete(resolution.blobs)
        rejects.failures(result.failures)
        rejects.unprocessable(result.unprocessables)
        _record(c, profile_id, result, -state.count if counted else 0)
        retries.delete(name, lease=lease)
        held = False
        log.info("retry of %s resolved after %s retries: applied=%s stale=%s failed=%s unprocessable=%s",
                 name, state.attempt + 1, result.applied, result.stale, result.failed, result.unprocessable)
        return RetryOutcome(Status.RESOLVED, name, result=result, attempt=state.attempt + 1)
    finally:
        if held:
            try:
                lease.release()
            except Exception as exc:
                log.debug("lease release on %s: %s", name, _short(exc))


def run_retry_blob(
    name: str,
    c: Container,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> RetryOutcome:
    """What the blob trigger does: attempts while the next one is due within the inline wait budget."""
    assert c.storage is not None
    deadline = monotonic() + c.retry_policy.inline_wait_seconds
    while True:
        outcome = process_retry_blob(name, c)
        if outcome.status not in (Status.NOT_DUE, Status.RESCHEDULED) or outcome.not_before is None:
            return outcome
        wait = (outcome.not_before - c.storage.clock()).total_seconds()
        if wait > deadline - monotonic():
            return outcome  # the sweeper takes it when it is due; no worker waits that long
        sleep(max(0.0, wait))


# ------------------------------------------------------------------------------ poison, sweeper
def give_up(name: str, c: Container, reason: str) -> str:
    """Take a retry blob out of limbo: its notifications to the failure log, or, if it cannot be read,
    the blob as it is (still encrypted) to unprocessablemessages/ with the reason. Returns what was done."""
    assert c.storage is not None
    retries = c.storage.retries
    try:
        state = retries.state(name)
    except BlobMissing:
        return "gone"
    profile_id = state.profile_id or c.profile_id
    counted = state.raw.get(M_COUNTED) == "1"
    pending = -state.count if counted else 0
    try:
        batch = retries.read(name, state=state)
    except BlobStoreError as exc:
        kept = c.storage.unprocessable.keep_undecryptable(profile_id, RETRY, name, f"{reason}; {exc}")
        result = BatchResult(received=state.count, unprocessable=state.count)
        _record(c, profile_id, result, pending)
        retries.delete(name)
        log.error("retry blob %s could not be processed nor read (%s); kept as %s", name, _short(exc), kept)
        return "unprocessable"
    parsed = _notifications(batch.notifications)
    result = _fail_all(parsed.notifications, f"retry processing kept failing: {reason}")
    result.received += len(parsed.unprocessable)
    result.unprocessable += len(parsed.unprocessable)
    result.unprocessables.extend(parsed.unprocessable)
    rejects = c.storage.rejects(profile_id)
    rejects.failures(result.failures)
    rejects.unprocessable(result.unprocessables)
    _record(c, profile_id, result, pending)
    retries.delete(name)
    log.error("retry blob %s kept failing (%s); %s notifications in the failure log", name, reason,
              len(parsed.notifications))
    return "failed"


def blob_name_in(container: str, path: str) -> str:
    """``retry/<name>`` (what the trigger's InputStream.name holds) to ``<name>``."""
    prefix = f"{container}/"
    return path[len(prefix):] if path.startswith(prefix) else path


def handle_poison_message(text: str, c: Container) -> str:
    """The Functions host's poison message for a blob trigger: {"ContainerName", "BlobName", ...}."""
    try:
        doc = json.loads(text)
        container, name = str(doc["ContainerName"]), str(doc["BlobName"])
    except (ValueError, KeyError, TypeError):
        log.error("poison queue message is not a blob trigger receipt: %r", text[:200])
        return "ignored"
    if container != RETRY:
        log.error("poison blob %s/%s is not a retry blob; left for an operator", container, name)
        return "ignored"
    return give_up(name, c, "the blob trigger failed repeatedly (poison queue)")


@dataclass
class SweepReport:
    seen: int = 0
    processed: dict[str, int] = field(default_factory=dict)
    crashed: int = 0
    given_up: int = 0


def sweep_retries(c: Container, *, now: datetime | None = None, limit: int = 200) -> SweepReport:
    """The timer function: process the retry blobs that are due (also those whose event was lost)."""
    assert c.storage is not None
    report = SweepReport()
    now = now or c.storage.clock()
    due = [s for s in c.storage.retries.states() if s.not_before <= now]
    for state in due[:limit]:
        report.seen += 1
        try:
            outcome = process_retry_blob(state.name, c, now=now)
        except Exception as exc:
            report.crashed += 1
            _count_crash(c, state, exc, report)
            continue
        report.processed[outcome.status.value] = report.processed.get(outcome.status.value, 0) + 1
    return report


def _count_crash(c: Container, state: RetryState, exc: Exception, report: SweepReport) -> None:
    assert c.storage is not None
    log.error("retry blob %s raised: %s", state.name, _short(exc))
    try:
        fresh = c.storage.retries.state(state.name)
    except BlobMissing:
        return
    crashes = fresh.crashes + 1
    if crashes >= POISON_THRESHOLD:
        give_up(state.name, c, f"processing raised {crashes} times: {_short(exc)}")
        report.given_up += 1
        return
    c.storage.retries.update(fresh, {M_CRASHES: str(crashes), M_LAST_ERROR: _short(exc)})
