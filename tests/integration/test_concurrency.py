"""Concurrent writers on one database reach the state of applying every change in version order.

* PostgreSQL, randomized rounds: three threads, each with its own connection and engine, apply
  overlapping deliveries of one history (delete/update races on the same records; tables and
  columns appear concurrently, so DDL races too). Deadlocks and serialization failures are
  transient: the engine retries them; one that still escapes makes Service Bus redeliver the batch,
  which the test does too, and counts.
* PostgreSQL, forced interleavings: a writer is held just before its commit while another writer's
  change of the same record waits for the record's lock, proving that a deleted record never comes
  back from a stale update (the race described in ``shared/destinations/postgres/dialect.py``).
* SQLite: two processes on one database file.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from shared.destinations import Destination, Layout, TransientDestinationError, open_destination
from shared.destinations.inspect import table_rows
from shared.destinations.postgres.dialect import PostgresDestination, PostgresTransaction
from shared.engine import coltypes
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from tests.support.histories import (
    COLUMN_TYPES,
    Batch,
    RandomChooser,
    batch_texts,
    delivery,
    distinct_guids,
    history,
)
from tests.support.model import Change, ReferenceModel, canon, diff, expected_state, table_state
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration

ROUNDS = 12
WRITERS = 3
REDELIVERIES = 5  # how often one batch may fail transiently before the test gives up on it


@pytest.fixture(scope="module")
def pg_module_dsn() -> Iterator[str]:
    with fresh_database() as dsn:
        yield dsn


@dataclass
class WriterLog:
    total: BatchResult = field(default_factory=BatchResult)
    redelivered: int = 0
    errors: list[BaseException] = field(default_factory=list)


def apply_with_redelivery(engine: SyncEngine, batch: list[str], log: WriterLog) -> None:
    """What the Functions host does: a batch that failed transiently is delivered again."""
    for _ in range(REDELIVERIES):
        try:
            result = engine.apply_bodies(batch)
        except TransientDestinationError:
            log.redelivered += 1
            continue
        assert result.conserved, result.counts()
        log.total.merge(result)
        return
    raise AssertionError(f"a batch failed transiently {REDELIVERIES} times in a row")


def run_writer(dest: Destination, batches: list[Batch], start: threading.Barrier, log: WriterLog) -> None:
    try:
        engine = SyncEngine(dest, backoff_seconds=0.01)
        start.wait(timeout=30)
        for batch in batches:
            apply_with_redelivery(engine, batch_texts(batch), log)
    except BaseException as exc:
        log.errors.append(exc)


def assert_matches_model(dest: Destination, model: ReferenceModel, layout: Layout) -> None:
    stones = {
        (str(r["EntityName"]), canon(r["RecordId"])): r["VersionNumber"]
        for r in table_rows(dest, layout.tombstone_table)
    }
    for entity in sorted(model.entities):
        table = layout.entity_table(entity)
        problems = list(diff(expected_state(model, entity), table_state(table_rows(dest, table))))
        assert not problems, f"{table} differs from the serial result:\n" + "\n".join(problems)
        with dest.transaction() as tx:
            columns = tx.columns(table)
        assert columns is not None
        for name, ctype in columns.items():
            assert ctype == COLUMN_TYPES[name], f"{table}.{name} is {ctype}"
        for rid, version in model.deleted(entity).items():
            assert stones.get((entity, rid)) == version


@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_concurrent_postgres_writers_converge(pg_module_dsn: str, round_no: int) -> None:
    rng = random.Random(9000 + round_no)
    ch = RandomChooser(rng)
    # Few records, many changes each: writers collide on the same records all the time.
    record_ids = distinct_guids(ch, rng.randint(2, 5))
    changes = history(ch, entities=("account", "contact"), record_ids=record_ids, max_changes=10)
    # Each writer gets a random, overlapping share of the history; together they deliver all of it.
    shares: list[list[Change]] = [[] for _ in range(WRITERS)]
    for c in changes:
        for w in rng.sample(range(WRITERS), rng.randint(1, WRITERS)):
            shares[w].append(c)
    deliveries = [delivery(ch, share, max_batch=3, redeliveries=1) if share else [] for share in shares]

    layout = Layout(schema=f"race{round_no}x{uuid.uuid4().hex[:8]}", prefix="des", write_delete_log=True)
    dests = [PostgresDestination(pg_module_dsn, layout) for _ in range(WRITERS)]
    logs = [WriterLog() for _ in range(WRITERS)]
    start = threading.Barrier(WRITERS)
    threads = [
        threading.Thread(target=run_writer, args=(dests[w], deliveries[w], start, logs[w]), name=f"writer-{w}")
        for w in range(WRITERS)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive(), f"{t.name} hung (an unhandled lock wait?)"
        for log in logs:
            assert not log.errors, log.errors
            assert log.total.conserved
            assert (log.total.failed, log.total.unprocessable) == (0, 0), [f.reason for f in log.total.failures]
        model = ReferenceModel()
        model.apply_in_version_order(changes)
        assert_matches_model(dests[0], model, layout)
        # Every source event took effect at most once across all writers.
        assert sum(log.total.applied for log in logs) <= len({(c.key, c.version) for c in changes})
        # The delete log has each applied delete once (stale concurrent deletes are not logged).
        logged = [
            (str(r["EntityName"]), str(r["RecordId"]), r["VersionNumber"])
            for r in table_rows(dests[0], layout.delete_log_table)
        ]
        assert len(logged) == len(set(logged))
        assert sum(log.redelivered for log in logs) <= len(changes), "livelock: too many transient failures"
    finally:
        for d in dests:
            d.close()


def test_concurrent_column_additions_and_widening(pg_dsn: str) -> None:
    """Writers add columns (some the same, some their own) and widen one column at the same time."""
    layout = Layout(prefix="ddl")
    dests = [PostgresDestination(pg_dsn, layout) for _ in range(WRITERS)]
    logs = [WriterLog() for _ in range(WRITERS)]
    expected: dict[str, dict[str, object]] = {}
    work: list[list[list[str]]] = []
    for w in range(WRITERS):
        batches = []
        for i in range(8):
            rid = str(uuid.UUID(int=w * 1000 + i + 1, version=4))
            # Writer 0 sends integers no double holds exactly, the others doubles with 17
            # significant digits: the column ends up exact numeric whoever creates it first, and
            # no value is ever rounded (neither when written nor when its column is widened).
            amount: float | int = 2**62 + 1 + 2 * i if w == 0 else (i + 3 * w + 1) / 3
            attrs = {"amount": amount, f"shared_{i}": f"s{i}", f"own_{w}_{i}": i * 10 + w}
            expected[rid] = {"versionnumber": 1, **attrs}
            batches.append([Change("account", rid, "create", 1, attrs).body()])
        work.append(batches)
    start = threading.Barrier(WRITERS)

    def writer(w: int) -> None:
        try:
            engine = SyncEngine(dests[w], backoff_seconds=0.01)
            start.wait(timeout=30)
            for batch in work[w]:
                apply_with_redelivery(engine, batch, logs[w])
        except BaseException as exc:
            logs[w].errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive()
        for log in logs:
            assert not log.errors, log.errors
            assert (log.total.applied, log.total.failed) == (8, 0), [f.reason for f in log.total.failures]
        with dests[0].transaction() as tx:
            columns = tx.columns("ddl_account")
        assert columns is not None
        assert columns["amount"] == coltypes.DECIMAL
        assert len(columns) == 1 + 8 + 8 * WRITERS
        actual = table_state(table_rows(dests[0], "ddl_account"))
        problems = list(diff({k: {c: canon(v) for c, v in r.items()} for k, r in expected.items()}, actual))
        assert not problems, problems
        big = [actual[str(uuid.UUID(int=i + 1, version=4))]["amount"] for i in range(8)]  # writer 0's
        assert all(isinstance(v, int) and v > 2**62 and v % 2 == 1 for v in big), big
    finally:
        for d in dests:
            d.close()


# --------------------------------------------------------------------------- forced interleavings
class HeldPostgres(PostgresDestination):
    """The real PostgreSQL destination, with a hook that holds each write transaction just before
    it commits (so another writer can be made to wait for its locks). Not a test double."""

    def __init__(self, conninfo: str, layout: Layout | None = None) -> None:
        super().__init__(conninfo, layout)
        self.holding = threading.Event()
        self.release = threading.Event()

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        with super().transaction() as tx:
            yield tx
            self.holding.set()
            assert self.release.wait(timeout=30), "never released"


def wait_until_blocked(dsn: str, pid: int, timeout: float = 20.0) -> str:
    """Until backend ``pid`` waits for a lock; the statement it waits in."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT wait_event_type, query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
            if row is not None and row[0] == "Lock":
                return str(row[1])
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


