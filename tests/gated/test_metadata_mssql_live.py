"""Entity metadata notifications on SQL Server / Azure SQL Database, when ``DES_TEST_MSSQL`` is set.

The same behavioural cases as tests/integration/test_metadata.py (SQLite and PostgreSQL), from
tests/support/metadata_scenarios.py, with the same checks after every step, against a real SQL
Server: typed columns (NVARCHAR(n), DECIMAL(38, p), DATETIME2, BIT, BIGINT, FLOAT,
UNIQUEIDENTIFIER), misfits failed with their reasons (an emoji string counted in UTF-16 code
units), lossless widening, stale versions, the six DES metadata tables replaced per entity,
hostile labels byte for byte, intersect entities, unprocessable metadata and long names.

Without ``DES_TEST_MSSQL`` (an ODBC connection string; docs/sqlserver.md shows one for the
docker-compose SQL Server) every test here is skipped with that reason. Each test works in its own
schema or table prefix of the given database and drops what it made afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shared.destinations import Layout
from shared.engine.engine import SyncEngine
from tests.gated.test_mssql_live import MSSQL_ENV, MssqlSandbox, needs_mssql
from tests.support.metadata_scenarios import METADATA_CASES, Ctx, MetadataCase, attr, body, metadata, run_case
from tests.support.scenarios import up

pytestmark = [pytest.mark.azure, needs_mssql]


@pytest.fixture
def sandbox() -> Iterator[MssqlSandbox]:
    box = MssqlSandbox(os.environ[MSSQL_ENV])
    try:
        yield box
    finally:
        box.drop()


@pytest.mark.parametrize("case", METADATA_CASES, ids=[c.name for c in METADATA_CASES])
def test_metadata_case_on_sql_server(case: MetadataCase, sandbox: MssqlSandbox) -> None:
    layout = sandbox.isolate(case.layout("mssql"))
    dest = sandbox.open(layout)
    try:
        results = run_case(case, dest, layout, "mssql", check=True)
        assert all(r.conserved for r in results)
    finally:
        dest.close()


def test_a_second_connection_sees_applied_metadata(sandbox: MssqlSandbox) -> None:
    """Another process's engine reads the applied version and the declared NVARCHAR(105) from the server."""
    layout = sandbox.isolate(Layout())
    first = sandbox.open(layout)
    second = sandbox.open(layout)
    try:
        md = body(metadata("account", 5, attr("name", "String", maxLength=105)))
        assert SyncEngine(first).apply_bodies([md]).applied == 1
        stale = body(metadata("account", 4, attr("name", "String", maxLength=300)))
        r = SyncEngine(second).apply_bodies([stale, up("account", 1, 1, name="n" * 106).body()])
        assert (r.applied, r.stale, r.failed) == (0, 1, 1), r.counts()
        assert "declared by the entity's metadata" in r.failures[0].reason
        assert Ctx("mssql", second, layout).columns("account")["name"].length == 105
    finally:
        first.close()
        second.close()
