"""Retries through blobs: park a batch on a transient destination error, retry it later, log what still fails.

The design (docs/storage.md has the whole story):

1. The Service Bus handler catches a transient destination error, writes the batch's valid
   notifications to an encrypted blob ``retry/<profile>/<batch key>.json`` (metadata: attempt 0,
   not-before = now + interval, first-seen, profile, count) and returns normally, so the messages
   are completed only after the blob is safely written. The batch key is a hash of the
   notifications: a redelivered batch parks into the same blob, never twice. In profile mode
   (fan-out) only the failing profile's notifications are parked, in full (:func:`park_profile`),
   under that profile; the profiles that committed are not applied again.
2. The blob-triggered function (Event Grid source) gets the new blob and calls
   :func:`run_retry_blob`: it waits for the not-before time only when that is within the inline
   wait budget (short intervals: the default is 5 s), then :func:`process_retry_blob` takes a blob
   lease (one worker at a time), applies to the blob's profile (single-destination mode: the one
   destination; profile mode: that profile's destination through the fan-out's engine, with the
   profile's retry count and interval), and either deletes the blob (done), reschedules it by
   updating its metadata (attempt + 1, new not-before; no rewrite, so no new event and no busy
   loop), or, after the profile's retry count, writes each notification to the failure log with
   the reason and deletes the blob. A profile deactivated meanwhile counts the parked
   notifications as skipped; a profile deleted meanwhile leaves them in
   ``unprocessablemessages/unrouted/`` with the reason (counted as unprocessable under the
   store's unrouted key), so nothing is dropped silently.
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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from shared.contract.metadata import METADATA_CHANGE_TYPE, MetadataNotification, validate_metadata
from shared.contract.models import Notification
from shared.contract.parse import ParsedBatch, Unprocessable
from shared.engine.outcomes import BatchResult, RecordFailure
from shared.engine.ports import ConnectionFailed, TransientDestinationError
from shared.profiles.fanout import UNROUTED_FOLDER
from shared.profiles.model import Profile, ProfileState
from shared.profiles.secrets import SecretError
from shared.profiles.service import NotFound
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
    RetryBatch,
    RetryState,
    iso,
    notification_json,
)
from shared.storage.claimcheck import Resolution, resolve_references
from shared.store.base import UNROUTED, MetricsEntry, StoreUnavailable

if TYPE_CHECKING:
    from azure.storage.blob import BlobLeaseClient

    from shared.bootstrap import Container
    from shared.profiles.fanout import ProfileOutcome

log = logging.getLogger(__name__)

TRANSIENT = (TransientDestinationError, ConnectionFailed)
# What makes a retry attempt fail without being a bug: the destination, its Key Vault secret or
# (profile mode) the profile store is unavailable. Anything else propagates (poison handling).
UNAVAILABLE = (*TRANSIENT, SecretError, StoreUnavailable)
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

    @classmethod
    def of_profile(cls, profile: Profile, inline_wait_seconds: float = 30.0) -> RetryPolicy:
        """A profile's own retryCount and retryIntervalSeconds (profile mode)."""
        return cls(profile.retryCount, float(profile.retryIntervalSeconds), inline_wait_seconds)


class Status(enum.Enum):
    RESOLVED = "resolved"  # applied (with its outcomes); blob deleted
    RESCHEDULED = "rescheduled"  # still failing; next attempt at not_before
    EXHAUSTED = "exhausted"  # retry count reached; notifications in the failure log; blob deleted
    NOT_DUE = "not due"  # its not-before time has not come
    BUSY = "busy"  # another worker holds its lease
    GONE = "gone"  # no such blob (done by another worker)
    SKIPPED = "skipped"  # its profile is no longer active: counted as skipped; blob deleted
    ORPHANED = "profile deleted"  # its profile was deleted: kept under unprocessablemessages/unrouted/


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


def _fail_all(
    notifications: Sequence[Notification], reason: str, metadata: Sequence[MetadataNotification] = ()
) -> BatchResult:
    """Every notification failed with ``reason`` (failure-log lines). Entity metadata has no record
    to log: it is counted as failed and named in the log (the next metadata version replaces it)."""
    result = BatchResult(received=len(notifications) + len(metadata))
    for n in notifications:
        result.failed += 1
        counts = result.entity(n.entity)
        counts.received += 1
        counts.failed += 1
        result.failures.append(RecordFailure(n, reason[:MAX_REASON]))
    for m in metadata:
        result.failed += 1
        counts = result.entity(m.entity)
        counts.received += 1
        counts.failed += 1
        log.error("metadata of %s (version %s) not applied: %s", m.entity, m.version, reason[:MAX_REASON])
    return result


