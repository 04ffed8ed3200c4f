"""Routers: where a batch of notifications goes, and what goes with each target (retry policy,
reject sink, metrics). Both modes are a :class:`~shared.retry.ports.Router`:

* :class:`FixedRouter` — single-destination mode (``DES_DESTINATION_DSN``): one fixed target (its
  profile id, engine, retry policy, reject sink and metrics).
* :class:`ProfileRouter` — profile mode: the fan-out to every matching export profile, each with
  its own destination, retry policy and reject sink; metrics in the profile store.

The Service Bus handler (:mod:`shared.handlers`) and the retry code (:mod:`shared.retry`) only call
the router; neither asks which mode it is in. A batch differs in one respect: a fixed target parks
the whole batch on a transient error (:meth:`FixedRouter.apply_batch`), a fan-out parks each
failing profile's own notifications (:meth:`ProfileRouter.apply_batch`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.config import DEFAULT_PROFILE_ID
from shared.contract.parse import ParsedBatch
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.metrics import MetricsSink
from shared.profiles.fanout import UNROUTED_FOLDER, FanOutResult
from shared.profiles.model import Profile, ProfileState
from shared.profiles.service import NotFound, ProfileError
from shared.rejects import LocalRejects, RejectSink
from shared.retry.batch import TRANSIENT
from shared.retry.park import ParkedBlob, mark_counted, park_batch, park_profile
from shared.retry.policy import RetryPolicy
from shared.retry.ports import Disposition, ParkedTarget, RetryDeps
from shared.storage.claimcheck import Resolution
from shared.store.base import MetricsEntry, StoreError

if TYPE_CHECKING:
    from shared.root import ProfileRuntime

log = logging.getLogger(__name__)


def _delete_payloads(resolution: Resolution, retries: RetryDeps | None) -> None:
    if retries is not None and resolution.blobs:
        retries.payloads.delete(resolution.blobs)


@dataclass
class FixedRouter:
    """Single-destination mode: one target, the implicit profile ``profile_id``."""

    profile_id: str
    engine: SyncEngine
    policy: RetryPolicy
    rejects: RejectSink  # the batch's failures and unprocessables
    metrics: MetricsSink | None = None
    # Blob storage: a profile id's failure-log/unprocessable folders (retries); None: ``rejects``.
    rejects_for: Callable[[str], RejectSink] | None = None
    # One batch at a time per process: a destination connection is not shared between threads.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def default_profile_id(self) -> str:
        return self.profile_id

    @property
    def inline_wait_seconds(self) -> float:
        return self.policy.inline_wait_seconds

    def target(self, profile_id: str) -> ParkedTarget:
        return ParkedTarget(profile_id, Disposition.APPLY)

    def apply(self, target: ParkedTarget, parsed: ParsedBatch) -> BatchResult:
        with self.lock:
            return self.engine.apply_parsed(parsed)

    def policy_for(self, profile_id: str) -> RetryPolicy:
        return self.policy

    def policy_of(self, profile: Profile) -> RetryPolicy:
        return self.policy

    def rejects_of(self, profile_id: str) -> RejectSink:
        return self.rejects_for(profile_id) if self.rejects_for is not None else self.rejects

    def record(
        self, profile_id: str, result: BatchResult, pending: int, skipped: Mapping[str, int] | None = None
    ) -> None:
        if self.metrics is not None:
            self.metrics.record(profile_id, result, pending_retry=pending)

    def apply_batch(self, parsed: ParsedBatch, resolution: Resolution, retries: RetryDeps | None) -> BatchResult:
        """The whole batch to the one destination; on a transient error parked in a retry blob
        (with Blob storage) or raised (Service Bus redelivers; the engine is idempotent)."""
        try:
            with self.lock:
                result = self.engine.apply_parsed(parsed)
        except TRANSIENT as exc:
            if retries is None:
                raise
            result = park_batch(retries, parsed, resolution, exc)
            log.info(
                "batch parked for retry: received=%s unprocessable=%s failed=%s",
                result.received, result.unprocessable, result.failed,
            )  # fmt: skip
            return result
        _delete_payloads(resolution, retries)
        self.rejects.failures(result.failures)
        self.rejects.unprocessable(result.unprocessables)
        self.record(self.profile_id, result, 0)
        log.info(
            "batch: received=%s applied=%s stale=%s failed=%s unprocessable=%s",
            result.received, result.applied, result.stale, result.failed, result.unprocessable,
        )  # fmt: skip
        return result

    def close(self) -> None:
        self.engine.destination.close()


@dataclass
class ProfileRouter:
    """Profile mode: the runtime's fan-out; each profile's own retry policy (the settings' when it
    cannot be read) and reject sink; metrics in the profile store."""

    runtime: ProfileRuntime
    rejects_for: Callable[[str], RejectSink]
    policy: RetryPolicy = field(default_factory=RetryPolicy)  # the inline wait; the fallback policy

    @property
    def default_profile_id(self) -> str:
        return DEFAULT_PROFILE_ID

    @property
    def inline_wait_seconds(self) -> float:
        return self.policy.inline_wait_seconds

    @property
    def unrouted(self) -> RejectSink:
        """The batch's unprocessable bodies, and what belongs to no profile."""
        return self.rejects_for(UNROUTED_FOLDER)

    def target(self, profile_id: str) -> ParkedTarget:
        """Read from the store: raises StoreUnavailable when it cannot be reached (the attempt is
        rescheduled)."""
        try:
            profile = self.runtime.service.get(profile_id)
        except NotFound:
            return ParkedTarget(profile_id, Disposition.ORPHANED)
        if profile.state is ProfileState.ACTIVE:
            return ParkedTarget(profile_id, Disposition.APPLY, profile)
        return ParkedTarget(profile_id, Disposition.SKIP, profile)

    def apply(self, target: ParkedTarget, parsed: ParsedBatch) -> BatchResult:
        assert target.profile is not None
        return self.runtime.fanout.apply_batch_to_profile(target.profile, parsed)

    def policy_of(self, profile: Profile) -> RetryPolicy:
        return RetryPolicy.of_profile(profile, self.policy.inline_wait_seconds)

    def policy_for(self, profile_id: str) -> RetryPolicy:
        try:
            return self.policy_of(self.runtime.service.get(profile_id))
        except (ProfileError, StoreError) as exc:
            log.info("retry policy of profile %s not readable (%s); using the settings' policy", profile_id, exc)
            return self.policy

    def rejects_of(self, profile_id: str) -> RejectSink:
        return self.rejects_for(profile_id)

    def record(
        self, profile_id: str, result: BatchResult, pending: int, skipped: Mapping[str, int] | None = None
    ) -> None:
        entries = [MetricsEntry.from_result(profile_id, result, pending_retry=pending)]
        if skipped:
            entries.append(MetricsEntry.skipped(profile_id, skipped))
        self.runtime.store.record_batch(entries)

    def apply_batch(self, parsed: ParsedBatch, resolution: Resolution, retries: RetryDeps | None) -> FanOutResult:
        """Fan out; park each failing profile's own notifications (the others committed and are not
        applied again); keep failures per profile and unprocessable bodies once (``unrouted/``);
        record every profile's metrics in one store round trip; then delete the payload blobs."""
        fan = self.runtime.fanout.apply_parsed(parsed)
        parked = self._park_failing_profiles(fan, retries)
        self._keep_failures(fan)
        self.unrouted.unprocessable(fan.unprocessable)  # once for the batch, under unrouted/
        self.runtime.store.record_batch(fan.metrics_entries())
        if retries is not None:
            for blob in parked:
                mark_counted(retries, blob)
        _delete_payloads(resolution, retries)
        summary = fan.summary()
        log.info(
            "batch of %s notifications to %s profiles: unrouted=%s unprocessable=%s profiles=%s",
            fan.received, len(fan.outcomes), summary["unrouted"], summary["unprocessable"], summary["profiles"],
        )  # fmt: skip
        return fan

    def _park_failing_profiles(self, fan: FanOutResult, retries: RetryDeps | None) -> list[ParkedBlob]:
        """Retry blobs for the profiles whose destination (or secret) was unavailable."""
        failing = [o.error for o in fan.outcomes.values() if o.error is not None]
        if not failing:
            return []
        if retries is None:
            self._count_committed(fan)
            raise failing[0]
        parked = [park_profile(retries, o) for o in fan.outcomes.values() if o.error is not None]
        return [p for p in parked if p is not None]

    def _count_committed(self, fan: FanOutResult) -> None:
        """Without Blob storage nothing can be parked and the caller raises, so that Service Bus
        redelivers the batch. What the committed profiles did is final: kept and counted now (to them
        the redelivery is stale); the rest of the batch is counted when it is redelivered."""
        self._keep_failures(fan)
        committed = [
            MetricsEntry.from_result(pid, o.result) for pid, o in fan.outcomes.items()
            if o.error is None and o.result is not None
        ]  # fmt: skip
        self.runtime.store.record_batch(committed)

    def _keep_failures(self, fan: FanOutResult) -> None:
        for pid, o in fan.outcomes.items():
            if o.result is not None:
                self.rejects_of(pid).failures(o.result.failures)

    def close(self) -> None:
        """The runtime belongs to whoever built it (the root)."""
        if isinstance(self.rejects_for, LocalRejects):
            self.rejects_for.close()
