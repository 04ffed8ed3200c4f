"""Fan-out: each notification goes to every active profile of its organization that exports its
entity, each profile to its own destination through its own engine.

* Profiles are looked up per organization from a cache refreshed every few seconds
  (:class:`ProfileDirectory`), so a batch costs no store round trip in the steady state.
* A notification whose organization has no profile exporting its entity is *unrouted*: completed
  and counted as skipped (under the store's reserved unrouted key).
* An inactive profile that exports the entity counts it as skipped for that profile; drafts are
  not routed at all.
* Engines are opened lazily per profile and kept (:class:`EngineRegistry`); a profile whose
  revision changed gets a fresh one. One batch at a time per engine (a destination connection is
  not shared between threads); different profiles are applied in parallel.
* One profile's failure (destination down, secret unavailable) never stops the others: its
  outcome carries the error and the notifications routed to it, for the caller to park for retry.
* Entity metadata notifications are routed like record notifications (by organization and entity).

The caller (the profile router, shared/routing.py) then parks errored profiles' notifications
(shared/retry/), writes failures per profile and the batch's unprocessable bodies once under
``unrouted/``, and records every profile's metrics in one store round trip with
:meth:`FanOutResult.metrics_entries`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.contract.metadata import MetadataNotification
from shared.contract.models import Notification
from shared.contract.parse import ParsedBatch, Unprocessable, parse_bodies
from shared.destinations import Destination, Layout, open_destination
from shared.destinations.redaction import redacted
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.observability import propagating
from shared.profiles.model import Profile, ProfileState
from shared.profiles.secrets import SecretResolver
from shared.store.base import UNKNOWN_ENTITY, UNROUTED, EntityDelta, MetricsEntry, Store

log = logging.getLogger(__name__)

DEFAULT_CACHE_SECONDS = 15.0
MAX_PARALLEL_PROFILES = 4
# The blob folder (where a profile id would be) of what belongs to no profile: a batch's
# unprocessable bodies, and parked notifications whose profile was deleted. Profile ids are GUIDs.
UNROUTED_FOLDER = "unrouted"


class ProfileDirectory:
    """Active and inactive profiles by organization, from the store, cached for ``ttl`` seconds."""

    def __init__(
        self, store: Store, *, ttl_seconds: float = DEFAULT_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self.clock = clock
        self._by_org: dict[str, list[Profile]] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()
        self.loads = 0  # store round trips so far (observability, tests)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def _load(self) -> None:
        stored = self.store.list_profiles(states=[ProfileState.ACTIVE.value, ProfileState.INACTIVE.value])
        by_org: dict[str, list[Profile]] = {}
        for s in stored:
            p = Profile.from_stored(s)
            by_org.setdefault(p.organizationId, []).append(p)
        self._by_org = by_org
        self._loaded_at = self.clock()
        self.loads += 1

    def for_org(self, organization_id: str) -> list[Profile]:
        with self._lock:
            if self._loaded_at is None or self.clock() - self._loaded_at >= self.ttl:
                self._load()
            return list(self._by_org.get(organization_id.lower(), ()))

    def profiles(self) -> list[Profile]:
        with self._lock:
            if self._loaded_at is None or self.clock() - self._loaded_at >= self.ttl:
                self._load()
            return [p for ps in self._by_org.values() for p in ps]


@dataclass
class EngineSlot:
    """A profile's engine, with the lock that keeps it to one batch at a time."""

    revision: int
    destination_ref: str
    engine: SyncEngine
    lock: threading.Lock = field(default_factory=threading.Lock)


class EngineRegistry:
    """One engine (and destination connection) per profile, opened on first use."""

    def __init__(
        self,
        resolver: SecretResolver,
        *,
        opener: Callable[[str, Layout], Destination] = open_destination,
        write_attempts: int = 3,
    ) -> None:
        self.resolver = resolver
        self.opener = opener
        self.write_attempts = write_attempts
        self._slots: dict[str, EngineSlot] = {}
        self._lock = threading.Lock()

    def slot(self, profile: Profile) -> EngineSlot:
        with self._lock:
            slot = self._slots.get(profile.id)
            if slot is not None and (slot.revision, slot.destination_ref) == (profile.revision, profile.destination):
                return slot
        # Open outside the registry lock: a slow destination must not hold up the other profiles.
        dsn = self.resolver.resolve(profile.destination)
        dest = self.opener(dsn, profile.layout)
        new = EngineSlot(profile.revision, profile.destination, SyncEngine(dest, attempts=self.write_attempts))
        with self._lock:
            old = self._slots.get(profile.id)
            if old is not None and old.revision >= new.revision and old.destination_ref == profile.destination:
                dest.close()  # another thread opened it meanwhile
                return old
            self._slots[profile.id] = new
        if old is not None:
            with old.lock:
                old.engine.destination.close()
        return new

    def discard(self, profile_id: str) -> None:
        with self._lock:
            slot = self._slots.pop(profile_id, None)
        if slot is not None:
            with slot.lock:
                slot.engine.destination.close()

    def retain(self, profile_ids: Iterable[str]) -> None:
        """Close the engines of profiles that no longer exist or are no longer routed."""
        keep = set(profile_ids)
        with self._lock:
            gone = [pid for pid in self._slots if pid not in keep]
        for pid in gone:
            self.discard(pid)

    def close(self) -> None:
        with self._lock:
            ids = list(self._slots)
        for pid in ids:
            self.discard(pid)


