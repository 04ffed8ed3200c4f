"""One behavioural suite over every destination: the shared scenarios (tests/support/scenarios.py)
on SQLite and PostgreSQL here, and on SQL Server / Azure SQL Database wherever ``DES_TEST_MSSQL``
holds an ODBC connection string (docs/sqlserver.md shows one for the docker-compose SQL Server).

Without ``DES_TEST_MSSQL`` the SQL Server cases are skipped visibly, with the reason. The module's
base tier is ``unit`` (SQLite); the PostgreSQL cases add ``integration`` and the SQL Server cases
``azure``, as the ``dsn`` fixture of tests/conftest.py does.

On SQL Server every test works in its own schema (or, for the default ``dbo`` scenarios, with its
own table prefix) of the given database, and drops what it made afterwards, so the suite can run
against a shared Azure SQL database.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.destinations import Destination, Layout, open_destination
from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from tests.support.model import Change
from tests.support.postgres import fresh_database
from tests.support.scenarios import SCENARIOS, Outcome, Scenario, check, concurrent_writers, rm, run, up

pytestmark = pytest.mark.unit

MSSQL_ENV = "DES_TEST_MSSQL"
needs_mssql = pytest.mark.skipif(
    not os.environ.get(MSSQL_ENV),
    reason=f"{MSSQL_ENV} is not set: give it an ODBC connection string of a SQL Server or Azure SQL "
    "database to run the SQL Server cases (docs/sqlserver.md, docker compose up)",
)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
    pytest.param("mssql", id="mssql", marks=[pytest.mark.azure, needs_mssql]),
]


@dataclass
class Backend:
    dialect: str
    open: Callable[[Layout], Destination]
    isolate: Callable[[Layout], Layout] = lambda layout: layout
    opened: list[Destination] = field(default_factory=list)

    def destination(self, layout: Layout) -> Destination:
        d = self.open(layout)
        self.opened.append(d)
        return d

    def close_all(self) -> None:
        for d in self.opened:
            d.close()
        self.opened.clear()


class MssqlSandbox:
    """Unique schemas and table prefixes in the DES_TEST_MSSQL database, dropped afterwards."""

    def __init__(self, conn_str: str) -> None:
        self.conn_str = conn_str
        tag = uuid.uuid4().hex[:10]
        self.schema = f"dest{tag}"
        self.prefix = f"t{tag}"
        self.schemas: set[str] = set()

    def isolate(self, layout: Layout) -> Layout:
        if layout.schema is None and not layout.prefix:
            return dataclasses.replace(layout, prefix=self.prefix)  # dbo, the default schema
        self.schemas.add(self.schema)
        return dataclasses.replace(layout, schema=self.schema)

    def open(self, layout: Layout) -> Destination:
        from shared.destinations.mssql.dialect import MssqlDestination

        return MssqlDestination.from_odbc(self.conn_str, layout)

    def drop(self) -> None:
        import pyodbc  # type: ignore[import-not-found]

        from shared.destinations.mssql.dialect import quote

        conn = pyodbc.connect(self.conn_str, autocommit=True)
        try:
            cur = conn.cursor()
            rows = cur.execute(
                "SELECT s.[name], t.[name] FROM sys.tables AS t INNER JOIN sys.schemas AS s "
                "ON s.[schema_id] = t.[schema_id] WHERE s.[name] IN (SELECT [value] FROM STRING_SPLIT(?, N',')) "
                "OR (s.[name] = N'dbo' AND t.[name] LIKE ?)",
                ",".join(self.schemas) or "-",
                self.prefix + "[_]%",
            ).fetchall()
            for schema, table in rows:
                cur.execute(f"DROP TABLE {quote(schema)}.{quote(table)}")
            for schema in self.schemas:
                cur.execute(f"DROP SCHEMA IF EXISTS {quote(schema)}")
        finally:
            conn.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind = request.param
    if kind == "sqlite":
        dsn = f"sqlite:///{tmp_path / 'dest.db'}"
        b = Backend("sqlite", lambda layout: open_destination(dsn, layout))
        try:
            yield b
        finally:
            b.close_all()
    elif kind == "postgresql":
        with fresh_database() as pg:
            b = Backend("postgresql", lambda layout: open_destination(pg, layout))
            try:
                yield b
            finally:
                b.close_all()
    else:
        sandbox = MssqlSandbox(os.environ[MSSQL_ENV])
        b = Backend("mssql", sandbox.open, sandbox.isolate)
        try:
            yield b
        finally:
            b.close_all()
            sandbox.drop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(backend: Backend, scenario: Scenario) -> None:
    layout = backend.isolate(scenario.layout(backend.dialect))
    dest = backend.destination(layout)
    results = run(scenario, dest)
    check(scenario, Outcome(backend.dialect, dest, layout, results))


@pytest.mark.parametrize("seed", [1, 2])
def test_concurrent_writers_converge(backend: Backend, seed: int) -> None:
    layout = backend.isolate(Layout(write_delete_log=True))
    concurrent_writers(backend.destination, layout, seed=seed)


def test_a_second_destination_sees_the_same_tables(backend: Backend) -> None:
    """Catalog reads and DDL from a fresh connection agree with what another one made."""
    layout = backend.isolate(Layout())
    first = backend.destination(layout)
    r = SyncEngine(first).apply_bodies([up("account", 1, 1, name="a", n=1).body()])
    assert r.applied == 1
    second = backend.destination(layout)
    r = SyncEngine(second).apply_bodies(
        [up("account", 1, 2, name="b", n=2, extra=True).body(), up("account", 2, 1, name="c").body()]
    )
    assert (r.applied, r.failed) == (2, 0), [f.reason for f in r.failures]
    rows = {str(row["name"]) for row in table_rows(second, layout.entity_table("account"))}
    assert rows == {"b", "c"}


def test_keyed_reads_of_the_push_reread(backend: Backend) -> None:
    """``held_versions`` by primary key and ``rows_with`` by an intersect row's two id columns."""
    layout = backend.isolate(Layout())
    dest = backend.destination(layout)
    table, rel = layout.entity_table("account"), layout.entity_table("des_link")
    assert dest.held_versions(table, [str(uuid.UUID(int=1))]) == {}
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    r = SyncEngine(dest).apply_bodies([up("account", 1, 4, name="a").body(), up("account", 2, 6, name="b").body(),
                                       up("des_link", 3, 8, accountid=a, contactid=b).body()])  # fmt: skip
    assert (r.applied, r.failed) == (3, 0), [f.reason for f in r.failures]
    ids = {str(row["Id"]).lower(): int(str(row["versionnumber"])) for row in table_rows(dest, table)}
    assert dest.held_versions(table, [i.upper() for i in ids]) == ids
    [(link, version)] = dest.rows_with(rel, {"accountid": a, "contactid": b.upper()})
    assert version == 8
    assert dest.rows_with(rel, {"accountid": b, "contactid": a}) == []
    assert dest.rows_with(rel, {"accountid": a, "missing": b}) == []
    assert link in {str(row["Id"]).lower() for row in table_rows(dest, rel)}