def _unprocessable_too(result: BatchResult, items: Sequence[Unprocessable]) -> BatchResult:
    result.add_unprocessable(items)
    return result


def _record(
    c: Container, profile_id: str, result: BatchResult, pending: int, skipped: Mapping[str, int] | None = None
) -> None:
    """Final outcomes and the pending-gauge change of one profile (profile mode: the store, one round trip)."""
    if c.runtime is not None:
        entries = [MetricsEntry.from_result(profile_id, result, pending_retry=pending)]
        if skipped:
            entries.append(MetricsEntry.skipped(profile_id, skipped))
        c.runtime.store.record_batch(entries)
    elif c.metrics is not None:
        c.metrics.record(profile_id, result, pending_retry=pending)


def _items(
    notifications: Sequence[Notification], metadata: Sequence[MetadataNotification]
) -> list[Notification | MetadataNotification]:
    """Metadata first (a batch applies it before the records), then the record notifications."""
    items: list[Notification | MetadataNotification] = [*metadata, *notifications]
    return items


def _doc(item: Notification | MetadataNotification, resolution: Resolution | None = None) -> dict[str, Any]:
    """A notification as it is parked (a claim check as its reference, when ``resolution`` says so)."""
    if isinstance(item, Notification):
        return resolution.original(item) if resolution is not None else notification_json(item)
    return item.model_dump(mode="json", exclude_unset=True)


# ------------------------------------------------------------------------------------- parking
@dataclass(frozen=True)
class ParkedBlob:
    """A retry blob written (or found: a redelivery) for one profile's notifications."""

    name: str
    state: RetryState
    newly_counted: int  # what this delivery adds to the pending gauge (0: an earlier one counted it)


def park_docs(
    c: Container, profile_id: str, docs: list[dict[str, Any]], exc: BaseException, policy: RetryPolicy
) -> ParkedBlob:
    """Write ``docs`` to ``retry/<profile>/<batch key>.json``; raises when the blob cannot be written
    (then the host redelivers the batch)."""
    assert c.storage is not None
    now = c.storage.clock()
    not_before = now + timedelta(seconds=policy.interval_seconds)
    name, created = c.storage.retries.park(profile_id, docs, reason=_short(exc), now=now, not_before=not_before)
    state = c.storage.retries.state(name)
    counted = state.raw.get(M_COUNTED) == "1"
    log.warning(
        "destination unavailable (%s); %s notifications parked in %s/%s (%s), first retry after %s",
        _short(exc), len(docs), RETRY, name, "new" if created else "already there", iso(not_before),
    )  # fmt: skip
    return ParkedBlob(name, state, 0 if counted else len(docs))


def mark_counted(c: Container, parked: ParkedBlob) -> None:
    """After the metrics call: the blob's notifications are in the pending gauge (no double count
    when the batch is redelivered)."""
    if not parked.newly_counted or c.storage is None:
        return
    try:
        c.storage.retries.update(parked.state, {M_COUNTED: "1"})
    except Exception as err:  # a worker holding its lease: the resolution will count it
        log.info("could not mark %s as counted: %s", parked.name, _short(err))


def park_batch(
    c: Container,
    parsed: ParsedBatch,
    resolution: Resolution,
    exc: BaseException,
    *,
    profile_id: str | None = None,
    policy: RetryPolicy | None = None,
) -> BatchResult:
    """Single-destination mode, after a transient error: park the valid notifications in ``retry/``
    (claim checks as their references); report the final outcomes.

    The returned result holds the outcomes that are final now (unprocessables; with a retry count
    of 0, every notification as failed); the parked ones are pending and reported when they
    resolve. Raises only when the blob cannot be written: then the host redelivers the batch.
    """
    assert c.storage is not None
    profile_id = profile_id or c.profile_id
    policy = policy or c.retry_policy
    result = _unprocessable_too(BatchResult(), parsed.unprocessable)
    rejects = c.storage.rejects(profile_id)
    items = _items(parsed.notifications, parsed.metadata)
    if policy.count == 0 and items:
        failed = _fail_all(
            parsed.notifications, f"destination unavailable (retry count 0): {_short(exc)}", parsed.metadata
        )
        c.storage.payloads.delete(resolution.blobs)  # the full notifications are parked with the failures
        result.merge(failed)
        rejects.failures(result.failures)
        rejects.unprocessable(result.unprocessables)
        _record(c, profile_id, result, 0)
        return result
    parked = park_docs(c, profile_id, [_doc(n, resolution) for n in items], exc, policy) if items else None
    rejects.unprocessable(result.unprocessables)
    _record(c, profile_id, result, parked.newly_counted if parked else 0)
    if parked is not None:
        mark_counted(c, parked)
    return result


