"""The sync runner: one page per unit of work, the cursor advanced only after the page is delivered.

:func:`run_page` is the unit of work (the function app's queue-triggered page function calls it
once per message; ``des sync`` calls it in a loop): claim the entity's cursor (lease), read one page
from where the cursor points, map it, hand the notifications to the :class:`Sink` (the engine
directly, or the Service Bus publisher), and only then advance the cursor (compare-and-set). A
crash or a timeout anywhere before the advance leaves the cursor on the page, which the next unit
reads again: at-least-once, made harmless by the versions.

Per entity the cursor walks through phases (:class:`~.cursors.Phase`): ``metadata`` (publish the
entity's metadata notification) -> ``initial`` (full load, ``@odata.nextLink`` until
``@odata.deltaLink``, recording the ids it reads) -> ``reconcile`` (the destination's ids the full
load did not return are re-read by id and deleted when they are gone: rows left by an earlier
activation, or by a full load that restarted after a crash, since a restart takes a new snapshot
whose delta link never reports what was deleted before it) -> ``delta`` (each poll follows the
saved delta link: a *pass*). An expired or invalid delta token (``0x80044352``) -> ``resync`` (a
full load like the initial one) -> ``reconcile`` -> ``delta``. N:N intersect entities without
change tracking are reloaded in full each pass (``resync`` -> ``reconcile`` -> ``resync``...).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.engine.outcomes import BatchResult
from shared.source.dataverse import mapping as m
from shared.source.dataverse.client import AccessDenied, DataverseClient, DataverseError, ExpiredToken
from shared.source.dataverse.cursors import (
    CursorState,
    CursorStore,
    InitialSyncState,
    Phase,
)
from shared.source.dataverse.settings import DataverseSettings

log = logging.getLogger(__name__)

MAX_REASON = 1000
RECONCILE_CHUNK = 1000  # destination ids compared per step of a reconcile (memory bound)


class Sink(Protocol):
    """Where a page's notifications go. ``publish`` returns only once they are durable (applied to
    the destination, or accepted by Service Bus); raising keeps the cursor where it was."""

    def publish(self, entity: str, bodies: Sequence[bytes]) -> BatchResult | None:
        """Deliver message bodies (contract v1, one notification each). A BatchResult when applied here."""

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]:
        """The contract version the destination holds for each of ``ids`` (its rows; absent: none):
        a delete is versioned above it (docs/dataverse.md, "Versions")."""

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        """At most ``limit`` (id, version) of ``entity`` in the destination after ``after`` (None: the
        first), in the destination's key order: the re-sync's reconcile, in bounded chunks."""


class EntityFailed(RuntimeError):
    """The entity cannot be synced until someone acts (change tracking off, no privilege, gone)."""


@dataclass(slots=True)
class PageResult:
    entity: str
    phase: Phase  # the phase this unit worked in
    next_phase: Phase
    rows: int = 0  # entries read (rows and delete entries)
    upserts: int = 0  # notifications published
    deletes: int = 0
    pages: int = 0  # Web API pages read (0 for metadata, reconcile)
    pass_complete: bool = False  # a full load or a delta pass reached its delta link (or reconcile ended)
    expired: bool = False  # the delta token had expired: a re-sync starts
    result: BatchResult | None = None  # outcomes, when the sink applied them here


def instance_owner() -> str:
    """A lease owner id unique to this process and call site."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_REASON]


def _now() -> datetime:
    return datetime.now(UTC)