@dataclass
class ProfileOutcome:
    """What one batch did for one profile."""

    profile: Profile
    notifications: list[Notification] = field(default_factory=list)  # routed to it (active profiles)
    result: BatchResult | None = None  # None when nothing was applied (inactive, or error)
    skipped: Counter[str] = field(default_factory=Counter)  # per entity: inactive profile
    error: Exception | None = None  # the destination could not take the batch: park it for retry
    metadata: list[MetadataNotification] = field(default_factory=list)  # entity metadata routed to it
    # Set by the caller once it parked an errored profile's notifications: how many the pending-retry
    # gauge gains (0 when the retry blob was already counted by an earlier delivery, or when a retry
    # count of 0 failed them at once). None: all routed notifications (not parked yet).
    parked: int | None = None

    @property
    def routed(self) -> int:
        return len(self.notifications) + len(self.metadata)

    @property
    def pending(self) -> int:
        if self.error is None:
            return 0
        return self.routed if self.parked is None else self.parked

    def batch(self) -> ParsedBatch:
        """What was routed to this profile, as the engine takes it."""
        return ParsedBatch(list(self.notifications), [], self.routed, list(self.metadata))


@dataclass
class FanOutResult:
    received: int = 0
    outcomes: dict[str, ProfileOutcome] = field(default_factory=dict)
    unrouted: Counter[str] = field(default_factory=Counter)  # entity -> notifications with no profile
    unprocessable: list[Unprocessable] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return sum(self.unrouted.values()) + sum(sum(o.skipped.values()) for o in self.outcomes.values())

    @property
    def errors(self) -> dict[str, Exception]:
        return {pid: o.error for pid, o in self.outcomes.items() if o.error is not None}

    def metrics_entries(self) -> list[MetricsEntry]:
        """Every profile's counters of this batch, for one :meth:`Store.record_batch` call.

        Errored profiles count their notifications as pending retry (the caller parked them);
        unrouted and unprocessable notifications go to the store's reserved unrouted key.
        """
        entries: list[MetricsEntry] = []
        for pid, o in self.outcomes.items():
            if o.result is not None or o.pending:
                entries.append(MetricsEntry.from_result(pid, o.result or BatchResult(), pending_retry=o.pending))
            if o.skipped:
                entries.append(MetricsEntry.skipped(pid, o.skipped))
        bucket = MetricsEntry.unrouted(self.unrouted)
        for u in self.unprocessable:
            delta = bucket.entities.setdefault(u.entity or UNKNOWN_ENTITY, EntityDelta())
            delta.received += 1
            delta.unprocessable += 1
        if bucket.entities:
            entries.append(bucket)
        assert all(e.profile_id == UNROUTED or e.profile_id for e in entries)
        return entries

    def final(self) -> BatchResult:
        """The batch's final outcomes as one result: every profile's, plus the unprocessable bodies
        (what was skipped or parked for retry is not in it)."""
        result = BatchResult()
        for o in self.outcomes.values():
            if o.result is not None:
                result.merge(o.result)
        result.add_unprocessable(self.unprocessable)
        return result

    def merge(self, other: FanOutResult) -> None:
        """Add a later chunk's result of the same delivery (shared/chunking.py): its counts,
        outcomes, failures and unprocessable bodies. The notifications routed to each profile are
        not kept (they were applied or parked with their chunk): a profile's pending count is kept
        as a number instead, so memory stays bounded by a chunk."""
        self.received += other.received
        self.unrouted.update(other.unrouted)
        self.unprocessable.extend(other.unprocessable)
        for pid, o in other.outcomes.items():
            mine = self.outcomes.get(pid)
            if mine is None:
                mine = self.outcomes[pid] = ProfileOutcome(o.profile, parked=0)
            pending = mine.pending + o.pending
            mine.notifications, mine.metadata = [], []
            mine.skipped.update(o.skipped)
            mine.error = mine.error or o.error
            mine.parked = pending
            if o.result is not None:
                if mine.result is None:
                    mine.result = BatchResult()
                mine.result.merge(o.result)

    def summary(self) -> dict[str, Any]:
        per_profile = {}
        for pid, o in self.outcomes.items():
            counts = o.result.counts() if o.result is not None else {}
            per_profile[pid] = {**counts, "skipped": sum(o.skipped.values()), "pending_retry": o.pending}
        return {
            "received": self.received,
            "unrouted": sum(self.unrouted.values()),
            "unprocessable": len(self.unprocessable),
            "profiles": per_profile,
        }