R = str(uuid.UUID(int=77, version=4))
OTHER = str(uuid.UUID(int=78, version=4))


def up(version: int, name: str, rid: str = R) -> str:
    return Change("account", rid, "update", version, {"name": name, "numberofemployees": version}).body()


def rm(version: int, rid: str = R) -> str:
    return Change("account", rid, "delete", version).body()


@dataclass(frozen=True)
class Race:
    name: str
    before: Sequence[str]  # applied first, alone
    first: str  # holds its transaction open before commit
    second: str  # must wait for the first's record lock
    row_version: int | None  # the record's version afterwards (None: deleted)
    tombstone: int | None
    second_applied: bool


RACES = [
    Race("stale update waits for delete of existing row", [up(4, "v4")], rm(6), up(5, "zombie"), None, 6, False),
    Race(
        "stale update waits for delete of unseen record",
        [up(1, "other", OTHER)],
        rm(6),
        up(5, "zombie"),
        None,
        6,
        False,
    ),
    Race("newer update waits for delete: re-created", [up(4, "v4")], rm(6), up(7, "v7"), 7, 6, True),
    Race("delete waits for older update", [up(4, "v4")], up(5, "v5"), rm(6), None, 6, True),
    Race("stale update waits for newer update", [up(4, "v4")], up(6, "v6"), up(5, "zombie"), 6, None, False),
    Race("stale delete waits for newer delete", [up(4, "v4")], rm(6), rm(5), None, 6, False),
    Race("newer delete waits for older delete", [up(4, "v4")], rm(5), rm(6), None, 6, True),
]


