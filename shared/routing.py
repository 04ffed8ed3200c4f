"""Routers: where a batch of notifications goes, and what goes with each target (retry policy,
reject sink, metrics). Both modes are one :class:`FanOutRouter` (a :class:`~shared.retry.ports.Router`)
over the fan-out (:class:`~shared.profiles.fanout.FanOut`); they differ only in where the targets
come from:

* :class:`FixedRouter` — single-destination mode (``DES_DESTINATION_DSN``): one fixed target (its
  profile id, engine, retry policy, reject sink and metrics) that every notification is routed to.
* :class:`ProfileRouter` — profile mode: every matching export profile, each with its own
  destination, retry policy and reject sink; metrics in the profile store.

The Service Bus batch takes one path (:meth:`FanOutRouter.apply_batch`) and gives one result type
(:class:`~shared.profiles.fanout.FanOutResult`) in both modes: each failing target's own
notifications are parked (the others committed), failures are kept per target, unprocessable
bodies once under ``unrouted/``, and the metrics of the batch go in one call. The handler
(:mod:`shared.handlers`) and the retry code (:mod:`shared.retry`) only call the router; neither
asks which mode it is in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from shared.config import DEFAULT_PROFILE_ID
from shared.contract.parse import ParsedBatch
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.metrics import MetricsSink
from shared.profiles.fanout import UNROUTED_FOLDER, EngineSlot, FanOut, FanOutResult
from shared.profiles.model import Profile, ProfileState
from shared.profiles.service import NotFound, ProfileError
from shared.rejects import LocalRejects, RejectSink
from shared.retry.park import ParkedBlob, mark_counted, park_profile
from shared.retry.policy import RetryPolicy
from shared.retry.ports import Disposition, ParkedTarget, RetryDeps
from shared.storage.claimcheck import Resolution
from shared.store.base import MetricsEntry, StoreError, utcnow

if TYPE_CHECKING:
    from shared.root import ProfileRuntime

log = logging.getLogger(__name__)


def _delete_payloads(resolution: Resolution, retries: RetryDeps | None) -> None:
    if retries is not None and resolution.blobs:
        retries.payloads.delete(resolution.blobs)


def log_entity_outcomes(entries: list[MetricsEntry], now: datetime | None = None) -> None:
    """One line per profile and entity of a batch: what Application Insights queries per entity
    (docs/deploy.md, sample KQL). ``lag_s``: now minus the newest applied record's ``changedOn``."""
    now = now or utcnow()
    for entry in entries:
        for entity, d in entry.entities.items():
            if not entity or not (d.received or d.skipped or d.pending_retry):
                continue
            lag = round((now - d.last_changed_on).total_seconds(), 3) if d.last_changed_on and d.applied else None
            log.info(
                "entity outcome: profile=%s entity=%s received=%s applied=%s stale=%s failed=%s unprocessable=%s "
                "skipped=%s pending_retry=%s lag_s=%s", entry.profile_id or "unrouted", entity, d.received,
                d.applied, d.stale, d.failed, d.unprocessable, d.skipped, d.pending_retry,
                "" if lag is None else lag,
            )  # fmt: skip


