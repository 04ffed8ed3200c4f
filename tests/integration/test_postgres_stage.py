"""The PostgreSQL write path's staging table, kept per session and shape, on a real PostgreSQL.

The destination stages each write set in a temporary table created once per connection and shape
(``ON COMMIT DELETE ROWS``), not per batch, and copies in binary when every column's type allows.
Checked here against what the database holds: a stage is reused across batches and replaced when
the table widens; a second write through the same stage in one transaction (another entity of the
same shape, a bisected half) sees only its own rows; a stage created in what rolled back (a
savepoint, the transaction, the session) is created again; values round-trip through the binary
and the text path; a value PostgreSQL refuses in the insert fails its record alone.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from shared.destinations import Layout
from shared.destinations.inspect import table_rows
from shared.destinations.postgres import dialect
from shared.destinations.postgres.dialect import PostgresDestination, PostgresTransaction
from shared.destinations.postgres.sqltext import array
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.engine.ports import ErrorClass, TransientDestinationError, WriteSet
from tests.support.model import Change, Lookup, Value

pytestmark = pytest.mark.integration

RIDS = [str(uuid.UUID(int=i, version=4)) for i in range(1, 9)]
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def up(rid: str, version: int, attrs: dict[str, Value], entity: str = "account") -> str:
    return Change(entity, rid, "update", version, attrs).body()


def rm(rid: str, version: int, entity: str = "account") -> str:
    return Change(entity, rid, "delete", version).body()


def stages(dest: PostgresDestination) -> list[str]:
    """The staging tables of the destination's own session (temporary tables are per session)."""
    with dest.conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = pg_my_temp_schema() "
            "AND c.relname LIKE '\\_des\\_stage\\_%' ORDER BY c.relname"
        )
        return [str(r[0]) for r in cur.fetchall()]


def rows(dest: PostgresDestination, table: str = "account") -> dict[str, dict[str, object]]:
    return {str(r["Id"]): r for r in table_rows(dest, table)}


def clean(result: BatchResult) -> BatchResult:
    assert result.conserved, result.counts()
    assert (result.failed, result.unprocessable) == (0, 0), [f.reason for f in result.failures]
    return result


@pytest.fixture
def dest(pg_dsn: str) -> Iterator[PostgresDestination]:
    d = PostgresDestination(pg_dsn, Layout())
    try:
        yield d
    finally:
        d.close()


def test_one_stage_serves_every_batch_of_a_shape_and_a_widened_table_gets_another(dest: PostgresDestination) -> None:
    engine = SyncEngine(dest)
    for v in (1, 2, 3):
        clean(engine.apply_bodies([up(r, v, {"name": f"v{v}", "n": v}) for r in RIDS[:4]]))
    (first,) = stages(dest)
    with dest.conn.cursor() as cur:  # its rows went with each commit
        cur.execute(f'SELECT count(*) FROM "{first}"')
        assert cur.fetchone() == (0,)
    # A new column, then a widening (integer to numeric: that write set is copied as text).
    clean(engine.apply_bodies([up(RIDS[0], 4, {"name": "v4", "n": 4, "city": "Oslo"})]))
    clean(engine.apply_bodies([up(RIDS[1], 4, {"name": "w4", "n": 2**70, "city": None})]))
    assert len(stages(dest)) == 3
    got = rows(dest)
    assert (got[RIDS[0]]["name"], got[RIDS[0]]["n"], got[RIDS[0]]["city"]) == ("v4", 4, "Oslo")
    assert (got[RIDS[1]]["name"], got[RIDS[1]]["n"], got[RIDS[1]]["city"]) == ("w4", 2**70, None)
    assert (got[RIDS[2]]["name"], got[RIDS[2]]["n"], got[RIDS[2]]["versionnumber"]) == ("v3", 3, 3)
    clean(engine.apply_bodies([up(RIDS[2], 5, {"name": "v5", "n": 5, "city": "Bergen"})]))
    assert len(stages(dest)) == 3  # the widened shape's stage again
    assert rows(dest)[RIDS[2]]["city"] == "Bergen"


