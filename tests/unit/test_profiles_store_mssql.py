"""The admin store's Azure SQL / SQL Server dialect up to the driver: every statement it sends
parses as T-SQL (sqlglot ``tsql``, never an unparsed ``Command``), its ``?`` markers match the
parameters bound, the pyodbc calls are the ones named, and the metrics upsert is one MERGE.

SQL Server cannot run here: :class:`RecordingConnection` is a **test double** of a pyodbc
connection that executes nothing and answers just enough for the store to proceed; no conclusion
about behaviour is drawn from its answers. tests/gated/test_store_mssql_live.py runs the same
store against a real server when ``DES_TEST_MSSQL`` is set.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from shared.destinations.mssql.connect import parse_dsn
from shared.engine.outcomes import BatchResult
from shared.store import MetricsEntry, SqlStore, StoredProfile, open_store
from shared.store.mssql import MssqlStoreDialect, metrics_merge

pytestmark = pytest.mark.unit

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


@dataclass
class Sent:
    sql: str
    params: tuple[Any, ...]


@dataclass
class Server:
    sent: list[Sent] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # pyodbc calls, by name
    profiles: dict[str, tuple[Any, ...]] = field(default_factory=dict)


class RecordingCursor:
    """Test double of a pyodbc cursor (see the module docstring)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rows: list[tuple[Any, ...]] = []
        self.rowcount = -1

    def execute(self, sql: str, *params: Any) -> RecordingCursor:
        self.server.calls.append("cursor.execute")
        self.server.sent.append(Sent(sql, params))
        self.rows = self._answer(sql, params)
        return self

    def _answer(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if "sp_getapplock" in sql:
            return [(0,)]
        if sql.endswith("SELECT @@ROWCOUNT AS [rows]"):
            return [(1,)]
        if sql.startswith(("SELECT OBJECT_ID", "SELECT SCHEMA_ID", "SELECT MAX(version)")):
            return [(None,)]
        if sql == "SELECT @@TRANCOUNT":
            return [(1,)]
        if sql.startswith("INSERT INTO [des_profiles]") or sql.startswith("INSERT INTO [desadmin].[des_profiles]"):
            self.server.profiles[params[0]] = params
            return []
        if sql.startswith("SELECT revision, created_at"):
            p = self.server.profiles.get(params[0])
            return [(1, datetime(2026, 1, 1))] if p else []
        return []

    def fetchone(self) -> Any:
        self.server.calls.append("cursor.fetchone")
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        self.server.calls.append("cursor.fetchall")
        return list(self.rows)

    def close(self) -> None:
        self.server.calls.append("cursor.close")


class RecordingConnection:
    """Test double of a pyodbc connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        server.calls.append("pyodbc.connect")

    def cursor(self) -> RecordingCursor:
        self.server.calls.append("connection.cursor")
        return RecordingCursor(self.server)

    def close(self) -> None:
        self.server.calls.append("connection.close")


def recording_store(schema: str | None = None) -> tuple[SqlStore, Server]:
    server = Server()
    target = parse_dsn("mssql://des:pw@sql.example.com:1433/crm")
    dialect = MssqlStoreDialect(target, schema, connect=lambda: RecordingConnection(server))
    return SqlStore(dialect), server


def verify(sent: Sent) -> None:
    trees = sqlglot.parse(sent.sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert trees, sent.sql
    for tree in trees:
        assert tree is not None, sent.sql
        assert not [n for n in tree.walk() if isinstance(n, exp.Command)], f"unparsed: {sent.sql}"
        for table in tree.find_all(exp.Table):
            if table.name.startswith("des_"):
                assert table.this.quoted, f"{table.name} not quoted in {sent.sql}"
    markers = sum(len(list(t.find_all(exp.Placeholder))) for t in trees if t is not None)
    assert markers == len(sent.params), f"{markers} markers, {len(sent.params)} parameters: {sent.sql}"


def exercise(store: SqlStore) -> str:
    pid = str(uuid.uuid4())
    store.create_profile(StoredProfile(pid, "Sales", ORG, "draft", {"entities": ["account"]}))
    store.get_profile(pid)
    store.list_profiles(organization_id=ORG, states=["active", "inactive"])
    store.update_profile(StoredProfile(pid, "Sales 2", ORG, "active", {}), expected_revision=1)
    r = BatchResult(received=2, applied=2)
    c = r.entity("account")
    c.received, c.applied, c.last_changed_on = 2, 2, datetime(2026, 11, 21, tzinfo=UTC)
    store.record(pid, r, pending_retry=3)
    store.record_batch([MetricsEntry.skipped(pid, {"contact": 1}), MetricsEntry.unrouted({"lead": 2})])
    store.metrics(pid)
    store.metrics_history(pid, datetime(2026, 11, 21, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))
    store.metrics_history(pid, datetime(2026, 11, 21, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC), entity="a")
    store.set_initial_sync_state(pid, "account", "Completed")
    store.delete_profile(pid)
    store.ping()
    return pid


@pytest.mark.parametrize("schema", [None, "desadmin"])
def test_every_statement_is_valid_tsql_with_matching_markers(schema: str | None) -> None:
    store, server = recording_store(schema)
    exercise(store)
    seen = {s.sql.split()[0] for s in server.sent}
    assert {"SET", "BEGIN", "DECLARE", "CREATE", "INSERT", "SELECT", "UPDATE", "MERGE", "DELETE", "COMMIT"} <= seen
    for sent in server.sent:
        verify(sent)
    creates = [s.sql for s in server.sent if s.sql.startswith("CREATE")]
    if schema:
        assert creates[0] == "CREATE SCHEMA [desadmin]"
        assert all("[desadmin]." in c for c in creates[1:])
    store.close()


def test_session_transactions_and_pyodbc_calls() -> None:
    store, server = recording_store()
    assert server.calls[:2] == ["pyodbc.connect", "connection.cursor"]
    assert [s.sql for s in server.sent[:3]] == ["SET NOCOUNT ON", "SET XACT_ABORT ON", "BEGIN TRANSACTION"]
    assert "sp_getapplock" in server.sent[3].sql
    assert server.sent[-1].sql == "COMMIT TRANSACTION"
    assert server.calls.count("pyodbc.connect") == 1  # the connection is reused from the pool
    exercise(store)
    assert server.calls.count("pyodbc.connect") == 1
    store.close()
    assert server.calls[-1] == "connection.close"


def test_metrics_of_a_batch_are_one_merge_with_holdlock() -> None:
    store, server = recording_store()
    before = len(server.sent)
    entries = [MetricsEntry.unrouted({f"e{i}": 1 for i in range(40)})]
    store.record_batch(entries)
    merges = [s for s in server.sent[before:] if s.sql.startswith("MERGE [des_metrics] ")]
    assert len(merges) == 1
    assert len(merges[0].params) == 40 * 12
    assert "WITH (HOLDLOCK)" in merges[0].sql
    tree = sqlglot.parse_one(merges[0].sql, read="tsql")
    assert isinstance(tree, exp.Merge)
    history = [s for s in server.sent[before:] if s.sql.startswith("MERGE [des_metrics_history] ")]
    assert len(history) == 1  # the per-minute history: one MERGE too, in the same transaction
    assert len(history[0].params) == 40 * 10
    assert "WITH (HOLDLOCK)" in history[0].sql
    assert isinstance(sqlglot.parse_one(history[0].sql, read="tsql"), exp.Merge)
    # more rows than SQL Server's 2100 parameters per request: chunked, still one transaction
    before = len(server.sent)
    store.record_batch([MetricsEntry.unrouted({f"e{i}": 1 for i in range(400)})])
    sent = [" ".join(s.sql.split()[:2]) for s in server.sent[before:]]
    assert sent.count("MERGE [des_metrics]") == 3
    assert sent.count("MERGE [des_metrics_history]") == 2
    assert sent.count("BEGIN TRANSACTION") == 1
    assert all(len(s.params) <= 2000 for s in server.sent)


def test_merge_text_is_stable_and_quoted() -> None:
    sql = metrics_merge("[des_metrics]", 2)
    tree = sqlglot.parse_one(sql, read="tsql")
    assert isinstance(tree, exp.Merge)
    assert sql.count("?") == 24


def test_unique_violations_are_recognised() -> None:
    import pyodbc  # type: ignore[import-not-found]

    d = MssqlStoreDialect(parse_dsn("mssql://des:pw@h:1433/db"), connect=lambda: None)
    dup = pyodbc.IntegrityError(
        "23000", "[23000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of UNIQUE KEY constraint "
        "'des_profiles_name_uq'. Cannot insert duplicate key (2627) (SQLExecDirectW)",
    )  # fmt: skip
    assert d.is_unique_violation(dup)
    assert not d.is_unique_violation(pyodbc.IntegrityError("23000", "FK violation (547) (SQLExecDirectW)"))


def test_open_store_reads_both_dsn_forms_and_redacts() -> None:
    from shared.store import StoreUnavailable

    with pytest.raises(StoreUnavailable) as info:  # no ODBC driver for this name: connect fails, named
        open_store("mssql://des:Hidden-Pw-1@127.0.0.1:1/crm?driver=No+Such+Driver&login_timeout=1")
    assert "Hidden-Pw-1" not in str(info.value)
    assert "***" in str(info.value) or "PWD" not in str(info.value)
