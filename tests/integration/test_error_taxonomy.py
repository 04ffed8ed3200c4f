"""The error taxonomy (docs/sqlserver.md, "Error taxonomy") on real SQLite and PostgreSQL errors.

Every row of the SQLite and PostgreSQL tables is provoked on a real database and classified by the
dialect; then the engine's handling of each class is shown end to end: record-level errors fail
the culprit only, entity-level errors fail that entity's records while the other entities of the
batch commit, environmental errors park the batch (no failure-log line), class 54 is never
transient. SQL Server's rows are in tests/unit/test_mssql_dialect.py (recording double).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from shared.destinations import open_destination
from shared.destinations.inspect import table_rows
from shared.destinations.postgres import errors as pg_errors
from shared.destinations.postgres.dialect import PostgresDestination
from shared.destinations.sqlite import errors as sqlite_errors
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.engine.engine import SyncEngine
from shared.engine.ports import EnvironmentalDestinationError, ErrorClass, Layout, TransientDestinationError
from tests.support.model import Change

pytestmark = pytest.mark.integration

RECORD, ENTITY, TRANSIENT, ENVIRONMENTAL = (
    ErrorClass.RECORD,
    ErrorClass.ENTITY,
    ErrorClass.TRANSIENT,
    ErrorClass.ENVIRONMENTAL,
)


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def up(entity: str, i: int, attrs: dict[str, object], version: int = 1) -> str:
    return Change(entity, rid(i), "update", version, attrs).body()  # type: ignore[arg-type]


def raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("no error was raised")


# ----------------------------------------------------------------------------------- SQLite
def _sqlite_busy(tmp: Path) -> BaseException:
    a = sqlite3.connect(tmp / "busy.db", isolation_level=None)
    b = sqlite3.connect(tmp / "busy.db", isolation_level=None, timeout=0)
    a.execute("BEGIN IMMEDIATE")
    try:
        return raised(lambda: b.execute("BEGIN IMMEDIATE"))
    finally:
        a.execute("ROLLBACK")


def _sqlite_locked(tmp: Path) -> BaseException:
    c = sqlite3.connect(tmp / "locked.db", isolation_level=None)
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1), (2)")
    reading = c.execute("SELECT * FROM t")
    reading.fetchone()
    return raised(lambda: c.execute("DROP TABLE t"))


def _sqlite_readonly(tmp: Path) -> BaseException:
    sqlite3.connect(tmp / "ro.db").execute("CREATE TABLE t (x)").connection.close()
    ro = sqlite3.connect(f"file:{tmp / 'ro.db'}?mode=ro", uri=True)
    return raised(lambda: ro.execute("INSERT INTO t VALUES (1)"))


def _sqlite_full(tmp: Path) -> BaseException:
    c = sqlite3.connect(tmp / "full.db", isolation_level=None)
    c.execute("CREATE TABLE t (x)")
    c.execute("PRAGMA max_page_count = 3")
    return raised(lambda: c.execute("INSERT INTO t SELECT randomblob(100000)"))


def _sqlite_interrupt(tmp: Path) -> BaseException:
    c = sqlite3.connect(tmp / "int.db")
    c.execute("CREATE TABLE t (x)")
    c.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    c.set_progress_handler(lambda: 1, 1)  # cancel at once
    return raised(lambda: c.execute("SELECT count(*) FROM t, t, t").fetchall())


def _sqlite_notadb(tmp: Path) -> BaseException:
    (tmp / "junk.db").write_bytes(b"x" * 4096)
    return raised(lambda: sqlite3.connect(tmp / "junk.db").execute("SELECT * FROM sqlite_master").fetchall())


def _sqlite_corrupt(tmp: Path) -> BaseException:
    c = sqlite3.connect(tmp / "bad.db")
    c.execute("CREATE TABLE q (x)")
    c.executemany("INSERT INTO q VALUES (?)", [("y" * 100,)] * 500)
    c.commit()
    c.close()
    data = bytearray((tmp / "bad.db").read_bytes())
    data[4096 : 4096 + 200] = b"\xff" * 200
    (tmp / "bad.db").write_bytes(bytes(data))
    return raised(lambda: sqlite3.connect(tmp / "bad.db").execute("SELECT count(*), max(x) FROM q").fetchall())


def _sqlite_memory() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE s (x)")
    c.execute("CREATE INDEX ix ON s (x)")
    c.execute("CREATE TABLE nn (x NOT NULL)")
    c.execute("CREATE TABLE ip (id INTEGER PRIMARY KEY)")
    c.execute("CREATE VIEW v AS SELECT 1 AS x")
    return c


def _toobig(c: sqlite3.Connection) -> object:
    c.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100)
    return c.execute("INSERT INTO s VALUES (?)", ("x" * 200,))


def _too_many_variables(c: sqlite3.Connection) -> object:
    c.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 5)
    return c.execute("INSERT INTO s VALUES (?), (?), (?), (?), (?), (?)", (1,) * 6)


SQLITE_ROWS: list[tuple[str, Callable[[Path], BaseException], ErrorClass]] = [
    ("SQLITE_BUSY (5)", _sqlite_busy, TRANSIENT),
    ("SQLITE_LOCKED (6)", _sqlite_locked, TRANSIENT),
    ("SQLITE_READONLY (8)", _sqlite_readonly, ENVIRONMENTAL),
    ("SQLITE_INTERRUPT (9)", _sqlite_interrupt, ENVIRONMENTAL),
    ("SQLITE_CORRUPT (11)", _sqlite_corrupt, ENVIRONMENTAL),
    ("SQLITE_FULL (13)", _sqlite_full, ENVIRONMENTAL),
    (
        "SQLITE_CANTOPEN (14)",
        lambda tmp: raised(lambda: sqlite3.connect(tmp / "no" / "such" / "dir.db")),
        ENVIRONMENTAL,
    ),
    ("SQLITE_NOTADB (26)", _sqlite_notadb, ENVIRONMENTAL),
    ("SQLITE_TOOBIG (18)", lambda _: raised(lambda: _toobig(_sqlite_memory())), RECORD),
    (
        "SQLITE_CONSTRAINT (19)",
        lambda _: raised(lambda: _sqlite_memory().execute("INSERT INTO nn VALUES (NULL)")),
        RECORD,
    ),
    ("SQLITE_MISMATCH (20)", lambda _: raised(lambda: _sqlite_memory().execute("INSERT INTO ip VALUES ('x')")), RECORD),
    (
        "too many columns",
        lambda _: raised(
            lambda: _sqlite_memory().execute(f"CREATE TABLE w ({', '.join(f'c{i}' for i in range(2001))})")
        ),
        ENTITY,
    ),
    (
        "reserved for internal use",
        lambda _: raised(lambda: _sqlite_memory().execute("CREATE TABLE sqlite_stat1 (x)")),
        ENTITY,
    ),
    ("table already exists", lambda _: raised(lambda: _sqlite_memory().execute("CREATE TABLE s (x)")), ENTITY),
    ("there is already an index", lambda _: raised(lambda: _sqlite_memory().execute("CREATE TABLE ix (x)")), ENTITY),
    ("too many SQL variables", lambda _: raised(lambda: _too_many_variables(_sqlite_memory())), ENTITY),
    ("no such table", lambda _: raised(lambda: _sqlite_memory().execute("INSERT INTO gone VALUES (1)")), ENTITY),
    ("has no column named", lambda _: raised(lambda: _sqlite_memory().execute("INSERT INTO s (y) VALUES (1)")), ENTITY),
    ("is a view", lambda _: raised(lambda: _sqlite_memory().execute("INSERT INTO v VALUES (1)")), ENTITY),
    ("any other SQLITE_ERROR", lambda _: raised(lambda: _sqlite_memory().execute("SELECT abs(1, 2)")), RECORD),
]


@pytest.mark.parametrize(("row", "provoke", "expected"), SQLITE_ROWS, ids=[r[0] for r in SQLITE_ROWS])
def test_sqlite_error_classes(
    tmp_path: Path, row: str, provoke: Callable[[Path], BaseException], expected: ErrorClass
) -> None:
    exc = provoke(tmp_path)
    assert isinstance(exc, sqlite3.Error), exc
    assert sqlite_errors.classify(exc) is expected, (row, exc, getattr(exc, "sqlite_errorname", None))


@pytest.mark.parametrize(("code", "name"), [(3, "SQLITE_PERM"), (7, "SQLITE_NOMEM"), (10, "SQLITE_IOERR")])
def test_sqlite_codes_that_cannot_be_provoked_portably_are_environmental(code: int, name: str) -> None:
    """Constructed (not provoked) errors: permission, memory and I/O failures of the host."""
    exc = sqlite3.OperationalError(name.lower())
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    assert sqlite_errors.classify(exc) is ENVIRONMENTAL


# ------------------------------------------------------------------------------- PostgreSQL
def _pg_raise(dsn: str, sqlstate: str) -> BaseException:
    """A real server error with this SQLSTATE (raised by the server from PL/pgSQL)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return raised(
            lambda: conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'provoked' USING ERRCODE = '{sqlstate}'; END $$")
        )


