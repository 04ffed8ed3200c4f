"""The store migration of Dataverse source's cursor tables) as T-SQL: parsed with sqlglot (SQL Server is not here)."""

from __future__ import annotations

import pytest
import sqlglot

from shared.store.migrations import MIGRATIONS

pytestmark = pytest.mark.unit

NAMES = {
    "profiles": "[dbo].[des_profiles]", "profiles_bare": "[dbo].[des_profiles]", "metrics": "[dbo].[des_metrics]",
    "profiles_org_index": "[des_profiles_org]", "profiles_pk": "[des_profiles_pk]",
    "profiles_name_uq": "[des_profiles_name_uq]", "metrics_pk": "[des_metrics_pk]",
    "source_cursors": "[dbo].[des_source_cursors]", "source_cursors_pk": "[des_source_cursors_pk]",
    "source_seen": "[dbo].[des_source_seen]", "source_seen_pk": "[des_source_seen_pk]",
}  # fmt: skip


def test_cursor_migration_parses_as_tsql_with_the_expected_tables() -> None:
    (m2,) = [m for m in MIGRATIONS if m.name == "Dataverse source cursors and re-sync ids"]
    tables = []
    for statement in m2.statements["mssql"]:
        tree = sqlglot.parse_one(statement.format(**NAMES), read="tsql")
        assert isinstance(tree, sqlglot.exp.Create)
        tables.append(tree.this.this.name)
        sql = tree.sql(dialect="tsql")
        assert "NVARCHAR(MAX)" in sql or "des_source_seen" in sql
        assert "PRIMARY KEY" in sql
    assert tables == ["des_source_cursors", "des_source_seen"]
    for dialect in ("sqlite", "postgresql"):
        assert len(m2.statements[dialect]) == 2