def park_profile(c: Container, outcome: ProfileOutcome) -> ParkedBlob | None:
    """Profile mode: one profile's destination (or secret) failed during a fan-out. Its routed
    notifications are parked under the profile, in full (the payload blobs of claim checks are
    shared by the batch's profiles and go once every profile committed or parked), with the
    profile's retry policy; with retry count 0 they fail at once (``outcome.result``). Sets
    ``outcome.parked`` (what the pending gauge gains) and returns the blob, if one was written."""
    assert c.storage is not None
    assert outcome.error is not None
    exc, policy = outcome.error, c.policy_of(outcome.profile)
    if policy.count == 0:
        reason = f"destination unavailable (retry count 0): {_short(exc)}"
        outcome.result = _fail_all(outcome.notifications, reason, outcome.metadata)
        outcome.parked = 0
        return None
    docs = [_doc(n) for n in _items(outcome.notifications, outcome.metadata)]
    parked = park_docs(c, outcome.profile.id, docs, exc, policy)
    outcome.parked = parked.newly_counted
    return parked


# ---------------------------------------------------------------------------------- processing
def _notifications(docs: Sequence[object]) -> ParsedBatch:
    parsed = ParsedBatch(received=len(docs))
    for doc in docs:
        if isinstance(doc, dict) and doc.get("changeType") == METADATA_CHANGE_TYPE:
            m = validate_metadata(doc)
            if isinstance(m, MetadataNotification):
                parsed.metadata.append(m)
                continue
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


class Disposition(enum.Enum):
    APPLY = "apply"
    SKIP = "skip"  # the profile is no longer active: the notifications are skipped for it
    ORPHANED = "orphaned"  # the profile was deleted: nowhere to apply them


@dataclass(frozen=True)
class ParkedTarget:
    """Where a parked batch goes now. ``profile`` is None in single-destination mode."""

    profile_id: str
    disposition: Disposition
    profile: Profile | None = None


def parked_target(c: Container, profile_id: str) -> ParkedTarget:
    """The parked blob's profile as it is now (profile mode reads it from the store: raises
    StoreUnavailable when the store cannot be reached, which reschedules the attempt)."""
    if c.runtime is None:
        return ParkedTarget(profile_id, Disposition.APPLY)
    try:
        profile = c.runtime.service.get(profile_id)
    except NotFound:
        return ParkedTarget(profile_id, Disposition.ORPHANED)
    if profile.state is ProfileState.ACTIVE:
        return ParkedTarget(profile_id, Disposition.APPLY, profile)
    return ParkedTarget(profile_id, Disposition.SKIP, profile)


def apply_parked(c: Container, target: ParkedTarget, parsed: ParsedBatch) -> BatchResult:
    """Apply to the one destination (single-destination mode) or the profile's own (profile mode)."""
    if target.profile is None:
        assert c.engine is not None
        with c.lock:
            return c.engine.apply_parsed(parsed)
    assert c.runtime is not None
    return c.runtime.fanout.apply_batch_to_profile(target.profile, parsed)