@pytest.mark.parametrize("race", RACES, ids=[r.name for r in RACES])
def test_forced_interleaving_never_resurrects(pg_dsn: str, race: Race) -> None:
    layout = Layout(write_delete_log=True)
    setup = PostgresDestination(pg_dsn, layout)
    first = HeldPostgres(pg_dsn, layout)
    second = PostgresDestination(pg_dsn, layout)
    try:
        # Table and columns exist beforehand: the second writer must wait in its write, not in DDL.
        assert SyncEngine(setup).apply_bodies([up(1, "x", OTHER), *race.before]).failed == 0
        results: dict[str, BatchResult] = {}
        errors: list[BaseException] = []

        def writer(name: str, dest: PostgresDestination, body: str) -> None:
            try:
                results[name] = SyncEngine(dest).apply_bodies([body])
            except BaseException as exc:
                errors.append(exc)

        t1 = threading.Thread(target=writer, args=("first", first, race.first))
        t1.start()
        assert first.holding.wait(timeout=20), "first writer never reached its commit"
        t2 = threading.Thread(target=writer, args=("second", second, race.second))
        t2.start()
        waiting_in = wait_until_blocked(pg_dsn, second.conn.info.backend_pid)
        assert waiting_in.startswith("INSERT INTO"), waiting_in
        first.release.set()
        t1.join(timeout=30)
        t2.join(timeout=30)
        assert not errors, errors
        assert results["first"].applied == 1
        assert results["second"].applied == int(race.second_applied)
        assert results["second"].stale == int(not race.second_applied)

        rows = {str(r["Id"]): r for r in table_rows(setup, "account")}
        if race.row_version is None:
            assert R not in rows, f"deleted record came back: {rows.get(R)}"
        else:
            assert rows[R]["versionnumber"] == race.row_version
            assert rows[R]["name"] == f"v{race.row_version}"
        stones = {str(r["RecordId"]): r["VersionNumber"] for r in table_rows(setup, "_des_tombstones")}
        assert stones.get(R) == race.tombstone
        logged = sorted(int(str(r["VersionNumber"])) for r in table_rows(setup, "DeleteLog") if str(r["RecordId"]) == R)
        sent = [(json.loads(race.first), results["first"]), (json.loads(race.second), results["second"])]
        applied_deletes = sorted(n["version"] for n, res in sent if n["changeType"] == "delete" and res.applied)
        assert logged == applied_deletes
        # Delivered again afterwards, the loser stays a loser.
        again = SyncEngine(second).apply_bodies([race.second])
        assert again.applied == 0
        assert again.stale == 1
    finally:
        first.release.set()
        for d in (setup, first, second):
            d.close()


