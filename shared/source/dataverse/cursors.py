"""The source's cursor per (profile, entity) in the admin store: lease + compare-and-set, and status.

A unit of work (one page) **claims** the cursor: a lease (owner, until) taken with one conditional
UPDATE, so two instances never read the same cursor at once; a crashed holder's lease runs out.
When the page's notifications are applied or published, the unit **advances** the cursor with a
compare-and-set on its revision (and its lease): a holder whose lease was taken over in between
cannot overwrite the newer cursor (:class:`CursorLost`; what it published is re-read and
re-published by the new holder, which at-least-once delivery and the version guard make harmless).

The row also carries the per-entity status the API and CLI show (:func:`source_status`).
Tables: ``des_source_cursors`` and ``des_source_seen`` (admin store migration 2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from shared.source.dataverse.mapping import EntityInfo
from shared.store.sql import SOURCE_CURSORS, SOURCE_SEEN, SqlStore


class InitialSyncState(str, Enum):
    NOT_STARTED = "NotStarted"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"


class Phase(str, Enum):
    METADATA = "metadata"  # next: read the entity's definition and publish its metadata
    INITIAL = "initial"  # full load: link = the next page (None: the first)
    DELTA = "delta"  # link = the delta link of the last complete pass
    RESYNC = "resync"  # full load after an expired token, recording the ids read
    RECONCILE = "reconcile"  # after a re-sync: delete what the full load did not return


class CursorLost(RuntimeError):
    """Another instance took the cursor over (our lease ran out): this unit's advance is dropped."""


class CursorBusy(RuntimeError):
    """Another instance holds the cursor's lease now."""


@dataclass(frozen=True, slots=True)
class CursorState:
    profile_id: str
    entity: str
    phase: Phase
    link: str | None = None
    info: EntityInfo | None = None
    organization_id: str | None = None
    high_water: int = 0
    revision: int = 0
    lease_owner: str | None = None
    initial_sync_state: InitialSyncState = InitialSyncState.NOT_STARTED
    state_reason: str | None = None
    rows_read: int = 0
    deletes_read: int = 0
    pages: int = 0
    last_poll: datetime | None = None
    newest_modified_on: datetime | None = None
    next_poll: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EntitySourceStatus:
    """What ``des metrics`` / the API show per entity of a profile's source."""

    entity: str
    initial_sync_state: str
    reason: str | None
    phase: str
    rows_read: int
    deletes_read: int
    pages: int
    last_poll: datetime | None
    source_lag_seconds: float | None  # now - newest modifiedon seen (None before any row)
    next_poll: datetime | None

    def to_json(self) -> dict[str, Any]:
        def ts(v: datetime | None) -> str | None:
            return None if v is None else v.astimezone(UTC).isoformat().replace("+00:00", "Z")

        return {
            "entity": self.entity, "initialSyncState": self.initial_sync_state, "reason": self.reason,
            "phase": self.phase, "rowsRead": self.rows_read, "deletesRead": self.deletes_read, "pages": self.pages,
            "lastPoll": ts(self.last_poll), "sourceLagSeconds": self.source_lag_seconds, "nextPoll": ts(self.next_poll),
        }  # fmt: skip


_COLUMNS = (
    "profile_id", "entity", "phase", "link", "info", "organization_id", "high_water", "revision", "lease_owner",
    "initial_sync_state", "state_reason", "rows_read", "deletes_read", "pages", "last_poll", "newest_modified_on",
    "next_poll", "updated_at",
)  # fmt: skip
SEEN_CHUNK = 500  # ids per IN list (SQL Server takes at most 2,100 parameters per request)
_TS = frozenset({"last_poll", "newest_modified_on", "next_poll", "updated_at"})


def _now() -> datetime:
    return datetime.now(UTC)


