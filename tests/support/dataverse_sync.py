"""Builders for Dataverse source tests: a runner over a real admin store and a real destination."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from shared.destinations import Destination, Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.source.dataverse.client import DataverseClient, StaticToken
from shared.source.dataverse.cursors import CursorStore, Phase
from shared.source.dataverse.runner import SourceRunner
from shared.source.dataverse.settings import DataverseSettings
from shared.source.dataverse.sink import EngineSink
from shared.store import SqlStore, open_store

PROFILE = "5b0b8f3e-2d7f-4c55-9a57-3f3c1f0e9a11"
SETTINGS = DataverseSettings(page_size=3, max_attempts=4, poll_interval_seconds=60, lease_seconds=60)


@dataclass
class Clock:
    """A settable clock for leases (the tests move it; nothing sleeps)."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 30, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    store: SqlStore
    cursors: CursorStore
    client: DataverseClient
    dest: Destination
    sink: EngineSink
    clock: Clock
    sleeps: list[float]

    def runner(self, *, owner: str = "test-a", sink: Any = None, **settings: Any) -> SourceRunner:
        return SourceRunner(
            cursors=self.cursors,
            client=self.client,
            sink=sink or self.sink,
            profile_id=PROFILE,
            settings=replace(SETTINGS, **settings),
            owner=owner,
            clock=self.clock,
        )

    def table(self, entity: str) -> dict[str, dict[str, Any]]:
        table = self.dest.layout.entity_table(entity)
        with self.dest.transaction() as tx:
            if tx.columns(table) is None:
                return {}
        return {str(r["Id"]).lower(): r for r in self.dest.table_rows(table)}


@contextmanager
def rig(
    tmp_path: Path,
    dsn: str,
    transport: httpx.BaseTransport,
    *,
    base_url: str,
    layout: Layout | None = None,
    settings: DataverseSettings = SETTINGS,
) -> Iterator[Rig]:
    store = open_store(f"sqlite:///{tmp_path / 'admin.db'}")
    sleeps: list[float] = []
    client = DataverseClient(base_url, settings, tokens=StaticToken("t0ken"), transport=transport, sleep=sleeps.append)
    dest = open_destination(dsn, layout or Layout(write_delete_log=True))
    clock = Clock()
    try:
        yield Rig(store, CursorStore(store, clock=clock), client, dest, EngineSink(SyncEngine(dest)), clock, sleeps)
    finally:
        client.close()
        dest.close()
        store.close()


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal | float) and not isinstance(value, bool):
        return Decimal(str(value)).normalize()
    if isinstance(value, str | uuid.UUID):
        return str(value).lower()
    return value


def assert_converged(
    r: Rig, entity: str, truth: dict[str, dict[str, Any]], *, lookups: Sequence[str] = (), plain: Sequence[str] = ()
) -> None:
    """The destination table holds exactly the live records, each at its latest version and values."""
    rows = r.table(entity)
    assert set(rows) == set(truth), (sorted(set(rows) - set(truth)), sorted(set(truth) - set(rows)))
    for rid, want in truth.items():
        got = rows[rid]
        assert got["versionnumber"] == 2 * want["versionnumber"], (rid, got["versionnumber"], want["versionnumber"])
        for name in plain:
            if want.get(name) is None:
                assert got.get(name) is None, (rid, name)
            else:
                assert _norm(got[name]) == _norm(want[name]), (rid, name, got[name], want[name])
        for name in lookups:
            ref = want.get(name)
            assert _norm(got.get(name)) == (ref[1].lower() if ref else None), (rid, name)
            assert got.get(f"{name}_entitytype") == (ref[0] if ref else None), (rid, name)


class CrashedOnPurpose(RuntimeError):
    """The test's stand-in for a process dying in the middle of a unit of work."""


class CrashingSink:
    """Delivers like the real sink, then fails on chosen publish calls: a crash after the page was
    applied but before the cursor advanced (``after=True``), or before it was applied."""

    def __init__(self, inner: EngineSink, crash_on: set[int], *, after: bool = True) -> None:
        self.inner = inner
        self.crash_on = crash_on
        self.after = after
        self.calls = 0

    def publish(self, entity: str, bodies: Sequence[bytes]) -> BatchResult | None:
        self.calls += 1
        if self.calls in self.crash_on and not self.after:
            raise CrashedOnPurpose("crash before delivery")
        result = self.inner.publish(entity, bodies)
        if self.calls in self.crash_on:
            raise CrashedOnPurpose("crash after delivery, before the cursor advanced")
        return result

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]:
        return self.inner.held(entity, ids)

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        return self.inner.existing(entity, after, limit)


def drive(
    runner: SourceRunner,
    entity: str,
    *,
    passes: int = 1,
    settle: bool = False,
    on_page: Callable[[], None] | None = None,
) -> int:
    """Complete ``passes`` passes (the first of a fresh cursor is the initial sync); return units run.

    ``settle``: go on until a delta pass completes, so the destination has caught up with every change
    made before the call (a full load's delta link may predate changes made while it ran).
    """
    units = 0
    done = 0
    while True:
        result = runner.run_page(entity)
        units += 1
        if on_page is not None:
            on_page()
        if result.pass_complete:
            done += 1
            if done >= passes and (not settle or result.phase is Phase.DELTA):
                return units
        assert units < 10_000, "no progress"