class SourceRunner:
    """Runs units of work for one environment and one profile. Narrow dependencies, passed in."""

    def __init__(
        self,
        *,
        cursors: CursorStore,
        client: DataverseClient,
        sink: Sink,
        profile_id: str,
        settings: DataverseSettings,
        owner: str | None = None,
        organization_id: str | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.cursors = cursors
        self.client = client
        self.sink = sink
        self.profile_id = profile_id.lower()
        self.settings = settings
        self.owner = owner or instance_owner()
        self.organization_id = organization_id.lower() if organization_id else None
        self.clock = clock

    # ---------------------------------------------------------------------------- the unit
    def run_page(self, entity: str) -> PageResult:
        """One unit of work for ``entity``: claim, read one page, deliver, advance, release."""
        self.cursors.ensure(self.profile_id, entity)
        state = self.cursors.claim(self.profile_id, entity, self.owner, self.settings.lease_seconds)
        try:
            return self._unit(state)
        finally:
            self.cursors.release(state)

    def _unit(self, state: CursorState) -> PageResult:
        try:
            if state.phase is Phase.METADATA:
                return self._metadata(state)
            if state.phase is Phase.RECONCILE:
                return self._reconcile(state)
            return self._page(state)
        except DataverseError as exc:
            if exc.transient or (isinstance(exc, AccessDenied) and exc.status == 401):
                raise  # worth another try later, or about the environment's token, not this entity
            self._fail(state, exc)
            raise EntityFailed(f"{state.entity}: {exc}") from exc

    def _fail(self, state: CursorState, exc: BaseException) -> None:
        sync = state.initial_sync_state
        if sync is not InitialSyncState.COMPLETED:
            sync = InitialSyncState.FAILED
        self.cursors.advance(state, replace(state, initial_sync_state=sync, state_reason=_reason(exc)))
        self._mirror(state.entity, state.initial_sync_state, sync)
        log.error("Dataverse source: %s failed: %s", state.entity, exc)

    def _mirror(self, entity: str, before: InitialSyncState, after: InitialSyncState) -> None:
        """Keep the admin store's metrics row (des metrics, /metrics) in step with the cursor."""
        if before is not after:
            self.cursors.store.set_initial_sync_state(self.profile_id, entity, after.value)

    def _org(self, state: CursorState) -> str:
        if state.organization_id:
            return state.organization_id
        if self.organization_id is None:
            self.organization_id = self.client.organization_id()
        return self.organization_id

    # ---------------------------------------------------------------------------- metadata
    def _metadata(self, state: CursorState) -> PageResult:
        entity = state.entity
        org = self._org(state)
        definition = self.client.entity_definition(entity)
        attributes = self.client.attributes(entity)
        casts = self.client.casts_for(entity, attributes)
        now = self.clock()
        info, notification = m.entity_metadata(
            definition, attributes, casts, organization_id=org, version=int(now.timestamp() * 1000), changed_on=now
        )
        if not info.entity_set:
            raise DataverseError(f"entity {entity!r} has no EntitySetName: it cannot be read through the Web API")
        if not info.change_tracking and not info.is_intersect:
            raise DataverseError(
                f"change tracking is off for {entity!r}: turn on 'Track changes' in the table's properties "
                "(it cannot be turned off again), then activate the profile again"
            )
        result = self.sink.publish(entity, [m.encode(notification)])
        phase = Phase.INITIAL if info.change_tracking else Phase.RESYNC
        new = replace(
            state, phase=phase, link=None, info=info, organization_id=org,
            initial_sync_state=InitialSyncState.IN_PROGRESS, state_reason=None, last_poll=now,
        )  # fmt: skip
        self.cursors.advance(state, new, clear_seen=True)
        self._mirror(entity, state.initial_sync_state, new.initial_sync_state)
        return PageResult(entity, state.phase, phase, result=result)

    # ---------------------------------------------------------------------------- pages
    def _page(self, state: CursorState) -> PageResult:
        info = state.info
        assert info is not None, "a cursor past the metadata phase has its entity info"
        org = self._org(state)
        first = state.link is None
        if state.phase is Phase.DELTA and first:
            raise DataverseError(f"{state.entity}: the delta phase has no delta link")
        url = state.link or self.client.first_page_url(info.entity_set, info.select())
        try:
            body = self.client.page(url, track=state.phase is not Phase.DELTA and info.change_tracking)
        except ExpiredToken as exc:
            if first:  # a full load's first request cannot carry an expired token
                raise
            return self._expired(state, exc)
        now = self.clock()
        full = state.phase in (Phase.INITIAL, Phase.RESYNC)
        page = m.map_page(
            info, org, body, high_water=state.high_water, change_type="create" if full else "update", read_at=now
        )
        bodies = [m.encode(n) for n in page.upserts]
        high_water = page.high_water
        upserts, deletes = len(page.upserts), 0
        if page.deleted_ids:
            ids = page.deleted_ids
            held: Mapping[str, int] | None = None
            if not self.settings.verify_deletes:
                # Unverified: a pass answers for one snapshot, so a row anywhere in the pass means the
                # record exists; a tombstone for the same id is the earlier delete of a re-created record.
                rows = set(page.upsert_ids) | self.cursors.seen_among(self.profile_id, state.entity, ids)
                ids = [i for i in ids if i not in rows]
            else:  # what push (or a re-sync) applied may be newer than H: read before the verifying reads
                held = self.sink.held(state.entity, ids)
            extra, dels, high_water = self._deletes(
                info, org, ids, page.high_water, now, verify=self.settings.verify_deletes, held=held
            )
            bodies += extra
            upserts += len(extra) - dels
            deletes = dels
        done = page.next_link is None
        delta_link = page.delta_link
        if done and delta_link is None and state.phase is Phase.DELTA and page.rows == 0:
            delta_link = state.link  # "an empty JSON response" when nothing changed (reference A4): keep the link
        if done and delta_link is None and info.change_tracking:
            raise DataverseError(
                f"{state.entity}: the last page carried no @odata.deltaLink; is change tracking on for the table?"
            )
        state = self._reserve(state, high_water)
        result = self.sink.publish(state.entity, bodies) if bodies else None
        new = replace(
            state, organization_id=org, high_water=high_water,
            rows_read=state.rows_read + page.rows, deletes_read=state.deletes_read + len(page.deleted_ids),
            pages=state.pages + 1, last_poll=now,
            newest_modified_on=_later(state.newest_modified_on, m.parse_instant(page.newest_modified_on)),
        )  # fmt: skip
        next_phase = state.phase
        if not done:
            new = replace(new, link=page.next_link)
        elif full:
            next_phase = Phase.RECONCILE
            new = replace(new, phase=next_phase, link=delta_link)
        else:
            new = replace(new, link=delta_link, next_poll=self._next_poll(now), state_reason=None)
        if full:  # the full load's ids, for its reconcile
            seen, clear = page.upsert_ids, first
        else:  # unverified deletes: the pass's row ids; forgotten when the pass completes
            seen, clear = ([] if done or self.settings.verify_deletes else page.upsert_ids), done
        self.cursors.advance(state, new, seen=seen, clear_seen=clear)
        self._mirror(state.entity, state.initial_sync_state, new.initial_sync_state)
        return PageResult(
            state.entity, state.phase, next_phase, rows=page.rows, upserts=upserts, deletes=deletes, pages=1,
            pass_complete=done and not full, result=result,
        )  # fmt: skip

    def _reserve(self, state: CursorState, high_water: int) -> CursorState:
        """Record a raised high-water mark *before* publishing what raised it.

        A delete's version must exceed every version ever published for its record (docs/dataverse.md);
        a crash after publishing but before the cursor advances must not lose those versions.
        """
        if high_water <= state.high_water:
            return state
        return self.cursors.advance(state, replace(state, high_water=high_water))

    def _next_poll(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.poll_interval_seconds)

    def _expired(self, state: CursorState, exc: ExpiredToken) -> PageResult:
        log.warning("Dataverse source: %s delta token expired (%s); full re-sync, then reconcile", state.entity, exc)
        new = replace(state, phase=Phase.RESYNC, link=None, state_reason=f"delta token expired: {exc}"[:MAX_REASON])
        self.cursors.advance(state, new, clear_seen=True)
        return PageResult(state.entity, state.phase, Phase.RESYNC, expired=True)

    def _deletes(
        self, info: m.EntityInfo, org: str, ids: Iterable[str], high_water: int, now: datetime, *, verify: bool,
        held: Mapping[str, int] | None = None,
    ) -> tuple[list[bytes], int, int]:
        """Bodies for deleted ids: deletes at ``2H + 1`` (docs/dataverse.md, "Versions").

        ``high_water`` covers every versionnumber read before this point; ``held`` (verified only: read
        before the verifying reads) the versions the destination holds, which ``H`` is raised above.
        With verification (the default) each id is first re-read by id: one that exists again is
        published as its current row instead (a re-creation), one that is gone is deleted. Returns
        (bodies, deletes, the new high-water mark including the rows re-read).
        """
        bodies: list[bytes] = []
        deletes = 0
        hw_after = high_water
        for rid in dict.fromkeys(ids):
            if verify:
                row = self.client.record(info.entity_set, rid, info.select())
                if row is not None:
                    n = m.row_notification(info, org, row, change_type="update", read_at=now)
                    bodies.append(m.encode(n))
                    vn = n["version"] // 2 if isinstance(n["version"], int) else 0
                    hw_after = max(hw_after, vn)
                    continue
            mark = m.delete_mark(high_water, held.get(rid) if held else None)
            bodies.append(m.encode(m.delete_notification(info, org, rid, high_water=mark, read_at=now)))
            deletes += 1
        return bodies, deletes, hw_after

    # ---------------------------------------------------------------------------- reconcile
    def _reconcile(self, state: CursorState) -> PageResult:
        """Delete what the destination holds and the full load did not return, in bounded chunks:
        the destination's (id, version) in its key order, RECONCILE_CHUNK at a time, each chunk
        checked against the ids the load recorded (``des_source_seen``); memory is bounded by the
        chunk, not by the table."""
        info = state.info
        assert info is not None
        org = self._org(state)
        now = self.clock()
        high_water = state.high_water
        missing = deletes = upserts = 0
        result: BatchResult | None = None
        after: str | None = None
        while True:
            chunk = self.sink.existing(state.entity, after, RECONCILE_CHUNK)
            if not chunk:
                break
            after = chunk[-1][0]
            returned = self.cursors.seen_among(self.profile_id, state.entity, [i for i, _ in chunk])
            gone = {i: v for i, v in chunk if i not in returned}
            if gone:
                missing += len(gone)
                # A full load can miss a record re-created while it ran: reconcile always verifies.
                # ``gone`` holds the destination's versions, read before the verifying reads.
                bodies, dels, high_water = self._deletes(info, org, gone, high_water, now, verify=True, held=gone)
                state = self._reserve(state, high_water)
                got = self.sink.publish(state.entity, bodies)
                if got is not None:
                    result = got if result is None else _merged(result, got)
                deletes += dels
                upserts += len(bodies) - dels
            if len(chunk) < RECONCILE_CHUNK:
                break
        if info.change_tracking:
            new = replace(state, phase=Phase.DELTA, high_water=high_water, state_reason=None,
                          initial_sync_state=InitialSyncState.COMPLETED, next_poll=self._next_poll(now))  # fmt: skip
        else:  # an intersect entity without change tracking: reloaded in full every pass
            new = replace(state, phase=Phase.RESYNC, link=None, high_water=high_water, state_reason=None,
                          initial_sync_state=InitialSyncState.COMPLETED, next_poll=self._next_poll(now))  # fmt: skip
        self.cursors.advance(state, new, clear_seen=True)
        self._mirror(state.entity, state.initial_sync_state, new.initial_sync_state)
        log.info("Dataverse source: %s reconciled: %d missing from the full load, %d deleted",
                 state.entity, missing, deletes)  # fmt: skip
        return PageResult(
            state.entity, state.phase, new.phase, upserts=upserts, deletes=deletes,
            pass_complete=True, result=result,
        )  # fmt: skip

    # ---------------------------------------------------------------------------- re-read by id
    def current(self, entity: str, ids: Sequence[str]) -> list[bytes]:
        """The current state of records by id, as notification bodies (re-sync of failed records).

        Each id is read with ``GET <set>(<id>)?$select=...`` (lookup annotations included): a row is
        published as an update at ``2 * versionnumber``; a 404 means the record is gone: a delete at
        ``2H + 1``, ``H`` raised above the version the destination holds (both read before the
        reads), as for the verified deletes of a pass (docs/dataverse.md, "Versions"). Needs the
        entity's cursor past its metadata (its columns); the cursor is read, not advanced.
        """
        state = self.cursors.get(self.profile_id, entity)
        if state is None or state.info is None:
            raise EntityFailed(f"{entity}: the source has not read this table's definition yet")
        org = self._org(state)
        wanted = list(dict.fromkeys(i.lower() for i in ids))
        held = self.sink.held(entity, wanted)
        bodies, _, _ = self._deletes(state.info, org, wanted, state.high_water, self.clock(), verify=True, held=held)
        return bodies

    # ---------------------------------------------------------------------------- passes
    def run_pass(self, entity: str, *, progress: Callable[[PageResult], Any] | None = None) -> list[PageResult]:
        """Units of work until the entity completes a pass: the initial sync (metadata, full load), or
        one delta pass (with a re-sync and reconcile if the token had expired)."""
        results: list[PageResult] = []
        while True:
            r = self.run_page(entity)
            results.append(r)
            if progress is not None:
                progress(r)
            if r.pass_complete:
                return results


def _merged(a: BatchResult, b: BatchResult) -> BatchResult:
    out = BatchResult()
    out.merge(a)
    out.merge(b)
    return out


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
