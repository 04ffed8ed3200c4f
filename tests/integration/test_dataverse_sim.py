"""The Dataverse source against the Dataverse simulator over HTTP, into real SQLite and PostgreSQL.

The simulator (shared/tools/dataverse_sim, built from the reference, not from this source) serves
the Web API on a loopback port; the source reads it with its real httpx client. Random change
histories (updates, deletes, re-creations, token expiry, throttling, 5xx, crashes between pages)
must converge: every live record at its latest version and values, nothing deleted coming back.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.source.dataverse.client import SourceUnavailable, StaticToken
from shared.source.dataverse.cursors import Phase
from shared.tools.dataverse_sim import RunningSimulator, run_simulator
from shared.tools.dataverse_sim.state import Ref
from tests.support.dataverse_sync import PROFILE, CrashedOnPurpose, CrashingSink, Rig, drive, rig
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration

ENTITIES = ("account", "contact", "opportunity", "des_account_contact")


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with run_simulator(records=12, seed=5) as running:
        yield running


def http_rig(tmp_path: Path, dsn: str, running: RunningSimulator, **kw: Any) -> Any:
    return rig(tmp_path, dsn, httpx.HTTPTransport(), base_url=running.environment_url, **kw)


def _same(got: Any, want: Any) -> bool:
    if want is None:
        return got is None
    if isinstance(got, uuid.UUID):
        got = str(got)
    if isinstance(want, bool):
        return bool(got) is want
    if isinstance(want, Decimal):
        return Decimal(str(got)).normalize() == want.normalize()
    if isinstance(want, datetime):
        g = got if isinstance(got, datetime) else datetime.fromisoformat(str(got))
        return g == want
    if isinstance(want, tuple):  # multi-select: stored as DES did, "1,3"
        return bool(got == ",".join(map(str, want)))
    if isinstance(want, date):
        return str(got).startswith(want.isoformat())
    return bool(got == want)


def assert_matches_simulator(r: Rig, running: RunningSimulator, entity: str) -> None:
    truth = running.sim.truth(entity)
    rows = r.table(entity)
    assert set(rows) == set(truth), (entity, sorted(set(rows) - set(truth))[:3], sorted(set(truth) - set(rows))[:3])
    for rid, want in truth.items():
        got = rows[rid]
        for name, value in want.items():
            if name == "versionnumber":
                assert got[name] == 2 * value, (entity, rid)
            elif isinstance(value, Ref):
                assert str(got.get(name)).lower() == value.id, (entity, rid, name)
                assert got.get(f"{name}_entitytype") == value.entity, (entity, rid, name)
            else:
                assert _same(got.get(name), value), (entity, rid, name, got.get(name), value)


def sync_all(r: Rig, running: RunningSimulator, *, passes: int = 1, settle: bool = True, **settings: Any) -> None:
    runner = r.runner(**settings)
    for entity in ENTITIES:
        for attempt in range(5):  # a transient failure ends the unit; the host runs it again later
            try:
                drive(runner, entity, passes=passes, settle=settle)
                break
            except SourceUnavailable:
                if attempt == 4:
                    raise


def connect(r: Rig, running: RunningSimulator) -> Rig:
    r.client.tokens = StaticToken(running.token)
    return r


def test_initial_sync_and_deltas_against_the_simulator(tmp_path: Path, dsn: str, sim: RunningSimulator) -> None:
    with http_rig(tmp_path, dsn, sim) as r:
        connect(r, sim)
        sync_all(r, sim)
        for entity in ENTITIES:
            assert_matches_simulator(r, sim, entity)
        sim.sim.random_changes(60, seed=1)
        sync_all(r, sim)
        for entity in ENTITIES:
            assert_matches_simulator(r, sim, entity)
        # metadata reached the destination: DES's option set table and typed columns
        table = r.dest.layout.metadata_table("OptionsetMetadata")
        assert {str(row["OptionSetName"]) for row in r.dest.table_rows(table)}


@pytest.mark.parametrize(
    ("switches", "verify"),
    [
        ({"recreated_in_delta": "row_and_tombstone", "delta_order": "upserts_then_deletes"}, True),
        ({"recreated_in_delta": "row_and_tombstone", "delta_order": "by_version"}, True),
        ({"recreated_in_delta": "row_and_tombstone", "delta_order": "by_version", "page_deltas": False}, False),
        ({"recreated_in_delta": "row_only", "empty_delta": "empty_object"}, False),
    ],
)
def test_switches_delete_and_recreate(
    tmp_path: Path, sqlite_dsn: str, sim: RunningSimulator, switches: dict[str, Any], verify: bool
) -> None:
    sim.sim.set_switches(**switches)
    state = sim.sim.state
    with http_rig(tmp_path, sqlite_dsn, sim) as r:
        connect(r, sim)
        sync_all(r, sim, verify_deletes=verify)
        victim = state.ids("account")[0]
        # delete then re-create with the same id inside one delta window
        values = {k: v for k, v in state.truth("account")[victim].items() if k in ("name", "revenue")}
        state.delete("account", victim)
        state.create("account", values, victim)
        sync_all(r, sim, verify_deletes=verify)
        assert_matches_simulator(r, sim, "account")
        # across deltas
        state.delete("account", victim)
        sync_all(r, sim, verify_deletes=verify)
        assert victim not in r.table("account")
        state.create("account", values, victim)
        sync_all(r, sim, verify_deletes=verify)
        for entity in ENTITIES:
            assert_matches_simulator(r, sim, entity)
        sync_all(r, sim, verify_deletes=verify)  # an empty pass
        assert_matches_simulator(r, sim, "account")


def test_expiry_throttling_faults_and_crash_against_the_simulator(
    tmp_path: Path, dsn: str, sim: RunningSimulator
) -> None:
    with http_rig(tmp_path, dsn, sim) as r:
        connect(r, sim)
        sim.sim.throttle_next(2, retry_after=2)
        sync_all(r, sim)
        assert r.sleeps[:2] == [2.0, 2.0]
        sim.sim.random_changes(30, seed=2)
        sim.sim.expire_delta_tokens()
        sim.sim.fail_next(2)
        sync_all(r, sim)
        cursor = r.cursors.get(PROFILE, "account")
        assert cursor is not None
        assert cursor.phase is Phase.DELTA
        for entity in ENTITIES:
            assert_matches_simulator(r, sim, entity)
        # a crash after a page was applied, before its cursor advanced: the next instance re-reads it
        sim.sim.random_changes(30, seed=3)
        crashing = CrashingSink(r.sink, {2})
        with pytest.raises(RuntimeError, match="crash"):
            drive(r.runner(owner="crashes", sink=crashing), "contact")
        sync_all(r, sim)
        for entity in ENTITIES:
            assert_matches_simulator(r, sim, entity)


def test_intersect_without_change_tracking_reloads_and_reconciles(
    tmp_path: Path, sqlite_dsn: str, sim: RunningSimulator
) -> None:
    sim.sim.set_switches(intersect_change_tracking=False)
    with http_rig(tmp_path, sqlite_dsn, sim) as r:
        connect(r, sim)
        runner = r.runner()
        drive(runner, "des_account_contact")
        assert_matches_simulator(r, sim, "des_account_contact")
        sim.sim.random_changes(40, seed=4)
        drive(runner, "des_account_contact")
        assert_matches_simulator(r, sim, "des_account_contact")
        cursor = r.cursors.get(PROFILE, "des_account_contact")
        assert cursor is not None
        assert cursor.phase is Phase.RESYNC  # reloaded in full every pass


Step = tuple[str, int]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("changes"), st.integers(1, 25)),
        st.tuples(st.just("sync"), st.integers(1, 2)),
        st.tuples(st.just("expire"), st.just(0)),
        st.tuples(st.just("throttle"), st.integers(1, 3)),
        st.tuples(st.just("fail"), st.integers(1, 2)),
        st.tuples(st.just("crash"), st.integers(1, 4)),
    ),
    min_size=1,
    max_size=8,
)


def _history(tmp_path: Path, dsn: str, history: list[Step], seed: int, verify: bool) -> None:
    with run_simulator(records=6, seed=seed) as running, http_rig(tmp_path, dsn, running) as r:
        connect(r, running)
        rng = random.Random(seed)
        for kind, n in history:
            if kind == "changes":
                running.sim.random_changes(n, seed=rng.randrange(10**6))
            elif kind == "sync":
                sync_all(r, running, passes=n, settle=False, verify_deletes=verify)
            elif kind == "expire":
                running.sim.expire_delta_tokens(rng.choice(ENTITIES[:3]))
            elif kind == "throttle":
                running.sim.throttle_next(n, retry_after=1)
            elif kind == "fail":
                running.sim.fail_next(n)
            else:
                crashing = CrashingSink(r.sink, {n}, after=rng.random() < 0.5)
                with contextlib.suppress(CrashedOnPurpose, SourceUnavailable):  # or it finished before the crash
                    drive(r.runner(owner=f"crash-{rng.random()}", sink=crashing), rng.choice(ENTITIES))
        running.sim.throttle_next(0)
        running.sim.fail_next(0)
        sync_all(r, running, verify_deletes=verify)
        for entity in ENTITIES:
            assert_matches_simulator(r, running, entity)


@settings(max_examples=8)
@given(history=steps, seed=st.integers(0, 1000), verify=st.booleans())
def test_random_histories_converge_in_sqlite(tmp_path_factory: pytest.TempPathFactory, history: list[Step],
                                             seed: int, verify: bool) -> None:  # fmt: skip
    tmp = tmp_path_factory.mktemp("h")
    _history(tmp, f"sqlite:///{tmp / 'dest.db'}", history, seed, verify)


@settings(max_examples=5)
@given(history=steps, seed=st.integers(0, 1000), verify=st.booleans())
def test_random_histories_converge_in_postgresql(tmp_path_factory: pytest.TempPathFactory, history: list[Step],
                                                 seed: int, verify: bool) -> None:  # fmt: skip
    tmp = tmp_path_factory.mktemp("h")
    with fresh_database() as pg:
        _history(tmp, pg, history, seed, verify)