# ------------------------------------------------------------------------------ SQL Server only
@pytest.fixture
def sandbox() -> Iterator[MssqlSandbox]:
    box = MssqlSandbox(os.environ[MSSQL_ENV])
    try:
        yield box
    finally:
        box.drop()


def _wide(n: int, columns: int, chars: int) -> Change:
    return up("widerow", n, 1, **{f"c{i:04d}": chr(ord("a") + i % 26) * chars for i in range(columns)})


@pytest.mark.azure
@needs_mssql
def test_wide_rows_go_off_row_until_the_in_row_pointers_exceed_8060_bytes(sandbox: MssqlSandbox) -> None:
    """NVARCHAR(MAX) values move off-row, so 200 columns of 2,000 characters (800 KB) fit; 700 such
    columns leave 700 in-row pointers (at least 16 bytes each), beyond 8,060 bytes: that record
    fails with SQL Server's reason, the others of the batch are applied."""
    layout = sandbox.isolate(Layout())
    dest = sandbox.open(layout)
    try:
        r = SyncEngine(dest).apply_bodies([_wide(1, 200, 2000).body()])
        assert (r.applied, r.failed) == (1, 0), [f.reason for f in r.failures]
        (row,) = list(table_rows(dest, layout.entity_table("widerow")))
        assert row["c0199"] == "r" * 2000
        r = SyncEngine(dest).apply_bodies([_wide(2, 700, 100).body(), up("widerow", 3, 1, c0000="small").body()])
        assert r.conserved
        assert (r.applied, r.failed) == (1, 1), r.counts()
        assert "8060" in r.failures[0].reason, r.failures[0].reason
    finally:
        dest.close()