class CursorStore:
    """Cursors in the admin store (SQLite, PostgreSQL, SQL Server: the store's own dialect)."""

    def __init__(self, store: SqlStore, *, clock: Any = _now) -> None:
        self.store = store
        self.d = store.d
        self.clock = clock
        self._t = self.d.table(SOURCE_CURSORS)
        self._s = self.d.table(SOURCE_SEEN)

    def _state(self, row: Sequence[Any]) -> CursorState:
        v = dict(zip(_COLUMNS, row, strict=True))
        for k in _TS:
            v[k] = self.d.ts_out(v[k])
        info = v.pop("info")
        return CursorState(
            profile_id=v["profile_id"], entity=v["entity"], phase=Phase(v["phase"]), link=v["link"],
            info=EntityInfo.from_json(json.loads(info)) if info else None, organization_id=v["organization_id"],
            high_water=int(v["high_water"]), revision=int(v["revision"]), lease_owner=v["lease_owner"],
            initial_sync_state=InitialSyncState(v["initial_sync_state"]), state_reason=v["state_reason"],
            rows_read=int(v["rows_read"]), deletes_read=int(v["deletes_read"]), pages=int(v["pages"]),
            last_poll=v["last_poll"], newest_modified_on=v["newest_modified_on"], next_poll=v["next_poll"],
            updated_at=v["updated_at"],
        )  # fmt: skip

    def _select(self, cur: Any, profile_id: str, entity: str) -> CursorState | None:
        cur.execute(
            self.d.sql(f"SELECT {', '.join(_COLUMNS)} FROM {self._t} WHERE profile_id = ? AND entity = ?"),
            (profile_id, entity),
        )
        row = cur.fetchone()
        return None if row is None else self._state(row)

    # ------------------------------------------------------------------------------ reading
    def get(self, profile_id: str, entity: str) -> CursorState | None:
        with self.d.reader() as cur:
            return self._select(cur, profile_id.lower(), entity)

    def list(self, profile_id: str) -> list[CursorState]:
        with self.d.reader() as cur:
            cur.execute(
                self.d.sql(f"SELECT {', '.join(_COLUMNS)} FROM {self._t} WHERE profile_id = ? ORDER BY entity"),
                (profile_id.lower(),),
            )
            return [self._state(r) for r in cur.fetchall()]

    # ------------------------------------------------------------------------------ lease
    def ensure(self, profile_id: str, entity: str) -> None:
        """Create the cursor (phase metadata, NotStarted) unless it exists."""
        pid = profile_id.lower()
        try:
            with self.d.transaction() as cur:
                cur.execute(
                    self.d.sql(
                        f"INSERT INTO {self._t} (profile_id, entity, phase, initial_sync_state, updated_at) "
                        f"SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS "
                        f"(SELECT 1 FROM {self._t} WHERE profile_id = ? AND entity = ?)"
                    ),
                    (pid, entity, Phase.METADATA.value, InitialSyncState.NOT_STARTED.value,
                     self.d.ts_in(self.clock()), pid, entity),
                )  # fmt: skip
        except Exception as exc:
            if not self.d.is_unique_violation(exc):  # a concurrent ensure won: fine
                raise

    def claim(self, profile_id: str, entity: str, owner: str, lease_seconds: float) -> CursorState:
        """Take the cursor's lease (or renew ours); :class:`CursorBusy` while another holds it."""
        pid = profile_id.lower()
        now = self.clock()
        with self.d.transaction() as cur:
            cur.execute(
                self.d.sql(
                    f"UPDATE {self._t} SET lease_owner = ?, lease_until = ? WHERE profile_id = ? AND entity = ? "
                    "AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until < ? OR lease_owner = ?)"
                ),
                (owner, self.d.ts_in(now + timedelta(seconds=lease_seconds)), pid, entity, self.d.ts_in(now), owner),
            )
            if cur.rowcount != 1:
                raise CursorBusy(f"the cursor of {entity} is held by another instance")
            state = self._select(cur, pid, entity)
        assert state is not None
        return state

    def release(self, state: CursorState) -> None:
        with self.d.transaction() as cur:
            cur.execute(
                self.d.sql(
                    f"UPDATE {self._t} SET lease_owner = NULL, lease_until = NULL "
                    "WHERE profile_id = ? AND entity = ? AND lease_owner = ?"
                ),
                (state.profile_id, state.entity, state.lease_owner),
            )

    # ------------------------------------------------------------------------------ advance
    def advance(
        self,
        old: CursorState,
        new: CursorState,
        *,
        seen: Iterable[str] = (),
        clear_seen: bool = False,
    ) -> CursorState:
        """Compare-and-set: write ``new`` if the row is still at ``old.revision`` under our lease.

        ``seen`` ids are recorded for the re-sync's reconcile in the same transaction;
        ``clear_seen`` forgets them (a re-sync starts, or its reconcile is done).
        """
        now = self.clock()
        new = replace(new, revision=old.revision + 1, updated_at=now)
        d = self.d
        with d.transaction() as cur:
            cur.execute(
                d.sql(
                    f"UPDATE {self._t} SET phase = ?, link = ?, info = ?, organization_id = ?, high_water = ?, "
                    "revision = ?, initial_sync_state = ?, state_reason = ?, rows_read = ?, deletes_read = ?, "
                    "pages = ?, last_poll = ?, newest_modified_on = ?, next_poll = ?, updated_at = ? "
                    "WHERE profile_id = ? AND entity = ? AND revision = ? AND lease_owner = ?"
                ),
                (
                    new.phase.value, new.link, json.dumps(new.info.to_json()) if new.info else None,
                    new.organization_id, new.high_water, new.revision, new.initial_sync_state.value,
                    new.state_reason, new.rows_read, new.deletes_read, new.pages, d.ts_in(new.last_poll),
                    d.ts_in(new.newest_modified_on), d.ts_in(new.next_poll), d.ts_in(now),
                    old.profile_id, old.entity, old.revision, old.lease_owner,
                ),
            )  # fmt: skip
            if cur.rowcount != 1:
                raise CursorLost(f"the cursor of {old.entity} was taken over by another instance")
            if clear_seen:
                cur.execute(
                    d.sql(f"DELETE FROM {self._s} WHERE profile_id = ? AND entity = ?"), (old.profile_id, old.entity)
                )
            ids = sorted(set(seen))
            if ids:
                cur.executemany(
                    d.sql(
                        f"INSERT INTO {self._s} (profile_id, entity, record_id) SELECT ?, ?, ? WHERE NOT EXISTS "
                        f"(SELECT 1 FROM {self._s} WHERE profile_id = ? AND entity = ? AND record_id = ?)"
                    ),
                    [(old.profile_id, old.entity, i, old.profile_id, old.entity, i) for i in ids],
                )
        return new

    def seen(self, profile_id: str, entity: str) -> set[str]:
        """Every id recorded (tests; the runner asks :meth:`seen_among` in bounded chunks)."""
        with self.d.reader() as cur:
            cur.execute(
                self.d.sql(f"SELECT record_id FROM {self._s} WHERE profile_id = ? AND entity = ?"),
                (profile_id.lower(), entity),
            )
            return {str(r[0]) for r in cur.fetchall()}

    def seen_among(self, profile_id: str, entity: str, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` (lower case) are recorded: memory bounded by ``ids``, not by the table."""
        wanted = sorted(set(ids))
        found: set[str] = set()
        with self.d.reader() as cur:
            for at in range(0, len(wanted), SEEN_CHUNK):
                chunk = wanted[at : at + SEEN_CHUNK]
                cur.execute(
                    self.d.sql(
                        f"SELECT record_id FROM {self._s} WHERE profile_id = ? AND entity = ? "
                        f"AND record_id IN ({', '.join('?' * len(chunk))})"
                    ),
                    (profile_id.lower(), entity, *chunk),
                )
                found.update(str(r[0]) for r in cur.fetchall())
        return found

    def reset(self, profile_id: str, entity: str) -> None:
        """Forget an entity's cursor (the next unit starts over with metadata and a full load)."""
        pid = profile_id.lower()
        with self.d.transaction() as cur:
            cur.execute(self.d.sql(f"DELETE FROM {self._t} WHERE profile_id = ? AND entity = ?"), (pid, entity))
            cur.execute(self.d.sql(f"DELETE FROM {self._s} WHERE profile_id = ? AND entity = ?"), (pid, entity))


def source_status(cursors: CursorStore, profile_id: str, *, now: datetime | None = None) -> list[EntitySourceStatus]:
    """Per entity of the profile: InitialSyncState (with the reason when Failed), rows read, pages,
    last poll, source lag (now minus the newest ``modifiedon`` seen) and next poll."""
    moment = now or _now()
    out = []
    for c in cursors.list(profile_id):
        lag = None if c.newest_modified_on is None else max(0.0, (moment - c.newest_modified_on).total_seconds())
        out.append(
            EntitySourceStatus(
                entity=c.entity,
                initial_sync_state=c.initial_sync_state.value,
                reason=c.state_reason,
                phase=c.phase.value,
                rows_read=c.rows_read,
                deletes_read=c.deletes_read,
                pages=c.pages,
                last_poll=c.last_poll,
                source_lag_seconds=lag,
                next_poll=c.next_poll,
            )
        )
    return out
