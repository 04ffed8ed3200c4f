"""One page per unit of work, the poll timer, activation and status: the source as the app runs it.

The queue message (:class:`~shared.pull.queue.PageMessage`) names a profile, a table and the cursor
revision its sender saw. :meth:`SourceWork.handle_page` claims the cursor's lease, drops the unit
when the cursor moved on since (a duplicate: at most one chain of units per cursor goes on), runs
one page through dv-source's runner (:meth:`SourceRunner.run_page`: read, deliver, then advance),
and sends the next unit until the pass is complete (an initial sync: metadata, the full load's
pages, the reconcile). Delivered means published to Service Bus (the app), or applied through the
router (no Service Bus configured): the runner advances the cursor only after that.

:meth:`SourceWork.poll` (the timer) sends a unit for every table of every active profile with a
source that is due (its delta link's next poll has come) or in the middle of a pass (a lost unit
is thus re-sent; the revision check drops the spare). Tables whose initial sync failed wait for
the next activation. Two instances never run the same cursor at once: the lease, and the
compare-and-set on its revision (dv-source's :class:`~shared.source.dataverse.cursors.CursorStore`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol

import httpx

from shared.contract.models import GUID_PATTERN
from shared.destinations.checks import CheckReport
from shared.engine.outcomes import BatchResult
from shared.profiles.model import DataverseSource, Profile, ProfileState
from shared.profiles.ports import SourceReadError, SourceRecords, SourceTable
from shared.pull.auth import SecretSource, token_provider
from shared.pull.checks import check_source, list_tables
from shared.pull.queue import BadMessage, PageMessage, WorkQueue
from shared.source.dataverse.client import DataverseClient, DataverseError, Throttled
from shared.source.dataverse.cursors import (
    CursorBusy,
    CursorLost,
    CursorStore,
    EntitySourceStatus,
    InitialSyncState,
    Phase,
    source_status,
)
from shared.source.dataverse.runner import EntityFailed, SourceRunner, instance_owner
from shared.source.dataverse.settings import DataverseSettings

log = logging.getLogger(__name__)

DUE_SLACK = timedelta(seconds=5)  # a timer tick a little early still polls
_GUID = re.compile(GUID_PATTERN)


class Outcome(str, Enum):
    NEXT = "next"  # a page ran; the next unit was sent
    DONE = "done"  # a page ran and completed the pass
    DUPLICATE = "duplicate"  # the cursor moved on since the unit was sent
    BUSY = "busy"  # another instance holds the cursor
    THROTTLED = "throttled"  # sent again after Retry-After
    FAILED = "failed"  # the table cannot be synced until someone acts (reason in its status)
    SKIPPED = "skipped"  # no such profile, not active, no source, table not in it
    BAD = "bad"  # not a page message
    RETRY = "retry"  # a transient fault (Dataverse, destination, Service Bus, store): sent again later


class Profiles(Protocol):
    def get(self, profile_id: str) -> Profile: ...

    def list_profiles(
        self, *, organization_id: str | None = None, state: ProfileState | None = None
    ) -> list[Profile]: ...


class Sink(Protocol):
    def publish(self, entity: str, bodies: Sequence[bytes]) -> BatchResult | None: ...

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]: ...

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]: ...


ClientFactory = Callable[[DataverseSource], DataverseClient]


def _now() -> datetime:
    return datetime.now(UTC)


class SourceWork:
    """Units of work for every profile with a source. Narrow dependencies, passed in."""

    def __init__(
        self,
        *,
        profiles: Profiles,
        cursors: CursorStore,
        queue: WorkQueue,
        sink_for: Callable[[Profile], Sink],
        settings: DataverseSettings,
        secrets: SecretSource,
        client_factory: ClientFactory | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] = _now,
        retry_seconds: int = 30,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.profiles = profiles
        self.cursors = cursors
        self.queue = queue
        self.sink_for = sink_for
        self.settings = settings
        self.secrets = secrets
        self.client_factory = client_factory or self._client
        self.owner = owner or instance_owner()
        self.clock = clock
        self.retry_seconds = retry_seconds
        self.transport = transport  # tests: an httpx transport for every client and check
        self._clients: dict[str, DataverseClient] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------- clients
    def _client(self, source: DataverseSource) -> DataverseClient:
        return DataverseClient(source.environmentUrl, self.settings, transport=self.transport,
                               tokens=token_provider(source, self.settings, self.secrets))  # fmt: skip

    def client(self, source: DataverseSource) -> DataverseClient:
        """One client per environment and credential (thread-safe; shared by the units)."""
        key = source.model_dump_json()
        with self._lock:
            c = self._clients.get(key)
        if c is None:
            made = self.client_factory(source)
            with self._lock:
                c = self._clients.setdefault(key, made)
            if c is not made:
                made.close()
        return c

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()

    def runner(self, profile: Profile) -> SourceRunner:
        assert profile.source is not None
        return SourceRunner(
            cursors=self.cursors, client=self.client(profile.source), sink=self.sink_for(profile),
            profile_id=profile.id, settings=self.settings, owner=self.owner,
            organization_id=profile.organizationId, clock=self.clock,
        )  # fmt: skip

    # ----------------------------------------------------------------------------- sending
    def send(self, profile_id: str, entity: str, revision: int | None, *, delay_seconds: int = 0) -> None:
        self.queue.send(PageMessage(profile_id, entity, revision).encode(), delay_seconds=delay_seconds)

    def _source_profile(self, profile_id: str) -> Profile | None:
        from shared.profiles.service import NotFound

        try:
            p = self.profiles.get(profile_id)
        except NotFound:
            return None
        return p if p.state is ProfileState.ACTIVE and p.source is not None else None

    def activated(self, profile: Profile) -> int:
        """Activation: a first unit per table (a table whose sync failed starts over). Returns units sent."""
        if profile.source is None:
            return 0
        sent = 0
        for entity in profile.pulled:
            c = self.cursors.get(profile.id, entity)
            if c is not None and c.initial_sync_state is InitialSyncState.FAILED:
                self.cursors.reset(profile.id, entity)
                self.cursors.store.set_initial_sync_state(profile.id, entity, InitialSyncState.NOT_STARTED.value)
            self.cursors.ensure(profile.id, entity)
            c = self.cursors.get(profile.id, entity)
            self.send(profile.id, entity, c.revision if c is not None else None)
            sent += 1
        log.info("profile %s activated: initial sync of %s tables enqueued", profile.id, sent)
        return sent

    def forget(self, profile_id: str, entities: Sequence[str] | None = None) -> None:
        """Drop the cursors (a deleted profile, or one pointed at another environment)."""
        names = entities if entities is not None else [c.entity for c in self.cursors.list(profile_id)]
        for entity in names:
            self.cursors.reset(profile_id, entity)

    # ----------------------------------------------------------------------------- the unit
    def handle_page(self, text: str | bytes) -> Outcome:
        """One queue message: claim, check the revision, one page, the next unit."""
        try:
            msg = PageMessage.decode(text)
        except BadMessage as exc:
            log.error("source queue: dropped a message that is not a page unit: %s", exc)
            return Outcome.BAD
        profile = self._source_profile(msg.profile_id)
        if profile is None or msg.entity not in profile.pulled:
            log.info("source unit for %s/%s skipped: no active profile with a source reading it",
                     msg.profile_id, msg.entity)  # fmt: skip
            return Outcome.SKIPPED
        self.cursors.ensure(profile.id, msg.entity)
        try:
            state = self.cursors.claim(profile.id, msg.entity, self.owner, self.settings.lease_seconds)
        except CursorBusy:
            return Outcome.BUSY
        if msg.revision is not None and state.revision != msg.revision:
            self.cursors.release(state)
            return Outcome.DUPLICATE
        if state.initial_sync_state is InitialSyncState.FAILED:
            self.cursors.release(state)
            return Outcome.FAILED
        try:
            result = self.runner(profile).run_page(msg.entity)  # renews our lease, releases it at the end
        except EntityFailed as exc:
            log.error("source: profile %s table %s failed: %s", profile.id, msg.entity, exc)
            return Outcome.FAILED
        except CursorLost:
            return Outcome.DUPLICATE
        except Throttled as exc:
            self._again(profile.id, msg.entity, max(1, int(exc.retry_after + 0.999)))
            log.warning("source: %s throttled; the unit comes again in %s s", msg.entity, exc.retry_after)
            return Outcome.THROTTLED
        except Exception as exc:  # transient: the cursor stays on the last delivered page
            self.cursors.release(state)  # run_page released it unless it failed before claiming
            self._again(profile.id, msg.entity, self.retry_seconds)
            log.warning("source: profile %s table %s: %s: %s; the unit comes again in %s s", profile.id, msg.entity,
                        type(exc).__name__, exc, self.retry_seconds)  # fmt: skip
            return Outcome.RETRY
        if result.pass_complete:
            return Outcome.DONE
        after = self.cursors.get(profile.id, msg.entity)
        self.send(profile.id, msg.entity, after.revision if after is not None else None)
        return Outcome.NEXT

    def _again(self, profile_id: str, entity: str, delay_seconds: int) -> None:
        """The same unit later, at the cursor's current revision (a re-sent duplicate is dropped)."""
        c = self.cursors.get(profile_id, entity)
        self.send(profile_id, entity, c.revision if c is not None else None, delay_seconds=delay_seconds)

    # ----------------------------------------------------------------------------- the timer
    def poll(self) -> int:
        """Send a unit for every table due or mid-pass; returns how many were sent."""
        now = self.clock()
        sent = 0
        for p in self.profiles.list_profiles(state=ProfileState.ACTIVE):
            if p.source is None:
                continue
            cursors = {c.entity: c for c in self.cursors.list(p.id)}
            for entity in p.pulled:
                c = cursors.get(entity)
                if c is None:  # a table added to an active profile
                    self.cursors.ensure(p.id, entity)
                    self.send(p.id, entity, 0)
                    sent += 1
                    continue
                if c.initial_sync_state is InitialSyncState.FAILED:
                    continue
                at_rest = c.phase in (Phase.DELTA, Phase.RESYNC) and c.next_poll is not None
                if at_rest and c.next_poll is not None and c.next_poll > now + DUE_SLACK:
                    continue
                self.send(p.id, entity, c.revision)
                sent += 1
        if sent:
            log.info("source poll: %s units sent", sent)
        return sent

    # ----------------------------------------------------------------------------- checks
    def check(self, source: DataverseSource, organization_id: str, tables: Sequence[str]) -> CheckReport:
        """Validate / test / activate: the named source steps (:mod:`shared.pull.checks`)."""
        return check_source(source, organization_id=organization_id, tables=tables, settings=self.settings,
                            secrets=self.secrets, transport=self.transport)  # fmt: skip

    def tables(self, source: DataverseSource) -> list[SourceTable]:
        """The console's table picker: every table of the environment (:mod:`shared.pull.checks`)."""
        return list_tables(source, settings=self.settings, secrets=self.secrets, transport=self.transport)

    # ----------------------------------------------------------------------------- re-sync
    def reread(self, profile: Profile, keys: Sequence[tuple[str, str]]) -> SourceRecords:
        """Failed records' current state from the source by id (the failure log's re-sync).

        Records of tables the source reads (their cursor knows the columns) are read by id; the
        others (a table not pulled, not read yet, an id that is not a GUID) are left ``unread``."""
        if profile.source is None:
            return SourceRecords([], list(keys))
        wanted: dict[str, list[str]] = {}
        unread: list[tuple[str, str]] = []
        for entity, rid in keys:
            c = self.cursors.get(profile.id, entity) if entity in profile.pulled else None
            if c is None or c.info is None or not _GUID.fullmatch(rid):
                unread.append((entity, rid))
            else:
                wanted.setdefault(entity, []).append(rid.lower())
        bodies: list[bytes] = []
        runner = self.runner(profile)
        for entity, ids in wanted.items():
            try:
                bodies += runner.current(entity, ids)
            except DataverseError as exc:
                raise SourceReadError(f"{entity}: {exc}", transient=exc.transient) from exc
        return SourceRecords(bodies, unread)

    # ----------------------------------------------------------------------------- status
    def status(self, profile: Profile) -> list[EntitySourceStatus]:
        """Per table: InitialSyncState (with the reason), rows read, pages, last poll, lag, next poll."""
        known = {s.entity: s for s in source_status(self.cursors, profile.id, now=self.clock())}
        out = []
        for entity in profile.pulled:
            out.append(known.get(entity) or EntitySourceStatus(
                entity=entity, initial_sync_state=InitialSyncState.NOT_STARTED.value, reason=None, phase="",
                rows_read=0, deletes_read=0, pages=0, last_poll=None, source_lag_seconds=None, next_poll=None,
            ))  # fmt: skip
        return out