class Directory(Protocol):
    """The profiles of an organization (:class:`ProfileDirectory`; one fixed target in
    single-destination mode, shared/routing.py)."""

    def for_org(self, organization_id: str) -> list[Profile]: ...


class Engines(Protocol):
    """A profile's engine (:class:`EngineRegistry`; one fixed engine in single-destination mode)."""

    def slot(self, profile: Profile) -> EngineSlot: ...


class FanOut:
    """Applies notifications to every matching profile's destination."""

    def __init__(
        self,
        directory: Directory,
        engines: Engines,
        *,
        max_parallel: int = MAX_PARALLEL_PROFILES,
    ) -> None:
        self.directory = directory
        self.engines = engines
        self.max_parallel = max(1, max_parallel)

    def apply_bodies(self, bodies: Iterable[bytes | str]) -> FanOutResult:
        return self.apply_parsed(parse_bodies(bodies))

    def apply_parsed(self, parsed: ParsedBatch) -> FanOutResult:
        out = FanOutResult(received=parsed.received, unprocessable=list(parsed.unprocessable))
        self._route(parsed, out)
        work = [o for o in out.outcomes.values() if o.routed]
        if len(work) == 1:
            self._apply(work[0])
        elif work:
            with ThreadPoolExecutor(
                max_workers=min(self.max_parallel, len(work)), thread_name_prefix="des-fanout"
            ) as ex:
                list(ex.map(propagating(self._apply), work))  # the invocation id reaches the threads
        return out

    def apply_to_profile(self, profile: Profile, notifications: Sequence[Notification]) -> BatchResult:
        """Apply notifications to one profile's destination (re-sync, retries); errors propagate."""
        return self.apply_batch_to_profile(profile, ParsedBatch(list(notifications), [], len(notifications)))

    def apply_batch_to_profile(self, profile: Profile, parsed: ParsedBatch) -> BatchResult:
        """Apply a parsed batch (unprocessables and entity metadata included) to one profile's
        destination (retries of parked batches); errors propagate."""
        slot = self.engines.slot(profile)
        with slot.lock:
            return slot.engine.apply_parsed(parsed)

    def _route(self, parsed: ParsedBatch, out: FanOutResult) -> None:
        cache: dict[str, list[Profile]] = {}
        items: list[Notification | MetadataNotification] = [*parsed.metadata, *parsed.notifications]
        for n in items:
            org = n.organizationId.lower()
            profiles = cache.get(org)
            if profiles is None:
                profiles = cache[org] = self.directory.for_org(org)
            routed = False
            for p in profiles:
                if not p.includes(n.entity):
                    continue
                routed = True
                o = out.outcomes.get(p.id)
                if o is None:
                    o = out.outcomes[p.id] = ProfileOutcome(p)
                if p.state is not ProfileState.ACTIVE:
                    o.skipped[n.entity] += 1
                elif isinstance(n, Notification):
                    o.notifications.append(n)
                else:
                    o.metadata.append(n)
            if not routed:
                out.unrouted[n.entity] += 1
        if out.unrouted:
            log.info("notifications matching no profile (skipped): %s", dict(out.unrouted))

    def _apply(self, o: ProfileOutcome) -> None:
        try:
            o.result = self.apply_batch_to_profile(o.profile, o.batch())
        except Exception as exc:
            # Whatever it is (destination down, secret unavailable, a bug), the other profiles go on
            # and this profile's notifications are parked for retry by the caller, not lost. Its text
            # may quote the destination's credentials: kept redacted (the same class, no cause).
            o.error = exc = redacted(exc)
            log.warning(
                "profile %s (%s): %s notifications not applied: %s: %s",
                o.profile.id, o.profile.name, o.routed, type(exc).__name__, exc,
            )  # fmt: skip