@dataclass
class _Attempt:
    """One leased attempt at a retry blob (:func:`process_retry_blob`)."""

    c: Container
    name: str
    state: RetryState
    lease: BlobLeaseClient
    now: datetime
    policy_for: Callable[[str], RetryPolicy]
    held: bool = True

    def run(self) -> RetryOutcome:
        assert self.c.storage is not None
        batch = self.c.storage.retries.read(self.name, lease=self.lease, state=self.state)
        profile_id = batch.profile_id or self.state.profile_id or self.c.profile_id
        parsed = _notifications(batch.notifications)
        resolution = resolve_references(parsed, self.c.storage.payloads)
        try:
            target = parked_target(self.c, profile_id)
            result = apply_parked(self.c, target, parsed) if target.disposition is Disposition.APPLY else None
        except UNAVAILABLE as exc:
            return self._failed(profile_id, batch, parsed, resolution, exc)
        if result is None:
            if target.disposition is Disposition.SKIP:
                return self._skipped(profile_id, parsed, resolution)
            return self._orphaned(profile_id, batch, parsed, resolution)
        # Committed: only now the payload blobs and the retry blob go.
        self._settle(profile_id, result, resolution)
        log.info("retry of %s resolved after %s retries: applied=%s stale=%s failed=%s unprocessable=%s",
                 self.name, self.state.attempt + 1, result.applied, result.stale, result.failed, result.unprocessable)
        return RetryOutcome(Status.RESOLVED, self.name, result=result, attempt=self.state.attempt + 1)

    @property
    def pending(self) -> int:
        """The pending-gauge change when this blob goes: minus its notifications, if they were counted."""
        return -self.state.count if self.state.raw.get(M_COUNTED) == "1" else 0

    def _settle(
        self,
        profile_id: str,
        result: BatchResult,
        resolution: Resolution,
        *,
        skipped: Mapping[str, int] | None = None,
        orphaned: bool = False,
    ) -> None:
        """Final outcomes written and counted, then the payload blobs and the retry blob deleted.
        ``orphaned``: the profile is gone (and its pending gauge with it): kept under unrouted."""
        assert self.c.storage is not None
        rejects = self.c.rejects_of(UNROUTED_FOLDER if orphaned else profile_id)
        rejects.failures(result.failures)
        rejects.unprocessable(result.unprocessables)
        self.c.storage.payloads.delete(resolution.blobs)
        if orphaned:
            _record(self.c, UNROUTED, result, 0)
        else:
            _record(self.c, profile_id, result, self.pending, skipped)
        self.c.storage.retries.delete(self.name, lease=self.lease)
        self.held = False

    def _failed(
        self, profile_id: str, batch: RetryBatch, parsed: ParsedBatch, resolution: Resolution, exc: Exception
    ) -> RetryOutcome:
        assert self.c.storage is not None
        policy = self.policy_for(profile_id)
        attempt = self.state.attempt + 1
        if attempt < policy.count:
            not_before = self.now + timedelta(seconds=policy.interval_seconds)
            self.c.storage.retries.update(
                self.state,
                {M_ATTEMPT: str(attempt), M_NOT_BEFORE: iso(not_before), M_LAST_ERROR: _short(exc)},
                lease=self.lease,
            )
            log.info("retry %s of %s for %s failed (%s); next at %s", attempt, policy.count, self.name,
                     _short(exc), iso(not_before))
            return RetryOutcome(Status.RESCHEDULED, self.name, not_before=not_before, attempt=attempt)
        reason = f"destination unavailable after {attempt} retries (first seen {iso(batch.first_seen)}): {_short(exc)}"
        result = _unprocessable_too(_fail_all(parsed.notifications, reason, parsed.metadata), parsed.unprocessable)
        self._settle(profile_id, result, resolution)
        log.warning("gave up on %s after %s retries: %s notifications in the failure log", self.name, attempt,
                    len(parsed.notifications))
        return RetryOutcome(Status.EXHAUSTED, self.name, result=result, attempt=attempt)

    def _skipped(self, profile_id: str, parsed: ParsedBatch, resolution: Resolution) -> RetryOutcome:
        """The profile was deactivated while these waited: skipped for it, like new notifications."""
        skipped = Counter(n.entity for n in _items(parsed.notifications, parsed.metadata))
        result = _unprocessable_too(BatchResult(), parsed.unprocessable)
        self._settle(profile_id, result, resolution, skipped=skipped)
        log.info("profile %s is not active: %s parked notifications of %s skipped", profile_id,
                 skipped.total(), self.name)
        return RetryOutcome(Status.SKIPPED, self.name, result=result, attempt=self.state.attempt)

    def _orphaned(
        self, profile_id: str, batch: RetryBatch, parsed: ParsedBatch, resolution: Resolution
    ) -> RetryOutcome:
        """The profile was deleted while these waited (its metrics and blobs are gone): the parked
        notifications are kept, encrypted, in ``unprocessablemessages/unrouted/`` with the reason,
        and counted as unprocessable under the store's unrouted key. Nothing is dropped silently;
        an operator can replay them; retention removes them after 30 days."""
        reason = (
            f"profile {profile_id} was deleted while these notifications were parked for retry "
            f"(first seen {iso(batch.first_seen)})"
        )
        kept = [
            Unprocessable(json.dumps(_doc(n, resolution), ensure_ascii=False), reason, n.entity,
                          n.recordId if isinstance(n, Notification) else None)
            for n in _items(parsed.notifications, parsed.metadata)
        ]
        result = _unprocessable_too(BatchResult(), [*kept, *parsed.unprocessable])
        self._settle(profile_id, result, resolution, orphaned=True)
        log.warning("profile %s no longer exists: %s parked notifications of %s kept in %s/ as unprocessable",
                    profile_id, len(kept), self.name, UNROUTED_FOLDER)
        return RetryOutcome(Status.ORPHANED, self.name, result=result, attempt=self.state.attempt)

    def release(self) -> None:
        if self.held:
            try:
                self.lease.release()
            except Exception as exc:
                log.debug("lease release on %s: %s", self.name, _short(exc))


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
    attempt = _Attempt(c, name, state, lease, now, policy_for or c.policy_for)
    try:
        return attempt.run()
    finally:
        attempt.release()


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
    failed = _fail_all(parsed.notifications, f"retry processing kept failing: {reason}", parsed.metadata)
    result = _unprocessable_too(failed, parsed.unprocessable)
    rejects = c.rejects_of(profile_id)
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