# ------------------------------------------------------------------------------- SQLite processes
def _sqlite_worker(path: str, batches: list[list[str]], start: float) -> dict[str, int]:
    """Runs in a child process: apply batches to the shared SQLite file."""
    dest = open_destination(f"sqlite:///{path}")
    engine = SyncEngine(dest, backoff_seconds=0.01)
    total = BatchResult()
    while time.time() < start:
        time.sleep(0.001)
    try:
        for batch in batches:
            result = engine.apply_bodies(batch)
            assert result.conserved
            total.merge(result)
    finally:
        dest.close()
    return total.counts()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_sqlite_processes_on_one_file(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ch = RandomChooser(rng)
    record_ids = distinct_guids(ch, 4)
    changes = history(ch, entities=("account", "contact"), record_ids=record_ids, max_changes=12)
    shares: list[list[Change]] = [[], []]
    for c in changes:
        for w in rng.sample(range(2), rng.randint(1, 2)):
            shares[w].append(c)
    work = [[batch_texts(b) for b in delivery(ch, share, max_batch=2)] if share else [] for share in shares]
    path = str(tmp_path / "shared.db")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        start = time.time() + 1.5  # both children are up by then: they start writing together
        pending = [pool.apply_async(_sqlite_worker, (path, w, start)) for w in work]
        counts = [p.get(timeout=120) for p in pending]
    for worker in counts:
        assert worker["failed"] == 0
        assert worker["unprocessable"] == 0
        assert worker["received"] == worker["applied"] + worker["stale"]
    model = ReferenceModel()
    model.apply_in_version_order(changes)
    dest = open_destination(f"sqlite:///{path}")
    try:
        assert_matches_model(dest, model, Layout())
    finally:
        dest.close()


# --------------------------------------------------------------------------------- transient errors
def test_a_deadlock_is_retried_by_the_engine(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """A writer deadlocks with another session; PostgreSQL aborts the writer's transaction (40P01);
    the engine classifies it as transient, retries the batch, and the batch applies once."""
    a, b = sorted([str(uuid.UUID(int=5, version=4)), str(uuid.UUID(int=6, version=4))])
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        # The writer's session detects the cycle first: its deadlock_timeout is the shorter one.
        admin.execute(sql_set_database_deadlock_timeout(pg_dsn, "1s"))
    dest = PostgresDestination(pg_dsn)
    try:
        engine = SyncEngine(dest, backoff_seconds=0.05)
        engine.apply_bodies([up(1, "v1", a), up(1, "v1", b)])
        other = psycopg.connect(pg_dsn)
        try:
            other.execute("SET deadlock_timeout = '30s'")
            other.execute('SELECT 1 FROM account WHERE "Id" = %s FOR UPDATE', [b])  # holds b
            results: list[BatchResult] = []
            t = threading.Thread(target=lambda: results.append(engine.apply_bodies([up(2, "v2", a), up(2, "v2", b)])))
            with caplog.at_level("WARNING", logger="shared.engine.engine"):
                t.start()
                wait_until_blocked(pg_dsn, dest.conn.info.backend_pid)  # the writer holds a, waits for b
                # Now wait for a: a cycle. The writer's session finds it and is aborted.
                other.execute('SELECT 1 FROM account WHERE "Id" = %s FOR UPDATE', [a])
                other.commit()
                t.join(timeout=30)
            assert not t.is_alive()
        finally:
            other.close()
        (result,) = results
        assert (result.applied, result.failed, result.stale) == (2, 0, 0)
        assert any("transient" in r.getMessage() and "deadlock" in r.getMessage() for r in caplog.records), [
            r.getMessage() for r in caplog.records
        ]
        assert {str(r["Id"]): r["versionnumber"] for r in table_rows(dest, "account")} == {a: 2, b: 2}
    finally:
        dest.close()


def sql_set_database_deadlock_timeout(dsn: str, value: str) -> str:
    name = dsn.rsplit("/", 1)[1]
    assert name.replace("_", "").isalnum()
    return f"ALTER DATABASE \"{name}\" SET deadlock_timeout = '{value}'"


def test_a_lost_connection_is_retried_and_a_batch_is_all_or_nothing(pg_dsn: str) -> None:
    dest = PostgresDestination(pg_dsn)
    other = psycopg.connect(pg_dsn)
    try:
        SyncEngine(dest).apply_bodies([up(1, "v1"), up(1, "v1", OTHER)])

        def kill_writer_while_it_waits(engine: SyncEngine, results: list[object]) -> None:
            try:
                results.append(engine.apply_bodies([up(2, "v2", OTHER), up(2, "v2")]))
            except BaseException as exc:
                results.append(exc)

        for attempts, survives in ((1, False), (3, True)):
            other.execute('SELECT 1 FROM account WHERE "Id" = %s FOR UPDATE', [R])
            results: list[object] = []
            engine = SyncEngine(dest, attempts=attempts, backoff_seconds=0.05)
            t = threading.Thread(target=kill_writer_while_it_waits, args=(engine, results))
            t.start()
            pid = dest.conn.info.backend_pid
            wait_until_blocked(pg_dsn, pid)
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            other.commit()
            t.join(timeout=30)
            (outcome,) = results
            rows = {str(r["Id"]): r["versionnumber"] for r in table_rows(dest, "account")}
            if survives:
                assert isinstance(outcome, BatchResult)
                assert outcome.applied == 2
                assert rows == {R: 2, OTHER: 2}
            else:
                # Out of attempts: the caller is told (the host redelivers), and nothing of the
                # batch was committed, not even the record that was not waiting.
                assert isinstance(outcome, TransientDestinationError)
                assert rows == {R: 1, OTHER: 1}
    finally:
        other.close()
        dest.close()


def test_sqlite_lock_timeout_is_transient(tmp_path: Path) -> None:
    from shared.destinations.sqlite.dialect import SqliteDestination

    path = tmp_path / "locked.db"
    dest = SqliteDestination(str(path), busy_timeout=0.05)
    try:
        engine = SyncEngine(dest, attempts=2, backoff_seconds=0.01)
        engine.apply_bodies([up(1, "v1")])
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process is writing, for longer than we wait
        try:
            with pytest.raises(TransientDestinationError):
                engine.apply_bodies([up(2, "v2")])
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # Redelivered once the other writer is done, the batch applies.
        assert engine.apply_bodies([up(2, "v2")]).applied == 1
        assert [r["versionnumber"] for r in table_rows(dest, "account")] == [2]
    finally:
        dest.close()