class FanOutRouter:
    """The one batch path of both modes: the fan-out to the targets, parking per target, failures
    per target, unprocessable bodies under ``unrouted/``, metrics in one call. Subclasses say where
    targets come from (:meth:`lookup`), their retry policy (:meth:`policy_of`) and what to close."""

    fanout: FanOut
    rejects_for: Callable[[str], RejectSink]
    policy: RetryPolicy  # the inline wait; the fallback policy
    metrics: MetricsSink | None  # None: not recorded

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

    def lookup(self, profile_id: str) -> Profile:
        """The target as it is now; raises NotFound, or StoreUnavailable when it cannot be read."""
        raise NotImplementedError

    def policy_of(self, profile: Profile) -> RetryPolicy:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def target(self, profile_id: str) -> ParkedTarget:
        """Read from the store: raises StoreUnavailable when it cannot be reached (the attempt is
        rescheduled)."""
        try:
            profile = self.lookup(profile_id)
        except NotFound:
            return ParkedTarget(profile_id, Disposition.ORPHANED)
        if profile.state is ProfileState.ACTIVE:
            return ParkedTarget(profile_id, Disposition.APPLY, profile)
        return ParkedTarget(profile_id, Disposition.SKIP, profile)

    def apply(self, target: ParkedTarget, parsed: ParsedBatch) -> BatchResult:
        assert target.profile is not None
        return self.fanout.apply_batch_to_profile(target.profile, parsed)

    def policy_for(self, profile_id: str) -> RetryPolicy:
        try:
            return self.policy_of(self.lookup(profile_id))
        except (ProfileError, StoreError) as exc:
            log.info("retry policy of profile %s not readable (%s); using the settings' policy", profile_id, exc)
            return self.policy

    def rejects_of(self, profile_id: str) -> RejectSink:
        return self.rejects_for(profile_id)

    def _record(self, entries: list[MetricsEntry]) -> None:
        if self.metrics is not None and entries:
            self.metrics.record_batch(entries)
        log_entity_outcomes(entries)

    def record(
        self, profile_id: str, result: BatchResult, pending: int, skipped: Mapping[str, int] | None = None
    ) -> None:
        entries = [MetricsEntry.from_result(profile_id, result, pending_retry=pending)]
        if skipped:
            entries.append(MetricsEntry.skipped(profile_id, skipped))
        self._record(entries)

    def apply_batch(self, parsed: ParsedBatch, resolution: Resolution, retries: RetryDeps | None) -> FanOutResult:
        """Fan out; park each failing target's own notifications (the others committed and are not
        applied again); keep failures per target and unprocessable bodies once (``unrouted/``);
        record every target's metrics in one call; then delete the payload blobs."""
        fan = self.fanout.apply_parsed(parsed)
        parked = self._park_failing_profiles(fan, retries)
        self._keep_failures(fan)
        self.unrouted.unprocessable(fan.unprocessable)  # once for the batch, under unrouted/
        self._record(fan.metrics_entries())
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
        """Retry blobs for the targets whose destination (or secret) was unavailable."""
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
        redelivers the batch. What the committed targets did is final: kept and counted now (to them
        the redelivery is stale); the rest of the batch is counted when it is redelivered."""
        self._keep_failures(fan)
        committed = [
            MetricsEntry.from_result(pid, o.result) for pid, o in fan.outcomes.items()
            if o.error is None and o.result is not None
        ]  # fmt: skip
        self._record(committed)

    def _keep_failures(self, fan: FanOutResult) -> None:
        for pid, o in fan.outcomes.items():
            if o.result is not None:
                self.rejects_of(pid).failures(o.result.failures)


class FixedTarget(Profile):
    """Single-destination mode's one target: an active profile that exports every entity of every
    organization (the fan-out routes everything to it)."""

    def includes(self, entity: str) -> bool:
        return True


class _FixedDirectory:
    def __init__(self, target: FixedTarget) -> None:
        self.target = target

    def for_org(self, organization_id: str) -> list[Profile]:
        return [self.target]


class _FixedEngines:
    def __init__(self, engine: SyncEngine) -> None:
        self._slot = EngineSlot(0, "", engine)

    def slot(self, profile: Profile) -> EngineSlot:
        return self._slot


class FixedRouter(FanOutRouter):
    """Single-destination mode: one target, the implicit profile ``profile_id``, with ``engine``,
    ``policy``, the reject sink ``rejects`` (or, with Blob storage, ``rejects_for``'s folders) and
    ``metrics``. A retry blob of any profile id goes to it."""

    def __init__(
        self,
        profile_id: str,
        engine: SyncEngine,
        policy: RetryPolicy,
        rejects: RejectSink,
        metrics: MetricsSink | None = None,
        *,
        rejects_for: Callable[[str], RejectSink] | None = None,
    ) -> None:
        now = utcnow()
        self.profile_id = profile_id
        self.engine = engine
        self.rejects = rejects
        self.fixed = FixedTarget(
            id=profile_id, name=profile_id, organizationId="", destination="", state=ProfileState.ACTIVE,
            createdAt=now, updatedAt=now,
        )  # fmt: skip
        self.fanout = FanOut(_FixedDirectory(self.fixed), _FixedEngines(engine))
        self.rejects_for = rejects_for if rejects_for is not None else (lambda _profile_id: rejects)
        self.policy = policy
        self.metrics = metrics

    @property
    def default_profile_id(self) -> str:
        return self.profile_id

    def lookup(self, profile_id: str) -> Profile:
        return self.fixed

    def policy_of(self, profile: Profile) -> RetryPolicy:
        return self.policy

    def close(self) -> None:
        self.engine.destination.close()


class ProfileRouter(FanOutRouter):
    """Profile mode: the runtime's fan-out; each profile's own retry policy (the settings' when it
    cannot be read) and reject sink; metrics in the profile store."""

    def __init__(
        self, runtime: ProfileRuntime, rejects_for: Callable[[str], RejectSink], policy: RetryPolicy | None = None
    ) -> None:
        self.runtime = runtime
        self.fanout = runtime.fanout
        self.rejects_for = rejects_for
        self.policy = policy or RetryPolicy()
        self.metrics = runtime.store

    def lookup(self, profile_id: str) -> Profile:
        return self.runtime.service.get(profile_id)

    def policy_of(self, profile: Profile) -> RetryPolicy:
        return RetryPolicy.of_profile(profile, self.policy.inline_wait_seconds)

    def close(self) -> None:
        """The runtime belongs to whoever built it (the root)."""
        if isinstance(self.rejects_for, LocalRejects):
            self.rejects_for.close()