PG_RAISED = sorted(
    pg_errors.TRANSIENT | pg_errors.ENVIRONMENTAL | pg_errors.ENTITY | {"54000", "22001", "23502", "XX000"}
)


def _expected(state: str) -> ErrorClass:
    if state in pg_errors.TRANSIENT:
        return TRANSIENT
    if state in pg_errors.ENVIRONMENTAL:
        return ENVIRONMENTAL
    if state in pg_errors.ENTITY:
        return ENTITY
    return RECORD


def test_postgres_every_sqlstate_of_the_table_is_classified(pg_dsn: str) -> None:
    dest = PostgresDestination(pg_dsn)
    try:
        for state in PG_RAISED:
            exc = _pg_raise(pg_dsn, state)
            assert pg_errors.sqlstate(exc) == state
            assert dest.classify(exc) is _expected(state), (state, type(exc).__name__)
        # Class 54 is never transient (psycopg maps it to OperationalError, which once meant "retry").
        assert isinstance(_pg_raise(pg_dsn, "54011"), psycopg.OperationalError)
        assert dest.classify(_pg_raise(pg_dsn, "54000")) is RECORD
    finally:
        dest.close()


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


def test_postgres_errors_provoked_naturally(pg_dsn: str, pg: psycopg.Connection[tuple[object, ...]]) -> None:
    dest = PostgresDestination(pg_dsn)
    try:
        pg.execute("CREATE TABLE t (id int PRIMARY KEY, name varchar(3) NOT NULL)")
        pg.execute("CREATE VIEW v AS SELECT name FROM t")
        cases: list[tuple[str, Callable[[], object], ErrorClass]] = [
            ("22001 value too long", lambda: pg.execute("INSERT INTO t VALUES (1, 'toolong')"), RECORD),
            ("23502 not null", lambda: pg.execute("INSERT INTO t VALUES (2, NULL)"), RECORD),
            (
                "54011 too many columns",
                lambda: pg.execute(f"CREATE TABLE wide ({', '.join(f'c{i} int' for i in range(1601))})"),
                ENTITY,
            ),
            ("42P07 duplicate table", lambda: pg.execute("CREATE TABLE t (x int)"), ENTITY),
            ("42809 wrong object type", lambda: pg.execute("ALTER TABLE v ADD COLUMN x int"), ENTITY),
            (
                "0A000 type of a column a view uses",
                lambda: pg.execute("ALTER TABLE t ALTER COLUMN name TYPE text"),
                ENTITY,
            ),
            ("25006 read-only transaction", lambda: _read_only_insert(pg_dsn), ENVIRONMENTAL),
            ("57014 statement timeout", lambda: _timeout(pg_dsn), ENVIRONMENTAL),
            ("55P03 lock timeout", lambda: _lock_timeout(pg_dsn), TRANSIENT),
        ]
        for name, action, expected in cases:
            exc = raised(action)
            assert dest.classify(exc) is expected, (name, pg_errors.sqlstate(exc), exc)
    finally:
        dest.close()