def test_two_entities_of_one_shape_in_one_batch_each_get_only_their_rows(dest: PostgresDestination) -> None:
    engine = SyncEngine(dest)
    clean(engine.apply_bodies([up(RIDS[0], 1, {"name": "a"}, "account"), up(RIDS[1], 1, {"name": "c"}, "contact")]))
    result = clean(
        engine.apply_bodies(
            [
                up(RIDS[0], 2, {"name": "a2"}, "account"),
                up(RIDS[2], 1, {"name": "a3"}, "account"),
                rm(RIDS[1], 2, "contact"),
                up(RIDS[3], 1, {"name": "c4"}, "contact"),
            ]
        )
    )
    assert result.applied == 4
    assert len(stages(dest)) == 1  # the same shape: one stage, emptied between the two writes
    assert {r: v["name"] for r, v in rows(dest, "account").items()} == {RIDS[0]: "a2", RIDS[2]: "a3"}
    assert {r: v["name"] for r, v in rows(dest, "contact").items()} == {RIDS[3]: "c4"}


def test_a_record_refused_in_the_first_write_of_a_session_fails_alone(pg_dsn: str) -> None:
    """The stage is created in the write's savepoint; the refusal rolls it back; the bisected
    halves create it again and write through it in the same transaction."""
    setup = PostgresDestination(pg_dsn)
    try:
        clean(SyncEngine(setup).apply_bodies([up(r, 1, {"name": "ok"}) for r in RIDS]))
        with setup.conn.cursor() as cur:
            cur.execute("""ALTER TABLE account ADD CONSTRAINT no_bad CHECK (name <> 'bad')""")
    finally:
        setup.close()
    dest = PostgresDestination(pg_dsn)
    try:
        bodies = [up(r, 2, {"name": "bad" if r == RIDS[5] else "fine"}) for r in RIDS]
        result = SyncEngine(dest).apply_bodies(bodies)
        assert (result.applied, result.failed) == (7, 1)
        (failure,) = result.failures
        assert failure.notification.recordId == RIDS[5]
        assert "no_bad" in failure.reason
        got = rows(dest)
        assert {r: v["name"] for r, v in got.items()} == {r: "ok" if r == RIDS[5] else "fine" for r in RIDS}
        clean(SyncEngine(dest).apply_bodies([up(RIDS[5], 3, {"name": "good"})]))
        assert rows(dest)[RIDS[5]]["name"] == "good"
    finally:
        dest.close()


def _write_then_fail(dest: PostgresDestination, ws: WriteSet) -> None:
    with dest.transaction() as tx:
        with tx.savepoint():
            tx.columns(ws.table)
            assert tx.write(ws).upserted == {ws.upserts[0][0]}
        raise RuntimeError("the batch fails after the write")


def test_a_stage_created_in_a_rolled_back_transaction_is_created_again(dest: PostgresDestination) -> None:
    clean(SyncEngine(dest).apply_bodies([up(RIDS[0], 1, {"name": "a"})]))
    before = stages(dest)
    columns = dest.existing_columns("account")
    assert columns is not None
    ws = WriteSet("account", "account", list(columns), [(RIDS[1], 1, "b")], [], NOW)
    narrow = WriteSet("account", "account", [], [(RIDS[2], 1)], [], NOW)  # a shape not seen yet
    with pytest.raises(RuntimeError, match="fails after the write"):
        _write_then_fail(dest, narrow)
    assert stages(dest) == before  # the stage created in what rolled back is gone
    with dest.transaction() as tx:
        with tx.savepoint():
            assert tx.write(narrow).upserted == {RIDS[2]}
        with tx.savepoint():
            assert tx.write(ws).upserted == {RIDS[1]}
    assert {r: v["versionnumber"] for r, v in rows(dest).items()} == {RIDS[0]: 1, RIDS[1]: 1, RIDS[2]: 1}
    assert len(stages(dest)) == 2


def test_stages_are_created_again_after_a_lost_connection(dest: PostgresDestination, pg_dsn: str) -> None:
    engine = SyncEngine(dest, attempts=3, backoff_seconds=0.01)
    clean(engine.apply_bodies([up(r, 1, {"name": "v1"}) for r in RIDS[:3]]))
    old = dest.conn.info.backend_pid
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [old])
    result = clean(engine.apply_bodies([up(r, 2, {"name": "v2"}) for r in RIDS[:3]] + [rm(RIDS[0], 3)]))
    assert (result.applied, result.stale) == (3, 1)  # RIDS[0]'s update lost to its delete in the batch
    assert dest.conn.info.backend_pid != old
    assert len(stages(dest)) == 1
    assert {r: v["name"] for r, v in rows(dest).items()} == {RIDS[1]: "v2", RIDS[2]: "v2"}


