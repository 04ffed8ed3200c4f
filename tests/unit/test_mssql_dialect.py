"""The SQL Server dialect without a server: its T-SQL text and parameters, identifiers, types,
value checks, transient-error classification, DSNs and Entra token packing.

SQL Server cannot run here, so behaviour is proven by tests/gated/test_mssql_live.py wherever
``DES_TEST_MSSQL`` is set. What this module proves:

* every statement the dialect sends while the real engine runs each shared scenario
  (tests/support/scenarios.py) parses as T-SQL with sqlglot (dialect ``tsql``), without falling
  back to an unparsed ``Command``; its ``?`` markers match the parameters bound (per row for
  ``executemany``); every user-supplied name in it is bracket-quoted; no attribute value ever
  appears in SQL text. ``SAVE TRANSACTION`` (which sqlglot 30 has no grammar for) is matched
  exactly against the one form the dialect produces. The statements are captured through
  :class:`RecordingConnection`, a **test double** that executes nothing: it answers the catalog
  queries from the DDL it was sent (parsed by sqlglot) so that the dialect can proceed, and the
  tests here draw no conclusion about behaviour from its answers;
* the bulk path's chunks stay within the row and byte bounds, with pyodbc input sizes per type;
* transient classification on real ``pyodbc.Error`` instances (one raised by the FreeTDS driver).
"""

from __future__ import annotations

import decimal
import json
import re
import struct
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyodbc  # type: ignore[import-not-found]
import pytest
import sqlglot
import yaml  # type: ignore[import-untyped]
from azure.core.credentials import AccessToken
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from shared.destinations import ConnectionFailed, Layout, UnsupportedDestination, open_destination, redact
from shared.destinations.mssql import connect, errors
from shared.destinations.mssql.dialect import (
    CHUNK_MAX_BYTES,
    CHUNK_MAX_ROWS,
    DDL_LOCK_TIMEOUT_MS,
    SQL_BIGINT,
    SQL_BIT,
    SQL_GUID,
    SQL_NUMERIC,
    SQL_WVARCHAR,
    InvalidIdentifier,
    MssqlDestination,
    TSql,
    bound_bytes,
    chunk_rows,
    column_type,
    quote,
    sql_type,
    stage_plan,
    to_decimal,
)
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.engine import SyncEngine
from shared.engine.ports import EntityRefused, EnvironmentalDestinationError, ErrorClass, WriteSet
from tests.support.postgres import fresh_database
from tests.support.scenarios import HOSTILE_TEXTS, SCENARIOS, Scenario, rm, run, up

pytestmark = pytest.mark.unit

SAVE_RE = re.compile(r"^SAVE TRANSACTION des_sp_\d+$")


# ---------------------------------------------------------------------------- the test double
@dataclass
class Sent:
    sql: str
    params: tuple[Any, ...] = ()
    rows: list[tuple[Any, ...]] | None = None  # executemany: every row bound
    sizes: list[tuple[int, int, int]] | None = None
    fast: bool = False


@dataclass
class ServerState:
    """What the test double remembers: statements sent, a catalog built from the DDL, the stage."""

    sent: list[Sent] = field(default_factory=list)
    schemas: set[str] = field(default_factory=lambda: {"dbo"})
    tables: dict[tuple[str, str], dict[str, tuple[str, int, int, int]]] = field(default_factory=dict)
    primary_keys: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    unwritable: set[tuple[str, str, str]] = field(default_factory=set)  # computed, identity, rowversion
    registry: set[tuple[str, str]] = field(default_factory=set)  # (table, column): the columns registry's rows
    stage: list[tuple[Any, ...]] = field(default_factory=list)
    fail_on: re.Pattern[str] | None = None  # raise a (non-transient) driver error for matching SQL
    fail_with: pyodbc.Error | None = None  # ... this one instead of the default (8115)
    xact_state: int = 1
    bind_precision: list[int] = field(default_factory=list)  # the decimal context's precision per executemany
    connects: int = 0


def _type_row(dtype: exp.DataType) -> tuple[str, int, int, int]:
    """(type name, max_length, precision, scale) as sys.columns / sys.types would show a column."""
    text = dtype.sql("tsql").upper()
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", text)
    assert m, text
    name, args = m.group(1).lower(), m.group(2)
    if name == "nvarchar":
        return ("nvarchar", -1 if args == "MAX" else 2 * int(args), 0, 0)
    if name in ("numeric", "decimal"):
        p, s = (int(x) for x in args.split(","))
        return ("decimal", 17, p, s)
    fixed = {
        "float": ("float", 8, 53, 0),
        "datetime2": ("datetime2", 8, 27, 7),
        "uniqueidentifier": ("uniqueidentifier", 16, 0, 0),
        "bit": ("bit", 1, 1, 0),
        "bigint": ("bigint", 8, 19, 0),
        # an existing DES database's types (test_an_adopted_des_table_keeps_its_column_types)
        "int": ("int", 4, 10, 0),
        "integer": ("int", 4, 10, 0),
        "smallint": ("smallint", 2, 5, 0),
        "datetime": ("datetime", 8, 23, 3),
        "money": ("money", 8, 19, 4),
    }
    assert name in fixed, f"the dialect declared a type it does not document: {text}"
    return fixed[name]


def _table_key(name: str) -> tuple[str, str]:
    t = exp.to_table(name, dialect="tsql")
    return (t.db, t.name)