def _read_only_insert(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, options="-c default_transaction_read_only=on") as conn:
        conn.execute("INSERT INTO t VALUES (3, 'ro')")


def _timeout(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, options="-c statement_timeout=50") as conn:
        conn.execute("SELECT pg_sleep(2)")


def _lock_timeout(dsn: str) -> None:
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn, options="-c lock_timeout=50") as waiter:
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        waiter.execute("SELECT * FROM t")


# ------------------------------------------------------------------ the engine acts on the class
def test_postgres_too_many_columns_fails_that_entity_and_the_others_commit(pg_dsn: str) -> None:
    """54011 once counted as transient: the batch was retried forever, its valid records hostage."""
    dest = open_destination(pg_dsn)
    try:
        wide_a = {f"a{i}": i for i in range(900)}
        wide_b = {f"b{i}": i for i in range(900)}  # together 1,800 columns: more than 1,600
        bodies = [
            up("account", 1, {"name": "ok"}),
            up("wide", 2, wide_a),
            up("wide", 3, wide_b),
            up("contact", 4, {"n": 1}),
        ]
        result = SyncEngine(dest, backoff_seconds=0).apply_bodies(bodies)
        assert result.conserved
        assert (result.applied, result.failed) == (2, 2)
        assert {f.record_id for f in result.failures} == {rid(2), rid(3)}
        assert all("too many columns" in f.reason or "1600" in f.reason for f in result.failures), result.failures
        assert [r["name"] for r in table_rows(dest, "account")] == ["ok"]
    finally:
        dest.close()


def test_a_record_wider_than_any_table_fails_alone(dsn: str) -> None:
    dest = open_destination(dsn)
    try:
        huge = {f"c{i}": i for i in range(10_000)}
        bodies = [up("account", 1, {"name": "ok"}), up("account", 2, huge), up("account", 3, {"name": "also"})]
        result = SyncEngine(dest, backoff_seconds=0).apply_bodies(bodies)
        assert result.conserved
        assert result.applied == 2
        (failure,) = result.failures
        assert failure.record_id == rid(2)
        assert "10000 attribute columns" in failure.reason
    finally:
        dest.close()