def test_values_round_trip_through_the_binary_and_the_text_copy(dest: PostgresDestination) -> None:
    attrs: dict[str, Value] = {
        "name": "Ünïcode \\ tab\there, newline\nand \"quotes\" 注文",
        "flag": True,
        "count": -(2**63),
        "ratio": 0.1,
        "owner": Lookup(RIDS[7].upper(), "systemuser"),
        "empty": "",
    }
    engine = SyncEngine(dest)
    clean(engine.apply_bodies([up(RIDS[0], 1, attrs)]))
    # The same shape plus a decimal: numeric has no binary form here, so that write set goes as text.
    clean(engine.apply_bodies([up(RIDS[1], 1, {**attrs, "amount": 12.5}), up(RIDS[2], 1, {**attrs, "amount": None})]))
    assert len(stages(dest)) == 2
    got = rows(dest)
    for rid in RIDS[:3]:
        row = got[rid]
        assert row["name"] == attrs["name"]
        assert (row["flag"], row["count"], row["ratio"], row["empty"]) == (True, -(2**63), 0.1, "")
        assert str(row["owner"]) == RIDS[7]
        assert row["owner_entitytype"] == "systemuser"
    assert got[RIDS[1]]["amount"] == Decimal("12.5")
    assert got[RIDS[2]]["amount"] is None


@pytest.mark.parametrize("numeric", [False, True], ids=["binary", "text"])
def test_every_column_type_round_trips_through_the_write(dest: PostgresDestination, numeric: bool) -> None:
    """The destination alone, with values as the engine binds them (an aware UTC datetime, a
    lower-case GUID string); a numeric column sends the whole write set through the text COPY."""
    wanted = {
        "when": coltypes.DATETIME,
        "ref": coltypes.GUID,
        "flag": coltypes.BOOLEAN,
        "n": coltypes.INTEGER,
        "x": coltypes.FLOAT,
        "code": ColumnType(Kind.TEXT, 10),
        **({"amount": coltypes.DECIMAL} if numeric else {}),
    }
    columns = dest.ensure_table("account", wanted)
    names = list(columns)
    when = datetime(2026, 11, 21, 8, 0, 0, 123456, tzinfo=UTC)
    value = {"when": when, "ref": RIDS[6], "flag": False, "n": 2**53 + 1, "x": 1e-300, "code": "é" * 10}
    if numeric:
        value["amount"] = Decimal("1234567890.0123456789")
    row = (RIDS[0], 5, *(value[c] for c in names))
    with dest.transaction() as tx, tx.savepoint():
        assert tx.write(WriteSet("account", "account", names, [row], [(RIDS[1], 2)], NOW)).upserted == {RIDS[0]}
    (stage,) = stages(dest)
    with dest.conn.cursor() as cur:  # binary: the uuid is staged as text; text: as the column's type
        cur.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
                    "AND attname = 'ref'", [f"pg_temp.{stage}"])
        assert cur.fetchone() == ("uuid" if numeric else "text",)
    (got,) = rows(dest).values()
    assert {c: got[c] for c in names} == {**value, "ref": uuid.UUID(RIDS[6])}
    assert (got["versionnumber"], got["SinkCreatedOn"], got["SinkModifiedOn"]) == (5, NOW, NOW)


def test_an_integer_column_narrower_than_the_value_fails_that_record_alone(pg_dsn: str) -> None:
    """Binary COPY stages integers as bigint; the insert into an ``integer`` column refuses one out
    of its range, as a text COPY into an integer stage did: that record fails, with the reason."""
    setup = PostgresDestination(pg_dsn)
    try:
        clean(SyncEngine(setup).apply_bodies([up(r, 1, {"n": 1}) for r in RIDS[:3]]))
        with setup.conn.cursor() as cur:
            cur.execute("ALTER TABLE account ALTER COLUMN n TYPE integer")
    finally:
        setup.close()
    dest = PostgresDestination(pg_dsn)
    try:
        result = SyncEngine(dest).apply_bodies([up(RIDS[0], 2, {"n": 2**40}), up(RIDS[1], 2, {"n": 7})])
        assert (result.applied, result.failed) == (1, 1)
        assert "out of range" in result.failures[0].reason
        assert {r: v["n"] for r, v in rows(dest).items()} == {RIDS[0]: 1, RIDS[1]: 7, RIDS[2]: 1}
    finally:
        dest.close()