class RecordingCursor:
    """Test double of a pyodbc cursor: records statements, executes nothing (see module docstring)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.fast_executemany = False
        self.sizes: list[tuple[int, int, int]] | None = None
        self._result: list[tuple[Any, ...]] = []
        self.description: list[tuple[str, ...]] = []

    def setinputsizes(self, sizes: list[tuple[int, int, int]] | None) -> None:
        self.sizes = sizes

    def execute(self, sql: str, *params: Any) -> RecordingCursor:
        self.state.sent.append(Sent(sql, tuple(params), sizes=self.sizes))
        if self.state.fail_on is not None and self.state.fail_on.search(sql):
            if self.state.fail_with is not None:
                raise self.state.fail_with
            raise pyodbc.ProgrammingError(
                "42000", "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]scripted failure (8115) "
                "(SQLExecDirectW)"
            )
        self._result = self._answer(sql, params)
        return self

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.state.sent.append(Sent(sql, (), list(rows), self.sizes, self.fast_executemany))
        self.state.bind_precision.append(decimal.getcontext().prec)
        if "[#des_stage]" in sql:
            self.state.stage.extend(rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._result[0] if self._result else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._result)

    def nextset(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def _answer(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        s = self.state
        if sql == TSql.TRANCOUNT:
            return [(1,)]
        if sql == TSql.XACT_STATE:
            return [(s.xact_state,)]
        if "sp_getapplock" in sql:
            return [(0,)]
        if sql == TSql.SCHEMA_ID:
            return [(1 if params[0] in s.schemas else None,)]
        if sql == TSql.OBJECT_ID:
            return [(1 if _table_key(params[0]) in s.tables else None,)]
        if sql == TSql.PRIMARY_KEY:
            return [(c,) for c in s.primary_keys.get(_table_key(params[0]), [])]
        if sql == TSql.COLUMNS:
            key = _table_key(params[0])
            cols = s.tables.get(key, {})
            return [(name, *row, (*key, name) not in s.unwritable) for name, row in cols.items()]
        if sql.startswith("SELECT * FROM"):
            return []
        if sql.startswith("INSERT INTO") and "_des_columns] ([TableName], [ColumnName])" in sql:
            s.registry.update(zip(params[0::2], params[1::2], strict=True))
            return []
        if sql.startswith("SELECT [ColumnName] FROM"):
            return [(c,) for t, c in sorted(s.registry) if t == params[0]]
        if sql.startswith(("SAVE ", "ROLLBACK", "BEGIN", "COMMIT", "SET ", "DELETE ", "INSERT ", "DROP ")):
            return []
        if " UNION ALL " in sql or sql.endswith("DROP TABLE [#des_stage];"):  # the batch after staging
            rows: list[tuple[Any, ...]] = []
            if "[#des_applied]" in sql:
                rows += [(r[0], False) for r in s.stage if not r[2]]  # the staged upserts' ids
            if "[#des_gone]" in sql:
                rows += [(r[0], True) for r in s.stage if r[2]]  # the staged deletes' ids
            return rows
        tree = sqlglot.parse_one(sql, read="tsql")
        if isinstance(tree, exp.Create):
            self._create(tree)
        elif isinstance(tree, exp.Alter):
            self._alter(tree)
        elif isinstance(tree, exp.Merge) and "[#des_gone]" not in sql:
            return [(r[0],) for r in s.stage if not r[2]]  # the staged upserts' ids
        elif isinstance(tree, exp.Select) and "[#des_gone]" in sql:
            return [(r[0],) for r in s.stage if r[2]]  # the staged deletes' ids
        return []

    def _create(self, tree: exp.Create) -> None:
        s = self.state
        if tree.args.get("kind") == "SCHEMA":
            s.schemas.add(tree.this.db)
            return
        table = tree.this.this
        if table.name.startswith("des_stage") or table.name.startswith("des_gone"):
            if table.name.startswith("des_stage"):
                s.stage = []
            return
        defs = [c for c in tree.this.expressions if isinstance(c, exp.ColumnDef)]
        s.tables[(table.db, table.name)] = {c.name: _type_row(c.args["kind"]) for c in defs}
        s.primary_keys[(table.db, table.name)] = [c.name for c in defs if c.find(exp.PrimaryKeyColumnConstraint)]

    def _alter(self, tree: exp.Alter) -> None:
        cols = self.state.tables[(tree.this.db, tree.this.name)]
        for action in tree.args["actions"]:
            if isinstance(action, exp.ColumnDef):
                assert action.name not in cols, f"column {action.name} added twice"
                cols[action.name] = _type_row(action.args["kind"])
            elif isinstance(action, exp.AlterColumn):
                cols[action.name] = _type_row(action.args["dtype"])


class RecordingConnection:
    """Test double of a pyodbc connection; its cursors record into one :class:`ServerState`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        state.connects += 1

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self.state)

    def close(self) -> None:
        pass


def recording_destination(layout: Layout, state: ServerState | None = None) -> tuple[MssqlDestination, ServerState]:
    st = state or ServerState()
    return MssqlDestination(lambda: RecordingConnection(st), layout, name="recording test double"), st