def test_read_only_postgres_parks_the_batch_and_logs_no_failure(pg_dsn: str) -> None:
    """25006 (a standby, or default_transaction_read_only): once bisected into per-record failures."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        database = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    dest = open_destination(pg_dsn)
    try:
        engine = SyncEngine(dest, backoff_seconds=0)
        with pytest.raises(EnvironmentalDestinationError, match="read-only"):
            engine.apply_bodies([up("account", 1, {"name": "a"}), up("contact", 2, {"name": "b"})])
    finally:
        dest.close()


def test_sqlite_full_disk_parks_the_batch_and_logs_no_failure(tmp_path: Path) -> None:
    dest = SqliteDestination(str(tmp_path / "full.db"), Layout())
    try:
        engine = SyncEngine(dest, backoff_seconds=0)
        assert engine.apply_bodies([up("account", 1, {"name": "a"})]).applied == 1
        dest.conn.execute("PRAGMA max_page_count = 1")  # the file may not grow: "database or disk is full"
        pages = dest.conn.execute("PRAGMA page_count").fetchone()[0]
        dest.conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(EnvironmentalDestinationError):
            engine.apply_bodies([up("account", i, {"name": "x" * 5000}) for i in range(2, 60)])
    finally:
        dest.close()


def test_sqlite_lock_contention_is_transient_not_a_record_failure(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    dest = SqliteDestination(str(path), Layout(), busy_timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        engine = SyncEngine(dest, attempts=2, backoff_seconds=0)
        engine.apply_bodies([up("account", 1, {"name": "a"})])
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(TransientDestinationError) as caught:
            engine.apply_bodies([up("account", 2, {"name": "b"})])
        assert not isinstance(caught.value, EnvironmentalDestinationError)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert dest.classify(caught.value.__cause__) is TRANSIENT
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        dest.close()


def delete(entity: str, i: int, version: int) -> str:
    return Change(entity, rid(i), "delete", version, None).body()


def test_sqlite_records_refused_mid_write_fail_alone_and_nothing_of_them_stays(tmp_path: Path) -> None:
    """SQLite writes row by row without a savepoint (isolates_records): a record a trigger refuses,
    in the middle of the write set, fails with SQLite's reason; the rows before and after it apply,
    a refused delete leaves its row and writes no tombstone, and a later batch can still apply it."""
    dest = SqliteDestination(str(tmp_path / "refuse.db"), Layout())
    try:
        engine = SyncEngine(dest, backoff_seconds=0)
        first = engine.apply_bodies([up("account", i, {"name": f"n{i}"}) for i in range(1, 7)])
        assert (first.applied, first.failed) == (6, 0)
        dest.conn.execute(
            "CREATE TRIGGER no_bad BEFORE UPDATE ON account WHEN NEW.name = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'bad names are refused'); END"
        )
        dest.conn.execute(
            f"CREATE TRIGGER keep_five BEFORE DELETE ON account WHEN OLD.\"Id\" = '{rid(5)}' "
            "BEGIN SELECT RAISE(ABORT, 'record five stays'); END"
        )
        result = engine.apply_bodies(
            [
                up("account", 1, {"name": "one"}, 2),
                up("account", 2, {"name": "bad"}, 2),
                up("account", 3, {"name": "three"}, 2),
                up("account", 3, {"name": "old"}, 1),  # stale in the batch
                delete("account", 4, 2),
                delete("account", 5, 2),
                delete("account", 6, 2),
            ]
        )
        assert result.conserved
        assert (result.applied, result.stale, result.failed) == (4, 1, 2)
        reasons = {f.record_id: f.reason for f in result.failures}
        assert set(reasons) == {rid(2), rid(5)}
        assert "sqlite rejected the record" in reasons[rid(2)]
        assert "bad names are refused" in reasons[rid(2)]
        assert "record five stays" in reasons[rid(5)]
        rows = {r["Id"]: r for r in table_rows(dest, "account")}
        assert {k: r["name"] for k, r in rows.items()} == {rid(1): "one", rid(2): "n2", rid(3): "three", rid(5): "n5"}
        assert rows[rid(2)]["versionnumber"] == 1
        stones = dest.conn.execute('SELECT "RecordId", "VersionNumber" FROM "_des_tombstones"').fetchall()
        assert sorted(stones) == sorted([(rid(4), 2), (rid(6), 2)])
        dest.conn.execute("DROP TRIGGER no_bad")
        dest.conn.execute("DROP TRIGGER keep_five")
        again = engine.apply_bodies([up("account", 2, {"name": "bad"}, 2), delete("account", 5, 2)])
        assert (again.applied, again.failed) == (2, 0)
    finally:
        dest.close()