def test_stages_of_shapes_no_longer_written_are_dropped_beyond_the_limit(
    dest: PostgresDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table that keeps gaining columns makes a new shape each time: the oldest stages go."""
    monkeypatch.setattr(dialect, "MAX_STAGES", 3)
    engine = SyncEngine(dest)
    attrs: dict[str, Value] = {}
    for v in range(1, 7):
        attrs[f"c{v}"] = v
        clean(engine.apply_bodies([up(RIDS[0], v, attrs), up(RIDS[v], 1, {"c1": -v})]))
        assert len(stages(dest)) == min(v, 3)
    got = rows(dest)
    assert {c: got[RIDS[0]][c] for c in attrs} == attrs
    assert [got[r]["c1"] for r in RIDS[1:7]] == [-1, -2, -3, -4, -5, -6]


def test_a_stage_dropped_behind_our_back_is_created_again_in_the_write(dest: PostgresDestination) -> None:
    """``DISCARD TEMP`` (what a pooler's session reset runs), or a transaction-mode pooler handing the
    next transaction another server session: the stage the connection remembers is not there. The
    write creates it again in its own transaction; a stage of the same name is always of its shape."""
    engine = SyncEngine(dest)
    clean(engine.apply_bodies([up(r, 1, {"name": "v1"}) for r in RIDS[:2]]))
    [name] = stages(dest)
    assert name == dialect.stage_name(next(iter(dest.stages)))
    dest.conn.execute("DISCARD TEMP")
    assert stages(dest) == []
    result = clean(engine.apply_bodies([up(r, 2, {"name": "v2"}) for r in RIDS[:2]] + [rm(RIDS[2], 1)]))
    assert (result.applied, result.stale) == (3, 0)
    assert stages(dest) == [name]
    assert {r: v["name"] for r, v in rows(dest).items()} == {RIDS[0]: "v2", RIDS[1]: "v2"}


def test_deletes_remove_rows_and_write_tombstones_and_the_log_in_one_statement(pg_dsn: str) -> None:
    """The applied deletes of a write set: rows removed, tombstones written (a newer one kept), the
    delete log written for the deletes that took effect only, by one statement."""
    dest = PostgresDestination(pg_dsn, Layout(write_delete_log=True))
    try:
        engine = SyncEngine(dest)
        clean(engine.apply_bodies([up(r, 1, {"name": "v1"}) for r in RIDS[:4]]))
        clean(engine.apply_bodies([rm(RIDS[3], 9)]))
        # RIDS[0] and [1] deleted; [2] deleted by a stale delete (its row is newer); [3] deleted again
        # by an older delete (its tombstone is newer); [4] deleted though never seen.
        clean(engine.apply_bodies([up(RIDS[2], 5, {"name": "v5"})]))
        result = clean(
            engine.apply_bodies([rm(RIDS[0], 2), rm(RIDS[1], 3), rm(RIDS[2], 4), rm(RIDS[3], 8), rm(RIDS[4], 2)])
        )
        assert (result.applied, result.stale) == (3, 2)
        assert {r: v["name"] for r, v in rows(dest).items()} == {RIDS[2]: "v5"}
        stones = {str(r["RecordId"]): r["VersionNumber"] for r in table_rows(dest, "_des_tombstones")}
        assert stones == {RIDS[0]: 2, RIDS[1]: 3, RIDS[3]: 9, RIDS[4]: 2}
        logged = sorted((str(r["RecordId"]), r["VersionNumber"]) for r in table_rows(dest, "DeleteLog"))
        assert logged == sorted([(RIDS[3], 9), (RIDS[0], 2), (RIDS[1], 3), (RIDS[4], 2)])
    finally:
        dest.close()


def test_rows_updated_at_the_instant_they_were_created_are_kept(dest: PostgresDestination) -> None:
    """The upsert tells the rows it inserted (checked against the tombstones afterwards) from those
    it updated, whatever their creation time: writes of one instant (one ``now``) create a row and
    update it twice."""
    clean(SyncEngine(dest).apply_bodies([up(RIDS[0], 1, {"name": "a"})]))
    columns = dest.existing_columns("account")
    assert columns is not None
    for version, rid in ((1, RIDS[1]), (2, RIDS[1]), (3, RIDS[1])):
        ws = WriteSet("account", "account", list(columns), [(rid, version, f"v{version}")], [], NOW)
        with dest.transaction() as tx, tx.savepoint():
            assert tx.write(ws).upserted == {rid}
    assert {r: v["name"] for r, v in rows(dest).items()} == {RIDS[0]: "a", RIDS[1]: "v3"}
    assert rows(dest)[RIDS[1]]["SinkCreatedOn"] == NOW


def test_array_literals_arrive_as_the_values(dest: PostgresDestination) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with dest.conn.cursor() as cur:
        cur.execute("SELECT %s::uuid[], %s::bigint[], %s::uuid[]", [array(ids), array([1, -2, 2**62]), array([])])
        assert cur.fetchone() == ([uuid.UUID(i) for i in ids], [1, -2, 2**62], [])


# ------------------------------------------------------------------ round trips and control statements
def _traced(dest: PostgresDestination, path: Path) -> Iterator[None]:
    """libpq's protocol trace of the destination's connection into ``path`` (what crossed the wire)."""
    with path.open("wb") as fh:
        dest.conn.pgconn.trace(fh.fileno())
        dest.conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        try:
            yield
        finally:
            dest.conn.pgconn.untrace()


traced = contextmanager(_traced)


def _round_trips(path: Path) -> list[str]:
    """One entry per round trip the client started, in order: a simple query (named by its first
    word) or an extended-protocol exchange ended by Sync (named by its statement's first word, or
    "prepared" when it ran a statement prepared earlier). COPY data is not a round trip."""
    trips: list[str] = []
    statement = "prepared"
    for line in path.read_text().splitlines():
        direction, _, message, *rest = [*line.split("\t"), "", "", ""]
        if direction != "F":  # the server's messages, and the lines of a query's text
            continue
        if message == "Query":
            trips.append(rest[0].strip().strip('"').split(" ")[0])
        elif message == "Parse":
            statement = rest[0].split('"')[3].split(" ")[0]
        elif message == "Sync":
            trips.append(statement)
            statement = "prepared"
    return trips


def test_a_batch_of_one_entity_takes_eight_round_trips(dest: PostgresDestination, tmp_path: Path) -> None:
    """BEGIN, SAVEPOINT and RELEASE go with the next statement without parameters: a batch of one
    entity with upserts, a new record and deletes is the lock, the catalog read, the stage, the
    COPY, the upsert, the deletes, the tombstone check of the created rows, the COMMIT (12 before)."""
    engine = SyncEngine(dest)
    for v in (1, 2, 3, 4, 5, 6):  # the stage exists; psycopg has prepared the statements used 5 times
        clean(engine.apply_bodies([up(r, v, {"name": f"v{v}"}) for r in RIDS[:4]]))
    trace = tmp_path / "trace"
    with traced(dest, trace):
        result = clean(
            engine.apply_bodies([up(RIDS[0], 7, {"name": "v7"}), up(RIDS[5], 1, {"name": "new"}), rm(RIDS[1], 7)])
        )
    assert (result.applied, result.stale) == (3, 0)
    trips = _round_trips(trace)
    expected = ["BEGIN;", "SELECT", "SAVEPOINT", "COPY", "INSERT", "WITH", "DELETE", "COMMIT"]
    assert len(trips) == len(expected), trips
    assert all(t in (e, "prepared") for t, e in zip(trips, expected, strict=True)), trips
    assert {r: v["name"] for r, v in rows(dest).items()} == {
        RIDS[0]: "v7",
        RIDS[2]: "v6",
        RIDS[3]: "v6",
        RIDS[5]: "new",
    }


def test_a_savepoint_scope_that_sends_nothing_sends_no_savepoint(dest: PostgresDestination, tmp_path: Path) -> None:
    clean(SyncEngine(dest).apply_bodies([up(RIDS[0], 1, {"name": "a"})]))  # the support tables exist

    def fail_before_any_statement(tx: PostgresTransaction) -> None:
        with tx.savepoint():
            raise RuntimeError("before any statement")

    trace = tmp_path / "trace"
    with traced(dest, trace), dest.transaction() as tx:
        with tx.savepoint():
            pass
        with pytest.raises(RuntimeError, match="before any statement"):
            fail_before_any_statement(tx)
        assert dest.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert _round_trips(trace) == []  # no BEGIN either: nothing to commit


def test_a_failed_scope_is_rolled_back_to_its_savepoint_and_the_transaction_goes_on(dest: PostgresDestination) -> None:
    clean(SyncEngine(dest).apply_bodies([up(RIDS[0], 1, {"name": "a"})]))
    columns = dest.existing_columns("account")
    assert columns is not None

    def write_then_fail(tx: PostgresTransaction) -> None:
        with tx.savepoint():
            tx.write(WriteSet("account", "account", list(columns), [(RIDS[1], 1, "b")], [], NOW))
            dest.conn.execute("SELECT no_such_column FROM account")

    def nested(tx: PostgresTransaction) -> None:
        with tx.savepoint(), tx.savepoint():
            pass

    with dest.transaction() as tx:
        tx.columns("account")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            write_then_fail(tx)
        assert dest.conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with tx.savepoint():
            assert tx.write(WriteSet("account", "account", list(columns), [(RIDS[2], 1, "c")], [], NOW)).upserted
        with pytest.raises(RuntimeError, match="does not nest"):
            nested(tx)
    assert {r: v["name"] for r, v in rows(dest).items()} == {RIDS[0]: "a", RIDS[2]: "c"}


def test_a_savepoint_that_cannot_be_rolled_back_to_fails_the_batch_as_transient(
    dest: PostgresDestination, pg_dsn: str
) -> None:
    """The connection went while the scope failed: the transaction cannot go on, so the error is
    transient (the batch is retried), never a record's failure for each half of a bisection."""
    clean(SyncEngine(dest).apply_bodies([up(RIDS[0], 1, {"name": "a"})]))

    def lose_the_connection_then_fail() -> None:
        with dest.transaction() as tx, tx.savepoint():
            tx.columns("account")
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [dest.conn.info.backend_pid])
            raise ValueError("a record's error")

    with pytest.raises(TransientDestinationError, match="savepoint") as raised:
        lose_the_connection_then_fail()
    assert isinstance(raised.value.__cause__, ValueError)
    assert dest.classify(raised.value) is ErrorClass.TRANSIENT


def test_a_transaction_left_in_error_does_not_pass_for_committed(dest: PostgresDestination) -> None:
    clean(SyncEngine(dest).apply_bodies([up(RIDS[0], 1, {"name": "a"})]))

    def swallow_an_error() -> None:
        with dest.transaction() as tx:
            tx.columns("account")
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                dest.conn.execute("SELECT 1 / 0")

    with pytest.raises(TransientDestinationError, match="ROLLBACK, not COMMIT"):
        swallow_an_error()
    assert dest.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_stale_upsert_of_a_deleted_record_is_stale_and_leaves_no_row(dest: PostgresDestination) -> None:
    """The upsert reads no tombstone: it creates the row, and the check of the rows it created
    removes it again (a tombstone at least as new: an older version, or the delete's own version)."""
    engine = SyncEngine(dest)
    clean(engine.apply_bodies([up(r, 1, {"name": "v1"}) for r in RIDS[:3]]))
    clean(engine.apply_bodies([rm(RIDS[0], 5), rm(RIDS[1], 5), rm(RIDS[4], 5)]))
    result = clean(
        engine.apply_bodies(
            [
                up(RIDS[0], 4, {"name": "older"}),
                up(RIDS[1], 5, {"name": "same version"}),  # a delete wins a tie
                up(RIDS[4], 3, {"name": "never seen, deleted"}),
                up(RIDS[2], 2, {"name": "v2"}),
                up(RIDS[5], 1, {"name": "new"}),
            ]
        )
    )
    assert (result.applied, result.stale) == (2, 3)
    assert {r: v["name"] for r, v in rows(dest).items()} == {RIDS[2]: "v2", RIDS[5]: "new"}
    stones = {str(r["RecordId"]): r["VersionNumber"] for r in table_rows(dest, "_des_tombstones")}
    assert stones == {RIDS[0]: 5, RIDS[1]: 5, RIDS[4]: 5}
    # Created again with a newer version: kept.
    assert clean(engine.apply_bodies([up(RIDS[0], 6, {"name": "v6"})])).applied == 1
    assert rows(dest)[RIDS[0]]["name"] == "v6"
