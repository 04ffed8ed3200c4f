"""One retry attempt at a parked batch: lease, apply to its target, then resolve, reschedule or give up."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.contract import exactjson
from shared.contract.models import Notification
from shared.contract.parse import ParsedBatch, Unprocessable
from shared.engine.outcomes import BatchResult
from shared.engine.ports import EnvironmentalDestinationError
from shared.observability import propagating
from shared.profiles.fanout import UNROUTED_FOLDER
from shared.retry.batch import (
    M_COUNTED,
    UNAVAILABLE,
    doc_of,
    fail_all,
    items_of,
    parse_parked,
    short,
    unprocessable_too,
)
from shared.retry.park import HELD_BACKOFF_MAX_S, HELD_FOLDER
from shared.retry.policy import RetryPolicy, environmental_backoff
from shared.retry.ports import Disposition, Lease, RetryDeps
from shared.retry.quarantine import quarantine
from shared.storage.blobs import (
    M_ATTEMPT,
    M_LAST_ERROR,
    M_NOT_BEFORE,
    BlobMissing,
    RetryBatch,
    RetryBlobInvalid,
    RetryState,
    iso,
    verify_retry_batch,
)
from shared.storage.claimcheck import Resolution, resolve_references
from shared.store.base import UNROUTED, StoreUnavailable

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3  # two renewals can fail before the lease runs out


class LeaseKeeper:
    """Renews a blob lease in a background thread while an attempt runs, so a long apply (a slow
    destination, a big batch) never loses the blob to a second worker after ``LEASE_SECONDS``.
    A failed renewal is logged and ends the keeping: the attempt's next leased call then fails
    with the storage error instead of writing over another worker."""

    def __init__(self, lease: Lease, name: str, every: float = RENEW_EVERY_SECONDS) -> None:
        self.lease, self.name, self.every = lease, name, every
        self.renewals = 0
        self.lost: Exception | None = None
        self._stop = threading.Event()
        # Its warnings carry the invocation's id (the worker attributes logs per thread).
        self._thread = threading.Thread(target=propagating(self._run), name=f"des-lease-{name[:40]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.lease.renew()
                self.renewals += 1
            except Exception as exc:
                self.lost = exc
                log.warning("lease on %s could not be renewed (%s); the attempt will not write", self.name, short(exc))
                return

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Status(enum.Enum):
    RESOLVED = "resolved"  # applied (with its outcomes); blob deleted
    RESCHEDULED = "rescheduled"  # still failing; next attempt at not_before
    EXHAUSTED = "exhausted"  # retry count reached; notifications in the failure log; blob deleted
    NOT_DUE = "not due"  # its not-before time has not come
    BUSY = "busy"  # another worker holds its lease
    GONE = "gone"  # no such blob (done by another worker)
    SKIPPED = "skipped"  # its profile is no longer active: counted as skipped; blob deleted
    ORPHANED = "profile deleted"  # its profile was deleted: kept under unprocessablemessages/unrouted/
    UNPROCESSABLE = "unprocessable"  # malformed metadata or content not its name's: unprocessable store


@dataclass
class RetryOutcome:
    status: Status
    name: str
    result: BatchResult | None = None
    not_before: datetime | None = None
    attempt: int = 0


@dataclass
class _Attempt:
    """One leased attempt at a retry blob (:func:`process_retry_blob`)."""

    deps: RetryDeps
    name: str
    state: RetryState
    lease: Lease
    now: datetime
    policy_for: Callable[[str], RetryPolicy]
    held: bool = True

    def run(self) -> RetryOutcome:
        router = self.deps.router
        try:
            batch = self.deps.retries.read(self.name, lease=self.lease, state=self.state)
            verify_retry_batch(self.name, batch)
        except RetryBlobInvalid as exc:
            quarantine(self.deps, self.state, short(exc), lease=self.lease)
            self.held = False
            return RetryOutcome(Status.UNPROCESSABLE, self.name, attempt=self.state.attempt)
        profile_id = batch.profile_id or self.state.profile_id or router.default_profile_id
        parsed = parse_parked(batch.notifications)
        resolution = resolve_references(parsed, self.deps.payloads)
        if profile_id == HELD_FOLDER:
            return self._route(parsed, resolution, batch)
        try:
            target = router.target(profile_id)
            result = router.apply(target, parsed) if target.disposition is Disposition.APPLY else None
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
        router = self.deps.router
        rejects = router.rejects_of(UNROUTED_FOLDER if orphaned else profile_id)
        rejects.failures(result.failures)
        rejects.unprocessable(result.unprocessables)
        self.deps.payloads.delete(resolution.blobs)
        if orphaned:
            router.record(UNROUTED, result, 0)
        else:
            router.record(profile_id, result, self.pending, skipped)
        self.deps.retries.delete(self.name, lease=self.lease)
        self.held = False

    def _failed(
        self, profile_id: str, batch: RetryBatch, parsed: ParsedBatch, resolution: Resolution, exc: Exception
    ) -> RetryOutcome:
        policy = self.policy_for(profile_id)
        attempt = self.state.attempt + 1
        # An environmental error (log full, quota, read-only, ...) is never the records' fault: they
        # wait, with a growing interval, until the database can write again; never failure-logged.
        # The same for an unreachable admin store (the profile cannot even be read).
        environmental = isinstance(exc, EnvironmentalDestinationError | StoreUnavailable)
        if attempt < policy.count or environmental:
            delay = environmental_backoff(policy, attempt) if environmental else policy.interval_seconds
            not_before = self.now + timedelta(seconds=delay)
            self.deps.retries.update(
                self.state,
                {M_ATTEMPT: str(attempt), M_NOT_BEFORE: iso(not_before), M_LAST_ERROR: short(exc)},
                lease=self.lease,
            )
            log.info("retry %s of %s for %s failed (%s); next at %s", attempt, policy.count, self.name,
                     short(exc), iso(not_before))
            return RetryOutcome(Status.RESCHEDULED, self.name, not_before=not_before, attempt=attempt)
        reason = f"destination unavailable after {attempt} retries (first seen {iso(batch.first_seen)}): {short(exc)}"
        result = unprocessable_too(fail_all(parsed.notifications, reason, parsed.metadata), parsed.unprocessable)
        self._settle(profile_id, result, resolution)
        log.warning("gave up on %s after %s retries: %s notifications in the failure log", self.name, attempt,
                    len(parsed.notifications))
        return RetryOutcome(Status.EXHAUSTED, self.name, result=result, attempt=attempt)

    def _route(self, parsed: ParsedBatch, resolution: Resolution, batch: RetryBatch) -> RetryOutcome:
        """A batch held while the admin store was unavailable: the whole fan-out now (which applies,
        parks per failing profile, keeps failures, counts, and deletes the payload blobs). The store
        still unavailable: again later, with a growing interval; never given up on (the batch is
        healthy; /health reports the store)."""
        try:
            fan = self.deps.router.apply_batch(parsed, resolution, self.deps)
        except StoreUnavailable as exc:
            attempt = self.state.attempt + 1
            policy = self.policy_for(HELD_FOLDER)
            not_before = self.now + timedelta(seconds=min(HELD_BACKOFF_MAX_S, environmental_backoff(policy, attempt)))
            self.deps.retries.update(
                self.state, {M_ATTEMPT: str(attempt), M_NOT_BEFORE: iso(not_before), M_LAST_ERROR: short(exc)},
                lease=self.lease,
            )  # fmt: skip
            log.warning("batch %s (held since %s) still waits for the admin store (%s); next try at %s",
                        self.name, iso(batch.first_seen), short(exc), iso(not_before))  # fmt: skip
            return RetryOutcome(Status.RESCHEDULED, self.name, not_before=not_before, attempt=attempt)
        self.deps.retries.delete(self.name, lease=self.lease)
        self.held = False
        log.info("batch %s held for routing since %s: routed to %s profiles", self.name, iso(batch.first_seen),
                 len(fan.outcomes))  # fmt: skip
        return RetryOutcome(Status.RESOLVED, self.name, attempt=self.state.attempt + 1)

    def _skipped(self, profile_id: str, parsed: ParsedBatch, resolution: Resolution) -> RetryOutcome:
        """The profile was deactivated while these waited: skipped for it, like new notifications."""
        skipped = Counter(n.entity for n in items_of(parsed.notifications, parsed.metadata))
        result = unprocessable_too(BatchResult(), parsed.unprocessable)
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
            Unprocessable(exactjson.dumps(doc_of(n, resolution)), reason, n.entity,
                          n.recordId if isinstance(n, Notification) else None)
            for n in items_of(parsed.notifications, parsed.metadata)
        ]
        result = unprocessable_too(BatchResult(), [*kept, *parsed.unprocessable])
        self._settle(profile_id, result, resolution, orphaned=True)
        log.warning("profile %s no longer exists: %s parked notifications of %s kept in %s/ as unprocessable",
                    profile_id, len(kept), self.name, UNROUTED_FOLDER)
        return RetryOutcome(Status.ORPHANED, self.name, result=result, attempt=self.state.attempt)

    def release(self) -> None:
        if self.held:
            try:
                self.lease.release()
            except Exception as exc:
                log.debug("lease release on %s: %s", self.name, short(exc))


def process_retry_blob(
    name: str,
    deps: RetryDeps,
    *,
    now: datetime | None = None,
    policy_for: Callable[[str], RetryPolicy] | None = None,
    renew_every: float = RENEW_EVERY_SECONDS,
) -> RetryOutcome:
    """One retry attempt of ``retry/<name>`` if it is due. Raises on what is not a destination problem
    (a blob that cannot be decrypted stays as it is; the trigger's retries and poison queue follow)."""
    retries = deps.retries
    try:
        state = retries.state(name)
    except BlobMissing:
        return RetryOutcome(Status.GONE, name)
    now = now or deps.clock()
    if state.problem is None and state.not_before > now:
        return RetryOutcome(Status.NOT_DUE, name, not_before=state.not_before, attempt=state.attempt)
    try:
        lease = retries.lease(name, LEASE_SECONDS)
    except BlobMissing:
        return RetryOutcome(Status.GONE, name)
    if lease is None:
        return RetryOutcome(Status.BUSY, name)
    if state.problem is not None:
        try:
            quarantine(deps, state, state.problem, lease=lease)
        except BaseException:
            lease.release()
            raise
        return RetryOutcome(Status.UNPROCESSABLE, name, attempt=state.attempt)
    attempt = _Attempt(deps, name, state, lease, now, policy_for or deps.router.policy_for)
    try:
        with LeaseKeeper(lease, name, renew_every):
            return attempt.run()
    finally:
        attempt.release()


def run_retry_blob(
    name: str,
    deps: RetryDeps,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> RetryOutcome:
    """What the blob trigger does: attempts while the next one is due within the inline wait budget."""
    deadline = monotonic() + deps.router.inline_wait_seconds
    while True:
        outcome = process_retry_blob(name, deps)
        if outcome.status not in (Status.NOT_DUE, Status.RESCHEDULED) or outcome.not_before is None:
            return outcome
        wait = (outcome.not_before - deps.clock()).total_seconds()
        if wait > deadline - monotonic():
            return outcome  # the sweeper takes it when it is due; no worker waits that long
        sleep(max(0.0, wait))
