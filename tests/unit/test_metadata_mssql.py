"""The SQL Server dialect's metadata statements, without a server.

Every metadata case of tests/support/metadata_scenarios.py runs through the real engine against the
SQL Server dialect over :class:`MetadataRecordingConnection`, a **test double** (the recording
connection of tests/unit/test_mssql_dialect.py, taught the ``INT`` columns of DES's metadata
tables) that executes nothing. Every statement sent is parsed with sqlglot (dialect ``tsql``) with
no fallback to an unparsed command, its ``?`` markers match the parameters bound (per row, with an
input size each, for ``fast_executemany``), every user-supplied name is bracket-quoted, and no
label or attribute value appears in SQL text. No conclusion about behaviour is drawn from the
double's answers: behaviour is tests/integration/test_metadata.py (SQLite, PostgreSQL) and
tests/gated/test_metadata_mssql_live.py (SQL Server). Run with ``-s`` to print the parse counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlglot
from sqlglot import exp

from shared.destinations import Layout
from shared.destinations.mssql.dialect import (
    SQL_BIGINT,
    SQL_BIT,
    SQL_GUID,
    SQL_TYPE_TIMESTAMP,
    SQL_WVARCHAR,
    MssqlDestination,
    _metadata_plan,
)
from shared.engine.ports import METADATA_TABLES, MetadataRows
from tests.support.metadata_scenarios import (
    METADATA_CASES,
    MetadataCase,
    bodies_of,
    labels_of,
    run_case,
)
from tests.unit.test_mssql_dialect import RecordingConnection, RecordingCursor, ServerState, verify

pytestmark = pytest.mark.unit

PARSE_COUNTS: dict[str, int] = {}


class MetadataRecordingCursor(RecordingCursor):
    """The recording cursor (a test double), reading ``INT`` columns back as sys.columns would."""

    def _create(self, tree: exp.Create) -> None:
        if tree.args.get("kind") != "SCHEMA":
            for column in tree.this.expressions:
                if isinstance(column, exp.ColumnDef) and column.args["kind"].sql("tsql").upper() in ("INT", "INTEGER"):
                    column.set("kind", exp.DataType.build("BIGINT"))  # the double's catalog: an integer column
        super()._create(tree)


class MetadataRecordingConnection(RecordingConnection):
    def cursor(self) -> MetadataRecordingCursor:
        return MetadataRecordingCursor(self.state)


def recording(layout: Layout) -> tuple[MssqlDestination, ServerState]:
    state = ServerState()
    return MssqlDestination(lambda: MetadataRecordingConnection(state), layout, name="recording test double"), state


def _values(case: MetadataCase) -> set[str]:
    """Texts of five or more characters the case sends as values (labels and record attributes)."""
    import json

    out = {t for t in labels_of(case) if len(t.strip()) >= 5}
    for b in bodies_of(case):
        doc = json.loads(b)
        for n in doc if isinstance(doc, list) else [doc]:
            for v in (n.get("attributes") or {}).values() if isinstance(n, dict) else ():
                if isinstance(v, str) and len(v) >= 5:
                    out.add(v)
    return out


@pytest.mark.parametrize("case", METADATA_CASES, ids=[c.name for c in METADATA_CASES])
def test_every_metadata_statement_parses_as_tsql(case: MetadataCase) -> None:
    layout = case.layout("mssql")
    dest, state = recording(layout)
    results = run_case(case, dest, layout, "mssql", check=False)
    assert all(r.conserved for r in results)
    statements = sum(verify(s, case.names(layout)) for s in state.sent)
    values = _values(case)
    for s in state.sent:
        leaked = [v for v in values if v in s.sql]
        assert not leaked, f"values spliced into SQL text: {[v[:40] for v in leaked]}"
    bound = {v for s in state.sent for row in ([s.params] if s.rows is None else s.rows) for v in row}
    if case.name == "hostile_labels_and_names":  # every label went as a parameter (elsewhere some are stale)
        assert {t for t in labels_of(case) if t} <= {v for v in bound if isinstance(v, str)}
    applied_metadata = any(m > 0 for m in (r.applied for r in results)) and case.name != "unprocessable_metadata"
    created = {s.sql.split(" (")[0] for s in state.sent if s.sql.startswith("CREATE TABLE")}
    if applied_metadata:
        for t in METADATA_TABLES:
            assert f"CREATE TABLE {dest.sql.table(layout.metadata_table(t.name))}" in created
        assert f"CREATE TABLE {dest.sql.table(layout.metadata_state_table)}" in created
    else:
        assert not any("Metadata" in c for c in created)
    PARSE_COUNTS[case.name] = statements
    print(f"\nT-SQL statements parsed for metadata case {case.name}: {statements} (in {len(state.sent)} round trips)")


def _rows(entity: str = "account", version: int = 3) -> MetadataRows:
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    return MetadataRows(
        entity=entity,
        version=version,
        columns='{"name": ["text", 160, null, null]}',
        now=now,
        global_option_sets=["shared_a", "shared_b"],
        rows={
            "GlobalOptionsetMetadata": [("shared_a", 1, False, 1033, "One"), ("shared_b", 2, True, 1031, "Zwei")],
            "OptionsetMetadata": [(entity, "industrycode", 1, False, 1033, "Accounting")],
            "StateMetadata": [(entity, 0, False, 1033, "Active")],
            "StatusMetadata": [(entity, 0, 1, False, None, None)],
            "TargetMetadata": [(entity, "primarycontactid", "contact", "contactid")],
            "AttributeMetadata": [
                (entity, "name", "String", 14, version, now, "0F8FAD5B-D9CB-469F-A165-70867728950E", None, 160)
            ],
        },
    )


def test_replace_metadata_statement_shapes() -> None:
    """One transaction under the metadata applock: tables created once, rows deleted per entity (and
    per global option set name) and inserted with fast_executemany, then the version recorded."""
    layout = Layout("des", "crm")
    dest, state = recording(layout)
    state.sent.clear()  # the session settings
    assert dest.replace_metadata(_rows())
    sqls = [s.sql for s in state.sent]
    assert sqls[0] == "BEGIN TRANSACTION"
    assert sqls[-1] == "COMMIT TRANSACTION"
    locks = [s.params for s in state.sent if "sp_getapplock" in s.sql]
    assert ("des:des._metadata", 60000) in locks
    creates = [s for s in sqls if s.startswith("CREATE TABLE")]
    assert len(creates) == 1 + 6 + 1  # tombstones, six metadata tables, the version table
    assert "[des].[crm_AttributeMetadata] ([Id] BIGINT IDENTITY(1, 1) NOT NULL PRIMARY KEY" in creates[-2]
    deletes = [(s.sql, s.params) for s in state.sent if s.sql.startswith("DELETE")]
    assert ("DELETE FROM [des].[crm_GlobalOptionsetMetadata] WHERE [OptionSetName] = ?", ("shared_a",)) in deletes
    assert ("DELETE FROM [des].[crm_GlobalOptionsetMetadata] WHERE [OptionSetName] = ?", ("shared_b",)) in deletes
    assert ("DELETE FROM [des].[crm_OptionsetMetadata] WHERE [EntityName] = ?", ("account",)) in deletes
    assert len(deletes) == 2 + 5
    inserts = [s for s in state.sent if s.rows is not None]
    assert len(inserts) == 6
    assert all(s.fast for s in inserts)
    attribute = next(s for s in inserts if "AttributeMetadata" in s.sql)
    assert attribute.rows is not None
    (row,) = attribute.rows
    assert row[6] == uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")  # uniqueidentifier parameter
    assert row[5] == datetime(2026, 11, 21, 10, 0)  # DATETIME2: naive UTC
    assert state.sent[-2].sql.startswith("INSERT INTO [des].[crm__des_metadata]")
    assert state.sent[-2].params[:2] == ("account", 3)
    for s in state.sent:
        verify(s, {"des", "crm_AttributeMetadata", "Option", "Version", "Timestamp", "Precision"})
    # A second notification: the tables exist now (no CREATE, no OBJECT_ID probe).
    state.sent.clear()
    assert dest.replace_metadata(_rows("contact"))
    assert not any(s.sql.startswith(("CREATE", "SELECT OBJECT_ID")) for s in state.sent)


def test_metadata_input_sizes_and_conversions() -> None:
    rows = [("a" * 10, 1, True, 1033, "🎉x", datetime(2026, 1, 1, tzinfo=UTC), "0F8FAD5B-D9CB-469F-A165-70867728950E")]
    sizes, per_call, converted = _metadata_plan(("name", "int", "bool", "int", "text", "datetime", "guid"), rows)
    assert sizes == [
        (SQL_WVARCHAR, 10, 0),
        (SQL_BIGINT, 19, 0),
        (SQL_BIT, 1, 0),
        (SQL_BIGINT, 19, 0),
        (SQL_WVARCHAR, 3, 0),  # UTF-16 code units: the emoji takes two
        (SQL_TYPE_TIMESTAMP, 27, 7),
        (SQL_GUID, 16, 0),
    ]
    assert 1 <= per_call <= 1000
    assert converted == [
        ("a" * 10, 1, True, 1033, "🎉x", datetime(2026, 1, 1), uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"))
    ]
    # Long labels are bound as NVARCHAR(MAX) (size 0, streamed), NULLs stay NULL.
    sizes, _, converted = _metadata_plan(("text", "int"), [("x" * 5000, None)])
    assert sizes[0] == (SQL_WVARCHAR, 0, 0)
    assert converted == [("x" * 5000, None)]


def test_metadata_state_reads_nothing_before_the_table_exists() -> None:
    dest, state = recording(Layout())
    assert dest.metadata_state("account") is None
    assert [s.sql for s in state.sent][-1].startswith("SELECT OBJECT_ID")
    stmt = dest.sql.select_metadata_state()
    tree = sqlglot.parse_one(stmt, read="tsql")
    assert isinstance(tree, exp.Select)
    assert stmt == "SELECT [VersionNumber], [Columns] FROM [dbo].[_des_metadata] WHERE [EntityName] = ?"


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    if PARSE_COUNTS:
        total = sum(PARSE_COUNTS.values())
        print("\nT-SQL metadata statements parsed per case: " + ", ".join(f"{k}={v}" for k, v in PARSE_COUNTS.items()))
        print(f"total: {total}")