# ------------------------------------------------------------------------------- verification
def verify(sent: Sent, user_names: set[str]) -> int:
    """Parse one sent batch as T-SQL and check markers, quoting; return how many statements it held."""
    if sent.sql.startswith("SAVE "):
        assert SAVE_RE.match(sent.sql), sent.sql
        assert not sent.params
        return 1
    trees = sqlglot.parse(sent.sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert trees, sent.sql
    assert all(t is not None for t in trees), sent.sql
    for tree in trees:
        assert tree is not None
        unparsed = [n for n in tree.walk() if isinstance(n, exp.Command)]
        assert not unparsed, f"sqlglot could not parse (fell back to Command): {sent.sql}"
        for ident in tree.find_all(exp.Identifier):
            if ident.name in user_names:
                assert ident.quoted, f"{ident.name!r} not quoted in {sent.sql}"
    markers = sum(len(list(t.find_all(exp.Placeholder))) for t in trees if t is not None)
    if sent.rows is not None:
        assert sent.fast, "executemany without fast_executemany"
        assert sent.sizes is not None, sent.sql
        assert len(sent.sizes) == markers, sent.sql
        assert all(len(r) == markers for r in sent.rows), sent.sql
        assert 1 <= len(sent.rows) <= CHUNK_MAX_ROWS
        assert len(sent.rows) * sum(bound_bytes(z) for z in sent.sizes) <= max(
            CHUNK_MAX_BYTES, sum(bound_bytes(z) for z in sent.sizes)
        )
    else:
        assert len(sent.params) == markers, f"{markers} markers, {len(sent.params)} parameters: {sent.sql}"
        assert sent.sizes is None, f"input sizes of a bulk insert left on the cursor for: {sent.sql}"
    return len(trees)


def _names_and_values(scenario: Scenario, layout: Layout) -> tuple[set[str], set[str]]:
    names = {layout.tombstone_table}
    if layout.schema:
        names.add(layout.schema)
    if layout.write_delete_log:
        names.add(layout.delete_log_table)
    values: set[str] = set()
    for batch in scenario.batches:
        for c in batch:
            names.add(layout.entity_table(c.entity))
            for k, v in (c.attributes or {}).items():
                names.add(k)
                if isinstance(v, str) and len(v) >= 5:
                    values.add(v)
    return names, values


PARSE_COUNTS: dict[str, int] = {}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_statement_of_the_scenario_parses_as_tsql(scenario: Scenario) -> None:
    layout = scenario.layout("mssql")
    dest, state = recording_destination(layout)
    results = run(scenario, dest)
    assert all(r.conserved for r in results)
    names, values = _names_and_values(scenario, layout)
    statements = sum(verify(s, names) for s in state.sent)
    bound = [v for s in state.sent for row in ([s.params] if s.rows is None else s.rows) for v in row]
    for s in state.sent:
        leaked = [v for v in values if v in s.sql]
        assert not leaked, f"attribute values spliced into SQL text: {leaked}"
    assert any(isinstance(v, uuid.UUID) for v in bound)
    staged_text = {v for v in bound if isinstance(v, str)}
    assert {v for v in values if v in HOSTILE_TEXTS} <= staged_text  # the hostile values went as parameters
    kinds = {type(exp_).__name__ for s in state.sent if not s.sql.startswith("SAVE ")
             for exp_ in sqlglot.parse(s.sql, read="tsql")}
    assert {"Merge", "Create"} <= kinds
    PARSE_COUNTS[scenario.name] = statements
    print(f"\nT-SQL statements parsed for scenario {scenario.name}: {statements} (in {len(state.sent)} round trips)")


def test_statement_shapes_of_an_upsert_with_deletes_and_delete_log() -> None:
    layout = Layout("des", "crm", write_delete_log=True)
    dest, state = recording_destination(layout)
    dest.ensure_table("crm_account", {"name": coltypes.TEXT, "amount": coltypes.DECIMAL, "ref": coltypes.GUID})
    state.sent.clear()
    now = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
    ids = [str(uuid.UUID(int=i)) for i in range(1, 4)]
    ws = WriteSet(
        "account", "crm_account", ["amount", "name", "ref"],
        [(ids[0], 5, 0.1, "x", ids[2]), (ids[1], 6, 7, None, None)], [(ids[2], 9)], now,
    )
    with dest.transaction() as tx, tx.savepoint():
        applied = tx.write(ws)
    assert applied.upserted == {ids[0], ids[1]}
    assert applied.deleted == {ids[2]}
    sqls = [s.sql for s in state.sent]
    assert sqls[0] == "BEGIN TRANSACTION"
    assert sqls[-1] == "COMMIT TRANSACTION"
    assert any(s.startswith("SAVE TRANSACTION des_sp_0") for s in sqls)
    lock = next(s for s in state.sent if "sp_getapplock" in s.sql)
    assert lock.params == ("des:des.crm_account", 60000)
    # After staging, one batch: MERGE ... OUTPUT INTO #des_applied, the deletes, tombstones and
    # delete log, one result set, the drops.
    stage_at = max(i for i, x in enumerate(state.sent) if x.rows is not None)
    after = state.sent[stage_at + 1 :]
    assert [x.sql for x in after][1:] == ["COMMIT TRANSACTION"]  # (the savepoint is released by COMMIT)
    batch = after[0]
    at = now.replace(tzinfo=None)
    assert batch.params == ("account", at, at, at, "account", at, at, "account", at)
    statements = [t for t in sqlglot.parse(batch.sql, read="tsql") if t is not None]
    assert [type(t).__name__ for t in statements] == [
        "Create", "Merge", "Create", "Delete", "Merge", "Insert", "Union", "Drop", "Drop", "Drop",
    ]
    merge, tomb = (t.sql("tsql") for t in statements if isinstance(t, exp.Merge))
    assert "[des].[crm_account] WITH (HOLDLOCK)" in merge  # the entity's own table keeps its key-range locks
    assert tomb.startswith("MERGE INTO [des].[crm__des_tombstones] AS d")  # shared by all entities: no range locks
    assert "[crm__des_tombstones] AS d WHERE" in batch.sql  # nor in the upsert's tombstone check
    assert "OUTPUT inserted.[Id] INTO [#des_applied] ([Id])" in batch.sql
    assert "INTO [#des_gone] ([RecordId], [VersionNumber])" in batch.sql
    assert "INSERT INTO [des].[crm_DeleteLog]" in batch.sql
    assert state.bind_precision == [38]  # decimals bound under a 38-digit context
    staged = next(s for s in state.sent if s.rows is not None)
    assert staged.sizes == [
        (SQL_GUID, 16, 0), (SQL_BIGINT, 19, 0), (SQL_BIT, 1, 0),
        (SQL_NUMERIC, 38, 18), (SQL_WVARCHAR, 1, 0), (SQL_GUID, 16, 0),
    ]
    assert staged.rows == [
        (uuid.UUID(ids[0]), 5, False, Decimal("0.1"), "x", uuid.UUID(ids[2])),
        (uuid.UUID(ids[1]), 6, False, Decimal(7), None, None),
        (uuid.UUID(ids[2]), 9, True, None, None, None),
    ]
    for s in state.sent:
        verify(s, {"des", "crm_account", "crm__des_tombstones", "crm_DeleteLog", "name", "amount", "ref"})


def test_delete_only_write_stages_no_attribute_columns_and_skips_the_merge() -> None:
    dest, state = recording_destination(Layout())
    dest.ensure_table("contact", {"fullname": coltypes.TEXT})
    state.sent.clear()
    rid = str(uuid.uuid4())
    with dest.transaction() as tx:
        tx.write(WriteSet("contact", "contact", ["fullname"], [], [(rid, 3)], datetime.now(UTC)))
    (batch,) = [s.sql for s in state.sent if s.sql.endswith("DROP TABLE [#des_stage];")]
    assert "MERGE [dbo].[contact]" not in batch
    assert "[#des_applied]" not in batch
    assert "DELETE t FROM [dbo].[contact] AS t WITH (HOLDLOCK)" in batch
    assert "[DeleteLog]" not in batch  # delete log off
    staged = next(s for s in state.sent if s.rows is not None)
    assert staged.rows == [(uuid.UUID(rid), 3, True)]


def test_a_rejected_write_rolls_back_to_its_savepoint_and_the_engine_isolates_the_record() -> None:
    """The SQL sent on the error path (SAVE, XACT_STATE, ROLLBACK TRANSACTION <savepoint>)."""
    dest, state = recording_destination(Layout())
    state.fail_on = re.compile(r"MERGE \[dbo\]\.\[account\]")
    result = SyncEngine(dest, backoff_seconds=0).apply_notifications([])  # warm nothing
    assert result.received == 0
    from shared.contract.parse import parse_bodies

    parsed = parse_bodies([up("account", 1, 1, name="a").body(), up("account", 2, 1, name="b").body()])
    result = SyncEngine(dest, backoff_seconds=0).apply_parsed(parsed)
    assert result.failed == 2
    assert result.conserved
    assert all("scripted failure" in f.reason for f in result.failures)
    sqls = [s.sql for s in state.sent]
    for n in range(3):  # the pair, then each half alone
        i = sqls.index(f"SAVE TRANSACTION des_sp_{n}")
        j = sqls.index(f"ROLLBACK TRANSACTION des_sp_{n}")
        assert i < j
        assert TSql.XACT_STATE in sqls[i:j]
    assert sqls[-1] == "COMMIT TRANSACTION"
    for s in state.sent:
        verify(s, {"account"})


def test_a_doomed_transaction_becomes_transient_instead_of_a_partial_commit() -> None:
    dest, state = recording_destination(Layout())
    dest.ensure_table("account", {"name": coltypes.TEXT})
    state.fail_on = re.compile(r"MERGE \[dbo\]\.\[account\]")
    state.xact_state = -1
    ws = WriteSet("account", "account", ["name"], [(str(uuid.uuid4()), 1, "a")], [], datetime.now(UTC))
    with pytest.raises(errors.TransactionLost), dest.transaction() as tx, tx.savepoint():
        tx.write(ws)
    assert dest.is_transient(errors.TransactionLost("x"))
    sqls = [s.sql for s in state.sent]
    assert "COMMIT TRANSACTION" not in sqls[sqls.index("BEGIN TRANSACTION", 5):]
    assert sqls[-2:] == [TSql.TRANCOUNT, TSql.ROLLBACK]


# ------------------------------------------------------------------------------ bulk chunking
def test_chunks_are_bounded_by_rows_and_by_parameter_bytes() -> None:
    layout = Layout()
    dest, state = recording_destination(layout)
    cols = {f"t{i}": coltypes.TEXT for i in range(3)}
    dest.ensure_table("note", cols)
    now = datetime.now(UTC)
    # 2500 narrow rows: three calls of at most CHUNK_MAX_ROWS
    narrow = [(str(uuid.uuid4()), 1, "a", "b", "c") for _ in range(2500)]
    with dest.transaction() as tx:
        tx.write(WriteSet("note", "note", list(cols), narrow, [], now))
    calls = [s for s in state.sent if s.rows is not None]
    assert [len(c.rows or []) for c in calls] == [1000, 1000, 500]
    # 4000-character texts: the byte budget decides (16 MiB / ~24 KB per row)
    state.sent.clear()
    wide = [(str(uuid.uuid4()), 1, "é" * 4000, "x" * 3999, "y" * 4000) for _ in range(2000)]
    with dest.transaction() as tx:
        tx.write(WriteSet("note", "note", list(cols), wide, [], now))
    calls = [s for s in state.sent if s.rows is not None]
    assert calls[0].sizes is not None
    row_bytes = sum(bound_bytes(z) for z in calls[0].sizes)
    assert calls[0].sizes[3:] == [(SQL_WVARCHAR, 4000, 0), (SQL_WVARCHAR, 3999, 0), (SQL_WVARCHAR, 4000, 0)]
    per = chunk_rows(row_bytes)
    assert per == CHUNK_MAX_BYTES // row_bytes < CHUNK_MAX_ROWS
    assert [len(c.rows or []) for c in calls] == [per] * (2000 // per) + ([2000 % per] if 2000 % per else [])
    assert all(len(c.rows or []) * row_bytes <= CHUNK_MAX_BYTES for c in calls)
    # beyond 4000 UTF-16 units: NVARCHAR(MAX), streamed (data at execution), not copied per row
    state.sent.clear()
    huge = [(str(uuid.uuid4()), 1, "🎉" * 2001, None, None)]  # 4002 UTF-16 code units
    with dest.transaction() as tx:
        tx.write(WriteSet("note", "note", list(cols), huge, [], now))
    call = next(s for s in state.sent if s.rows is not None)
    assert call.sizes is not None
    assert call.sizes[3] == (SQL_WVARCHAR, 0, 0)
    print(f"\nbulk chunk: narrow rows {CHUNK_MAX_ROWS}/call; 3x4000-char rows {per}/call ({row_bytes} B/row)")


@pytest.mark.integration
def test_the_staging_plan_binds_through_a_real_odbc_driver_and_values_come_back_exact() -> None:
    """pyodbc's fast_executemany with the plan's input sizes and converted values (uuid.UUID,
    Decimal(38, 18), bool, float, bigint, UTF-16-sized text, NULLs of every type), through the
    unixODBC driver manager and psqlODBC into PostgreSQL (installed by scripts/setup.sh): the only
    real ODBC driver and server here. SQL Server itself is the gated suite's job. Texts over 4,000
    UTF-16 units (bound as data-at-execution, as Microsoft documents for NVARCHAR(MAX)) are left
    out: psqlODBC cannot take data-at-execution inside parameter arrays."""
    driver = "PostgreSQL Unicode"
    assert driver in pyodbc.drivers(), f"install Debian's odbc-postgresql (scripts/setup.sh): {pyodbc.drivers()}"
    types = {"t": coltypes.TEXT, "n": coltypes.DECIMAL, "f": coltypes.FLOAT, "g": coltypes.GUID,
             "i": coltypes.INTEGER, "b": coltypes.BOOLEAN, "e": coltypes.TEXT}
    texts = [*HOSTILE_TEXTS[:4], "🎉" * 2000]  # the last one is exactly 4,000 UTF-16 code units
    numbers: list[object] = [0.1, 0.30000000000000004, 12345678901234567890, -7, 1.5e-10]
    upserts: list[tuple[object, ...]] = [
        (str(uuid.uuid4()), i, texts[i % 5], numbers[i % 5], i / 7, str(uuid.uuid4()), -(2**62) + i, i % 2 == 0,
         None if i % 3 else "ünï")
        for i in range(2500)
    ]
    upserts.append((str(uuid.uuid4()), 9999, None, None, None, None, None, None, None))
    deletes = [(str(uuid.uuid4()), 5), (str(uuid.uuid4()), 6)]
    ws = WriteSet("account", "account", list(types), upserts, deletes, datetime.now(UTC))
    plan = stage_plan(ws, list(types.items()))
    assert plan.sizes[3] == (SQL_WVARCHAR, 4000, 0)
    with fresh_database() as dsn:
        p = urllib.parse.urlsplit(dsn)
        conn = pyodbc.connect(
            f"DRIVER={{{driver}}};SERVER={p.hostname};PORT={p.port};DATABASE={p.path[1:]};"
            f"UID={p.username};PWD={{{p.password}}};BoolsAsChar=0;",
            autocommit=True,
        )
        try:
            cur = conn.cursor()
            cur.execute(
                'CREATE TABLE stage ("Id" uuid PRIMARY KEY, versionnumber bigint NOT NULL, del boolean NOT NULL, '
                "t text, n numeric(38, 18), f double precision, g uuid, i bigint, b boolean, e text)"
            )
            cur.fast_executemany = True
            cur.setinputsizes(plan.sizes)
            calls = 0
            rows = iter(plan.rows)
            while chunk := [r for _, r in zip(range(plan.rows_per_call), rows, strict=False)]:
                cur.executemany("INSERT INTO stage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk)
                calls += 1
            cur.setinputsizes(None)
            got = {
                str(r[0]).lower(): tuple(r[1:])
                for r in cur.execute(
                    'SELECT "Id"::text, versionnumber, del, t, n::text, f, g::text, i, b, e FROM stage'
                ).fetchall()
            }
        finally:
            conn.close()
    assert calls == 3  # 2503 rows, 1,000 per call
    assert len(got) == len(upserts) + len(deletes)
    for rid, v, t, n, f, g, i, b, e in upserts:
        row = got[str(rid)]
        assert row[:3] == (v, False, t), (rid, row)
        assert (None if row[3] is None else Decimal(row[3])) == (None if n is None else to_decimal(n)), (rid, row)
        assert row[4:] == (f, g, i, b, e), (rid, row)
    for rid, v in deletes:
        assert got[rid] == (v, True, None, None, None, None, None, None, None)


# ------------------------------------------------------------------------------- identifiers
@pytest.mark.parametrize(
    "name",
    ["a]b", "]]", "x'; DROP TABLE y;--", "[weird]", "select", "🎉 emoji", "ünï", "a" * 128, "has space", '"dq"'],
)
def test_quoted_identifiers_parse_back_to_the_same_name(name: str) -> None:
    sql = f"SELECT {quote('c')} FROM {quote('dbo')}.{quote(name)}"
    tree = sqlglot.parse_one(sql, read="tsql")
    table = tree.find(exp.Table)
    assert table is not None
    assert table.name == name
    assert table.this.quoted
    assert quote(name) == "[" + name.replace("]", "]]") + "]"


@pytest.mark.parametrize("bad", ["", "a" * 129, "tab\there", "nul\x00", "trailing ", "\ud800", "#temp", "🎉" * 65])
def test_identifiers_sql_server_cannot_take_are_refused(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        quote(bad)


_NAMES = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=128).filter(
    lambda s: s == s.rstrip(" ") and not s.startswith("#") and len(s.encode("utf-16-le")) <= 256
)


@settings(max_examples=300, deadline=None)
@given(_NAMES)
def test_any_valid_name_quotes_and_parses_back_exactly(name: str) -> None:
    tree = sqlglot.parse_one(f"SELECT {quote(name)} FROM [dbo].{quote(name)}", read="tsql")
    table, column = tree.find(exp.Table), tree.find(exp.Column)
    assert table is not None
    assert column is not None
    assert (table.name, column.name) == (name, name)


def test_tsql_for_hostile_layout_names() -> None:
    sql = TSql("weird", Layout("weird", "P1"))
    statement = sql.create_table("P1_select", {"from": coltypes.TEXT, "order": coltypes.INTEGER})
    tree = sqlglot.parse_one(statement, read="tsql")
    assert {c.name for c in tree.find_all(exp.ColumnDef)} >= {"from", "order", "Id"}
    assert sql.lock_resource("P1_Select") == "des:weird.p1_select"
    assert len(TSql("s", Layout()).lock_resource("x" * 300)) <= 255


# ------------------------------------------------------------------------------------- types
@pytest.mark.parametrize(
    ("t", "declared", "row"),
    [
        (coltypes.GUID, "UNIQUEIDENTIFIER", ("uniqueidentifier", 16, 0, 0)),
        (coltypes.BOOLEAN, "BIT", ("bit", 1, 1, 0)),
        (coltypes.INTEGER, "BIGINT", ("bigint", 8, 19, 0)),
        (coltypes.FLOAT, "FLOAT", ("float", 8, 53, 0)),
        (coltypes.DECIMAL, "DECIMAL(38, 18)", ("decimal", 17, 38, 18)),
        (ColumnType(Kind.DECIMAL, precision=38, scale=4), "DECIMAL(38, 4)", ("decimal", 17, 38, 4)),
        (coltypes.DATETIME, "DATETIME2(7)", ("datetime2", 8, 27, 7)),
        (coltypes.TEXT, "NVARCHAR(MAX)", ("nvarchar", -1, 0, 0)),
        (ColumnType(Kind.TEXT, 160), "NVARCHAR(160)", ("nvarchar", 320, 0, 0)),
        (ColumnType(Kind.TEXT, 4000), "NVARCHAR(4000)", ("nvarchar", 8000, 0, 0)),
    ],
)
def test_types_map_and_read_back(t: ColumnType, declared: str, row: tuple[str, int, int, int]) -> None:
    assert sql_type(t) == declared
    assert column_type(*row) == t
    parsed = sqlglot.parse_one(f"CREATE TABLE [x] ([c] {declared} NULL)", read="tsql")
    assert parsed.find(exp.DataType) is not None


def test_metadata_types_map_to_nvarchar_n_decimal_38_s_and_datetime2() -> None:
    assert sql_type(ColumnType(Kind.TEXT, 5000)) == "NVARCHAR(MAX)"  # beyond NVARCHAR(4000)
    assert sql_type(ColumnType(Kind.DECIMAL, precision=10, scale=2)) == "DECIMAL(38, 2)"
    assert column_type("int", 4, 10, 0) == coltypes.INTEGER  # an existing DES column, read as it is (issue 11)


def test_widening_is_allowed_only_where_alter_column_is_lossless() -> None:
    dest, _ = recording_destination(Layout())
    assert dest.can_widen(ColumnType(Kind.TEXT, 100), ColumnType(Kind.TEXT, 200))
    assert dest.can_widen(ColumnType(Kind.TEXT, 100), coltypes.TEXT)
    assert dest.can_widen(coltypes.INTEGER, coltypes.DECIMAL)
    assert not dest.can_widen(coltypes.FLOAT, coltypes.DECIMAL)  # would round or overflow
    assert not dest.can_widen(coltypes.TEXT, ColumnType(Kind.TEXT, 100))
    assert not dest.can_widen(coltypes.BOOLEAN, coltypes.TEXT)
    assert not dest.can_widen(ColumnType(Kind.DECIMAL, precision=38, scale=2), coltypes.DECIMAL)  # 36 -> 20 digits


def test_check_values_reports_what_sql_server_cannot_store() -> None:
    dest, _ = recording_destination(Layout())
    short = ColumnType(Kind.TEXT, 3)
    assert dest.check_values(short, ["abc", None, "é"]) == {}
    reasons = dest.check_values(short, ["🎉🎉", None, "abcd", "ok", "\ud800"])
    assert set(reasons) == {0, 2, 4}
    assert "4 UTF-16 code units" in reasons[0]
    assert "NVARCHAR(3)" in reasons[0]
    assert "surrogate" in reasons[4]
    assert dest.check_values(coltypes.TEXT, ["x" * 100_000, None, "ünï"]) == {}
    assert set(dest.check_values(coltypes.TEXT, ["ok", "bad\udfff"])) == {1}
    dec = dest.check_values(
        coltypes.DECIMAL, [10**19, 10**20, -(10**25), 0.30000000000000004, 1.2345678901234567e-05, None]
    )
    assert set(dec) == {1, 2, 4}
    assert "21 digits before the decimal point" in dec[1]
    assert "21 decimal places" in dec[4]
    assert dest.check_values(ColumnType(Kind.DECIMAL, precision=38, scale=2), [1.25, 1.255]) == {
        1: "number has 3 decimal places; DECIMAL(38, 2) keeps 2 and would round it"
    }
    assert set(dest.check_values(coltypes.FLOAT, [0.0, None, 5e-324, -1e-310, 2.2250738585072014e-308])) == {2, 3}
    assert dest.check_values(coltypes.INTEGER, [2**63 - 1, None]) == {}


# --------------------------------------------------------------------------- transient errors
def _driver_error(cls: type[pyodbc.Error], state: str, native: int, text: str = "message") -> pyodbc.Error:
    prefix = f"[{state}] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]"
    return cls(state, f"{prefix}{text} ({native}) (SQLExecDirectW)")


@pytest.mark.parametrize(
    "native", [1205, 40501, 40613, 40197, 49918, 49919, 49920, 4060, 10928, 10929, 233, 10053, 10054, 10060, 1222]
)
def test_native_error_numbers_are_transient(native: int) -> None:
    assert errors.is_transient(_driver_error(pyodbc.OperationalError, "42000", native))
    assert errors.error_parts(_driver_error(pyodbc.Error, "HY000", native)) == ("HY000", [native])


@pytest.mark.parametrize("state", ["HYT00", "HYT01", "08S01", "08001", "40001"])
def test_sqlstates_are_transient(state: str) -> None:
    message = f"[{state}] [Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired (0) (SQLExecDirectW)"
    assert errors.is_transient(pyodbc.OperationalError(state, message))


def test_a_real_driver_error_and_multi_record_messages() -> None:
    with pytest.raises(pyodbc.Error) as caught:
        pyodbc.connect("DRIVER={FreeTDS};SERVER=127.0.0.1;PORT=1;DATABASE=x;UID=a;PWD=b;TDS_Version=7.4", timeout=3)
    assert errors.is_transient(caught.value), caught.value.args
    windows_style = pyodbc.OperationalError(
        "08S01",
        "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: An existing connection was forcibly closed "
        "by the remote host.\r\n (10054) (SQLExecDirectW); [08S01] [Microsoft][ODBC Driver 18 for SQL Server]"
        "Communication link failure (10054)",
    )
    assert errors.error_parts(windows_style) == ("08S01", [10054, 10054])


def test_permanent_errors_are_not_transient_even_with_numbers_in_the_data() -> None:
    pk = pyodbc.IntegrityError(
        "23000",
        "[23000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of PRIMARY KEY constraint "
        "'PK_x'. Cannot insert duplicate key in object 'dbo.x'. The duplicate key value is (10054). (2627) "
        "(SQLExecDirectW)",
    )
    assert errors.error_parts(pk) == ("23000", [2627])
    assert not errors.is_transient(pk)
    assert not errors.is_transient(_driver_error(pyodbc.DataError, "22003", 8115, "Arithmetic overflow"))
    assert not errors.is_transient(ValueError("(1205) (SQLExecDirectW)"))
    assert errors.is_transient(errors.LockTimeout("applock"))


# -------------------------------------------------------------------- DSNs and Entra tokens
def test_sql_login_dsn_builds_an_odbc_connection_string() -> None:
    password = "p@ss;w{o}rd=1"
    dsn = f"mssql://des:{urllib.parse.quote(password, safe='')}@db.example.net:14330/crm?TrustServerCertificate=yes"
    target = connect.parse_dsn(dsn)
    pairs = dict(connect.parse_odbc(target.connection_string))
    assert pairs == {
        "DRIVER": "ODBC Driver 18 for SQL Server", "SERVER": "tcp:db.example.net,14330", "DATABASE": "crm",
        "Encrypt": "yes", "UID": "des", "PWD": password, "TrustServerCertificate": "yes",
    }
    assert target.entra is None
    assert password not in target.redacted()
    assert "PWD=***" in target.redacted()
    assert "p%40ss" not in redact(dsn)
    assert ":***@" in redact(dsn)


def test_freetds_dsn() -> None:
    target = connect.parse_dsn("mssql://sa:Secret1!@localhost/des_test?driver=FreeTDS&encrypt=no")
    pairs = dict(connect.parse_odbc(target.connection_string))
    assert pairs["SERVER"] == "localhost"
    assert pairs["PORT"] == "1433"
    assert pairs["TDS_Version"] == "7.4"
    assert pairs["Encryption"] == "off"
    assert target.is_freetds


def test_entra_dsns_use_azure_identity_tokens_not_passwords() -> None:
    default = connect.parse_dsn("mssql://srv.database.windows.net/db?authentication=ActiveDirectoryDefault")
    assert default.entra == "default"
    assert "UID" not in default.connection_string
    assert "Authentication" not in default.connection_string
    msi = connect.parse_dsn(
        "mssql://11111111-2222-3333-4444-555555555555@srv.database.windows.net/db"
        "?authentication=ActiveDirectoryManagedIdentity"
    )
    assert msi.entra == "managed_identity"
    assert msi.client_id == "11111111-2222-3333-4444-555555555555"
    raw = (
        "Driver={ODBC Driver 18 for SQL Server};Server=tcp:srv,1433;Database=db;"
        "Authentication=ActiveDirectoryMsi;UID=abc;"
    )
    target = connect.parse_dsn("mssql+odbc:///?odbc_connect=" + urllib.parse.quote_plus(raw))
    assert target.entra == "managed_identity"
    assert target.client_id == "abc"
    assert dict(connect.parse_odbc(target.connection_string)) == {
        "Driver": "ODBC Driver 18 for SQL Server", "Server": "tcp:srv,1433", "Database": "db"
    }
    # Other Authentication values are the driver's business.
    sp = connect.parse_dsn("mssql://appid:secret@srv/db?authentication=ActiveDirectoryServicePrincipal")
    assert sp.entra is None
    assert "Authentication=ActiveDirectoryServicePrincipal" in sp.connection_string


def test_access_token_is_packed_as_the_odbc_driver_expects() -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2RhdGFiYXNlLndpbmRvd3MubmV0LyJ9.c2ln"
    packed = connect.pack_access_token(token)
    (size,) = struct.unpack("<I", packed[:4])
    assert size == 2 * len(token) == len(packed) - 4
    assert packed[4::2] == token.encode("ascii")
    assert set(packed[5::2]) == {0}
    with pytest.raises(ValueError, match="ASCII"):
        connect.pack_access_token("tökén")


class StaticTokenCredential:
    """Test double of an azure-identity credential: hands out a fixed token and records scopes."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, 4102444800)


def test_token_source_asks_for_the_azure_sql_scope_and_builds_attrs_before() -> None:
    source = connect.TokenSource("default")
    credential = source._make_credential()
    assert type(credential).__name__ == "DefaultAzureCredential"  # real azure-identity, lazily imported
    assert type(connect.TokenSource("managed_identity", "abc")._make_credential()).__name__ == (
        "ManagedIdentityCredential"
    )
    double = StaticTokenCredential("header.payload.sig")
    source._credential = double
    attrs = source.attrs_before()
    assert double.scopes == [("https://database.windows.net/.default",)]
    assert attrs == {1256: connect.pack_access_token("header.payload.sig")}


@pytest.mark.parametrize(
    "dsn",
    [
        "mssql://sa:x@/db",
        "mssql://sa:x@host",
        "mssql://host/db",
        "mssql+odbc:///?nothing=1",
        "mssql+odbc:///?odbc_connect=" + urllib.parse.quote_plus("DRIVER={FreeTDS;SERVER=x"),
        "mssql://sa:x@host/db?login_timeout=soon",
    ],
)
def test_bad_dsns_are_usage_errors(dsn: str) -> None:
    with pytest.raises(UnsupportedDestination):
        connect.parse_dsn(dsn)


def test_unreachable_server_is_a_clear_connection_failure() -> None:
    with pytest.raises(ConnectionFailed, match=r"cannot connect to SQL Server .*PWD=\*\*\*") as caught:
        open_destination("mssql://sa:Secret1!@127.0.0.1:1/db?driver=FreeTDS&login_timeout=3", Layout())
    assert "Secret1!" not in str(caught.value)


def test_reset_reconnects_lazily() -> None:
    dest, state = recording_destination(Layout())
    assert state.connects == 1
    dest.reset()
    assert state.connects == 1
    dest.ensure_table("account", {"name": coltypes.TEXT})
    assert state.connects == 2
    assert [s.sql for s in state.sent].count("SET XACT_ABORT OFF") == 2


def test_compose_file_wires_sql_server_azurite_and_the_service_bus_emulator_with_our_queue() -> None:
    root = Path(__file__).resolve().parents[2]
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    assert services["sqlserver"]["image"] == "mcr.microsoft.com/mssql/server:2022-latest"
    assert services["azurite"]["image"].startswith("mcr.microsoft.com/azure-storage/azurite")
    emulator = services["servicebus-emulator"]
    assert emulator["image"].startswith("mcr.microsoft.com/azure-messaging/servicebus-emulator:")
    assert emulator["environment"]["SQL_SERVER"] == "sqlserver"
    assert emulator["environment"]["MSSQL_SA_PASSWORD"] == services["sqlserver"]["environment"]["MSSQL_SA_PASSWORD"]
    assert emulator["depends_on"]["sqlserver"]["condition"] == "service_healthy"
    source, target, _mode = emulator["volumes"][0].split(":")
    assert target == "/ServiceBus_Emulator/ConfigFiles/Config.json"
    config = json.loads((root / source).read_text())
    (namespace,) = config["UserConfig"]["Namespaces"]
    assert namespace["Name"] == "sbemulatorns"  # the only name the emulator accepts
    settings = json.loads((root / "local.settings.example.json").read_text())["Values"]
    assert [q["Name"] for q in namespace["Queues"]] == [settings["ServiceBusQueueName"]]
    assert "UseDevelopmentEmulator=true" in settings["ServiceBusConnection"]


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    if PARSE_COUNTS:
        total = sum(PARSE_COUNTS.values())
        print("\nT-SQL statements parsed per scenario: " + ", ".join(f"{k}={v}" for k, v in PARSE_COUNTS.items()))
        print(f"total: {total}")


# --------------------------------------------------------------------------- error taxonomy
RECORD_NATIVE = [515, 547, 2627, 2601, 8152, 2628, 8115, 220, 245, 8114, 511, 8169, 242]


@pytest.mark.parametrize(
    ("native", "expected"),
    [(n, ErrorClass.ENVIRONMENTAL) for n in sorted(errors.ENVIRONMENTAL_NATIVE_ERRORS)]
    + [(n, ErrorClass.ENTITY) for n in sorted(errors.ENTITY_NATIVE_ERRORS)]
    + [(n, ErrorClass.TRANSIENT) for n in sorted(errors.TRANSIENT_NATIVE_ERRORS)]
    + [(n, ErrorClass.RECORD) for n in RECORD_NATIVE],
)
def test_every_native_error_of_the_taxonomy_is_classified(native: int, expected: ErrorClass) -> None:
    exc = _driver_error(pyodbc.ProgrammingError, "42000", native)
    assert errors.classify(exc) is expected
    dest, _ = recording_destination(Layout())
    assert dest.classify(exc) is expected


def test_cancelled_is_environmental_and_our_own_errors_keep_their_class() -> None:
    cancelled = pyodbc.OperationalError(
        "HY008", "[HY008] [Microsoft][ODBC Driver 18 for SQL Server]Operation canceled (0)"
    )
    assert errors.classify(cancelled) is ErrorClass.ENVIRONMENTAL
    assert errors.classify(errors.LockTimeout("applock")) is ErrorClass.TRANSIENT
    assert errors.classify(EntityRefused("reserved")) is ErrorClass.ENTITY
    assert errors.classify(EnvironmentalDestinationError("log full")) is ErrorClass.ENVIRONMENTAL
    assert errors.classify(ValueError("(9002) (SQLExecDirectW)")) is ErrorClass.RECORD  # not a driver error


@pytest.mark.parametrize("native", [9002, 40552, 40544, 8645, 3906])
def test_environmental_errors_park_the_batch_instead_of_failing_every_record(native: int) -> None:
    """Log full, quota, memory grant, read-only: once bisected into a failure per record."""
    dest, state = recording_destination(Layout())
    state.fail_on = re.compile(r"MERGE \[dbo\]\.\[account\]")
    state.fail_with = _driver_error(pyodbc.OperationalError, "42000", native)
    state.xact_state = -1  # as after most of these: the transaction is doomed
    bodies = [up("account", i, 1, name=f"n{i}").body() for i in range(1, 5)]
    with pytest.raises(EnvironmentalDestinationError):
        SyncEngine(dest, backoff_seconds=0).apply_bodies(bodies)
    sqls = [s.sql for s in state.sent]
    assert sum(1 for s in sqls if s.startswith("SAVE TRANSACTION")) == 1  # no bisection
    assert "COMMIT TRANSACTION" not in sqls[sqls.index("SAVE TRANSACTION des_sp_0") :]


def test_an_entity_level_error_fails_that_entity_and_the_others_commit() -> None:
    """334 (a trigger and OUTPUT without INTO) and 1702 (too many columns) are about the table."""
    dest, state = recording_destination(Layout())
    state.fail_on = re.compile(r"^CREATE TABLE \[dbo\]\.\[wide\]")
    state.fail_with = _driver_error(pyodbc.ProgrammingError, "42000", 1702, "CREATE TABLE failed because column")
    bodies = [up("account", 1, 1, name="a").body(), up("wide", 2, 1, x=1).body(), up("wide", 3, 1, x=2).body()]
    result = SyncEngine(dest, backoff_seconds=0).apply_bodies(bodies)
    assert result.conserved
    assert (result.applied, result.failed) == (1, 2)
    assert {f.entity for f in result.failures} == {"wide"}
    assert all("(1702)" in f.reason for f in result.failures)

    dest, state = recording_destination(Layout())
    dest.ensure_table("account", {"name": coltypes.TEXT})
    dest.ensure_table("contact", {"name": coltypes.TEXT})
    state.fail_on = re.compile(r"MERGE \[dbo\]\.\[account\]")
    state.fail_with = _driver_error(pyodbc.ProgrammingError, "42000", 334, "The target table cannot have triggers")
    bodies = [up("account", i, 1, name="a").body() for i in range(1, 5)] + [up("contact", 9, 1, name="c").body()]
    result = SyncEngine(dest, backoff_seconds=0).apply_bodies(bodies)
    assert (result.applied, result.failed) == (1, 4)
    sqls = [s.sql for s in state.sent]
    assert sum(1 for s in sqls if s.startswith("SAVE TRANSACTION")) == 2  # one per entity: no bisection
    assert sqls[-1] == "COMMIT TRANSACTION"


# ------------------------------------------------------------------- widening and DDL locks
def test_a_cold_catalog_never_widens_nvarchar_n_for_a_value_that_fits() -> None:
    """A new process once widened a declared NVARCHAR(160) to MAX on the first short string."""
    dest, state = recording_destination(Layout())
    dest.ensure_table("account", {"name": ColumnType(Kind.TEXT, 160)})
    cold, _ = recording_destination(Layout(), state)  # same server, nothing cached
    state.sent.clear()
    result = SyncEngine(cold, backoff_seconds=0).apply_bodies([up("account", 1, 1, name="short").body()])
    assert (result.applied, result.failed) == (1, 0)
    assert not [s.sql for s in state.sent if s.sql.startswith(("ALTER", "CREATE TABLE [dbo]"))]
    assert state.tables[("dbo", "account")]["name"] == ("nvarchar", 320, 0, 0)
    result = SyncEngine(cold, backoff_seconds=0).apply_bodies([up("account", 2, 1, name="x" * 200).body()])
    assert result.applied == 1
    assert state.tables[("dbo", "account")]["name"] == ("nvarchar", -1, 0, 0)  # widened on evidence only


def test_ddl_waits_a_bounded_time_for_its_lock_then_fails_only_that_entity() -> None:
    dest, state = recording_destination(Layout())
    dest.ensure_table("account", {"name": coltypes.TEXT})
    state.fail_on = re.compile(r"^ALTER TABLE \[dbo\]\.\[account\]")
    state.fail_with = _driver_error(pyodbc.OperationalError, "HYT00", 1222, "Lock request time out period exceeded.")
    bodies = [up("account", 1, 1, name="a", phone="1").body(), up("contact", 2, 1, name="c").body()]
    result = SyncEngine(dest, backoff_seconds=0).apply_bodies(bodies)
    assert result.conserved
    assert (result.applied, result.failed) == (1, 1)
    assert "schema lock" in result.failures[0].reason
    sqls = [s.sql for s in state.sent]
    i = next(i for i, s in enumerate(sqls) if s.startswith("ALTER TABLE [dbo].[account]"))
    assert sqls[i - 1] == f"SET LOCK_TIMEOUT {DDL_LOCK_TIMEOUT_MS}"
    assert sqls[i + 1] == "SET LOCK_TIMEOUT 60000"


def test_at_most_two_round_trips_per_entity_after_staging() -> None:
    """Once 7-13 round trips per entity; now the batch after staging is one (counted on the double)."""
    dest, state = recording_destination(Layout(write_delete_log=True))
    engine = SyncEngine(dest, backoff_seconds=0)
    engine.apply_bodies([up(e, i, 1, name="a").body() for e in ("account", "contact") for i in range(1, 4)])
    state.sent.clear()
    bodies = [up(e, i, 2, name="b").body() for e in ("account", "contact") for i in range(1, 3)]
    bodies += [rm(e, 3, 3).body() for e in ("account", "contact")]
    result = engine.apply_bodies(bodies)
    assert (result.applied, result.failed) == (6, 0)
    # Round trips from the end of each entity's staging to the next entity's lock (or the commit).
    trips: list[int] = []
    counting = False
    for sent in state.sent:
        if sent.rows is not None:  # a staging chunk: count from the last one
            if counting:
                trips[-1] = 0
            else:
                trips.append(0)
                counting = True
        elif counting and ("sp_getapplock" in sent.sql or sent.sql.startswith("COMMIT")):
            counting = False
        elif counting:
            trips[-1] += 1
    print(f"\nround trips per entity after staging (account, contact): {trips}")  # BENCHMARKS.md
    assert len(trips) == 2
    assert all(1 <= t <= 2 for t in trips), trips


@pytest.mark.parametrize(
    ("row", "logical"),
    [
        (("int", 4, 10, 0), coltypes.INTEGER),
        (("smallint", 2, 5, 0), coltypes.INTEGER),
        (("tinyint", 1, 3, 0), coltypes.INTEGER),
        (("datetime", 8, 23, 3), coltypes.DATETIME),
        (("smalldatetime", 4, 16, 0), coltypes.DATETIME),
        (("money", 8, 19, 4), ColumnType(Kind.DECIMAL, precision=19, scale=4)),
        (("nvarchar", 320, 0, 0), ColumnType(Kind.TEXT, 160)),
        (("varchar", 100, 0, 0), ColumnType(Kind.TEXT, 100)),
        (("uniqueidentifier", 16, 0, 0), coltypes.GUID),
        (("real", 4, 24, 0), coltypes.FLOAT),
    ],
)
def test_existing_des_column_types_are_read_as_they_are(row: tuple[str, int, int, int], logical: ColumnType) -> None:
    """Once read as text: "integer does not fit column of type text" for every record."""
    assert column_type(*row) == logical


def test_an_adopted_des_table_keeps_its_column_types() -> None:
    dest, state = recording_destination(Layout())
    dest.execute(
        "CREATE TABLE [dbo].[account] ([Id] UNIQUEIDENTIFIER NOT NULL PRIMARY KEY, [SinkCreatedOn] DATETIME NOT NULL, "
        "[SinkModifiedOn] DATETIME NOT NULL, [versionnumber] BIGINT NOT NULL, [name] NVARCHAR(160) NULL, "
        "[numberofemployees] INT NULL, [statecode] SMALLINT NULL, [createdon] DATETIME NULL, [revenue] MONEY NULL)"
    )
    before = dict(state.tables[("dbo", "account")])
    cold, _ = recording_destination(Layout(), state)
    body = up("account", 1, 1, name="Contoso", numberofemployees=42, statecode=1, createdon="2026-11-21T10:00:00Z",
              revenue=1234.5).body()  # fmt: skip
    result = SyncEngine(cold, backoff_seconds=0).apply_bodies([body])
    assert result.failures == []
    assert result.applied == 1
    assert state.tables[("dbo", "account")] == before
    assert not [s.sql for s in state.sent if s.sql.startswith("ALTER")]


def test_computed_identity_and_rowversion_columns_are_never_written() -> None:
    """Once in every MERGE (every upsert failed: 271, 544, 273); now skipped, and a record naming one fails alone."""
    dest, state = recording_destination(Layout())
    dest.ensure_table("account", {"name": coltypes.TEXT, "label": coltypes.TEXT, "seq": coltypes.INTEGER,
                                  "rv": coltypes.TEXT})  # fmt: skip
    state.unwritable |= {("dbo", "account", "label"), ("dbo", "account", "seq"), ("dbo", "account", "rv")}
    cold, _ = recording_destination(Layout(), state)
    state.sent.clear()
    bodies = [up("account", 1, 1, name="a").body(), up("account", 2, 1, name="b", label="mine").body()]
    result = SyncEngine(cold, backoff_seconds=0).apply_bodies(bodies)
    assert (result.applied, result.failed) == (1, 1)
    assert "no writable column" in result.failures[0].reason
    (batch,) = [s.sql for s in state.sent if s.sql.endswith("DROP TABLE [#des_stage];")]
    for column in ("[label]", "[seq]", "[rv]"):
        assert column not in batch
    assert not [s.sql for s in state.sent if s.sql.startswith("ALTER")]  # nor added again


def test_an_operators_own_column_is_never_written() -> None:
    """Once NULLed by every full-state MERGE; now only registered columns (ours) are written."""
    dest, state = recording_destination(Layout())
    engine = SyncEngine(dest, backoff_seconds=0)
    assert engine.apply_bodies([up("account", 1, 1, name="a", phone="1").body()]).applied == 1
    assert state.registry == {("account", "name"), ("account", "phone")}
    state.tables[("dbo", "account")]["notes"] = ("nvarchar", -1, 0, 0)  # ALTER TABLE ... ADD [notes] by an operator
    fresh = SyncEngine(recording_destination(Layout(), state)[0], backoff_seconds=0)  # a cold catalog
    for version, eng in ((2, engine), (3, fresh)):
        state.sent.clear()
        bodies = [up("account", 1, version, name="b").body(), up("account", 2, 1, notes="mine").body()]
        result = eng.apply_bodies(bodies)
        assert (result.applied, result.failed) == (1, 1)
        assert "no writable column" in result.failures[0].reason
        (batch,) = [s.sql for s in state.sent if s.sql.endswith("DROP TABLE [#des_stage];")]
        assert "[notes]" not in batch
        assert "[phone]" in batch  # ours: written (NULL: the row is the full state)
        assert not [s.sql for s in state.sent if s.sql.startswith("ALTER")]


def test_version_reads_for_the_dataverse_source_parse_as_tsql() -> None:
    """The keyset read of (Id, versionnumber) in chunks (the source's bounded reconcile)."""
    sql = TSql("dbo", Layout(prefix="P1"))
    for first in (True, False):
        chunk = sqlglot.parse_one(sql.id_versions_after("P1_account", first), read="tsql")
        assert isinstance(chunk, exp.Select)
        assert chunk.args.get("limit") is not None or "TOP" in chunk.sql(dialect="tsql").upper()
        assert chunk.args["order"].expressions[0].this.name == "Id"
        assert len(list(chunk.find_all(exp.Placeholder))) == (1 if first else 2)
        assert (chunk.args.get("where") is None) is first