@pytest.mark.azure
@needs_mssql
def test_a_killed_connection_is_transient_and_the_engine_recovers(sandbox: MssqlSandbox) -> None:
    import pyodbc  # type: ignore[import-not-found]

    from shared.destinations.mssql.dialect import MssqlDestination

    layout = sandbox.isolate(Layout())
    dest = sandbox.open(layout)
    assert isinstance(dest, MssqlDestination)
    try:
        engine = SyncEngine(dest, backoff_seconds=0.1)
        assert engine.apply_bodies([up("account", 1, 1, name="a").body()]).applied == 1
        spid = dest.scalar("SELECT @@SPID")
        admin = pyodbc.connect(sandbox.conn_str, autocommit=True)
        try:
            admin.cursor().execute(f"KILL {int(spid)}")  # type: ignore[call-overload]
        except pyodbc.Error as exc:
            pytest.skip(f"this login may not KILL sessions: {exc}")
        finally:
            admin.close()
        r = engine.apply_bodies([up("account", 1, 2, name="b").body()])
        assert r.applied == 1, r.counts()
        (row,) = list(table_rows(dest, layout.entity_table("account")))
        assert row["name"] == "b"
        assert row["versionnumber"] == 2
    finally:
        dest.close()


def _raw(sandbox: MssqlSandbox, *statements: str) -> None:
    import pyodbc  # type: ignore[import-not-found]

    conn = pyodbc.connect(sandbox.conn_str, autocommit=True)
    try:
        for s in statements:
            conn.cursor().execute(s)
    finally:
        conn.close()


@pytest.mark.azure
@needs_mssql
def test_a_table_with_a_trigger_takes_upserts_and_deletes(sandbox: MssqlSandbox) -> None:
    """``OUTPUT`` without ``INTO`` fails on a table with a trigger (error 334): ours goes INTO a temp table."""
    layout = sandbox.isolate(Layout(write_delete_log=True))
    dest = sandbox.open(layout)
    table = layout.entity_table("account")
    try:
        engine = SyncEngine(dest, backoff_seconds=0)
        assert engine.apply_bodies([up("account", 1, 1, name="a").body()]).applied == 1
        trigger = f"[dbo].[{table}_audit]"
        _raw(sandbox, f"CREATE TRIGGER {trigger} ON [dbo].[{table}] AFTER INSERT, UPDATE AS SET NOCOUNT ON;")
        r = engine.apply_bodies([up("account", 1, 2, name="b").body(), up("account", 2, 1, name="c").body()])
        assert (r.applied, r.failed) == (2, 0), [f.reason for f in r.failures]
        r = engine.apply_bodies([rm("account", 2, 2).body()])
        assert (r.applied, r.failed) == (1, 0), [f.reason for f in r.failures]
        assert [row["name"] for row in table_rows(dest, table)] == ["b"]
    finally:
        dest.close()


@pytest.mark.azure
@needs_mssql
def test_an_adopted_des_table_keeps_its_types_and_skips_computed_identity_rowversion(sandbox: MssqlSandbox) -> None:
    layout = sandbox.isolate(Layout())
    table = layout.entity_table("account")
    _raw(
        sandbox,
        f"CREATE TABLE [dbo].[{table}] ([Id] UNIQUEIDENTIFIER NOT NULL PRIMARY KEY, [SinkCreatedOn] DATETIME NOT NULL, "
        "[SinkModifiedOn] DATETIME NOT NULL, [versionnumber] BIGINT NOT NULL, [name] NVARCHAR(160) NULL, "
        "[numberofemployees] INT NULL, [statecode] SMALLINT NULL, [createdon] DATETIME NULL, [revenue] MONEY NULL, "
        "[label] AS ([name] + N'!'), [seq] INT IDENTITY(1, 1) NOT NULL, [rv] ROWVERSION)",
    )
    dest = sandbox.open(layout)
    try:
        body = up("account", 1, 1, name="Contoso", numberofemployees=42, statecode=1,
                  createdon="2026-11-21T10:00:00Z", revenue=1234.5).body()  # fmt: skip
        r = SyncEngine(dest, backoff_seconds=0).apply_bodies([body, up("account", 2, 1, name="x", label="no").body()])
        assert (r.applied, r.failed) == (1, 1), [f.reason for f in r.failures]
        assert "no writable column" in r.failures[0].reason
        (row,) = list(table_rows(dest, table))
        assert (row["name"], row["label"], row["numberofemployees"]) == ("Contoso", "Contoso!", 42)
    finally:
        dest.close()


@pytest.mark.azure
@needs_mssql
def test_an_entity_named_like_the_delete_log_fails_per_record(sandbox: MssqlSandbox) -> None:
    layout = sandbox.isolate(Layout(write_delete_log=True))
    dest = sandbox.open(layout)
    try:
        r = SyncEngine(dest, backoff_seconds=0).apply_bodies(
            [up("account", 1, 1, name="a").body(), up("deletelog", 2, 1, x=1).body()]
        )
        assert (r.applied, r.failed) == (1, 1)
        assert "keeps for itself" in r.failures[0].reason
    finally:
        dest.close()
