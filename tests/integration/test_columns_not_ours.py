"""Columns this app did not create: generated (computed) and identity columns are never written (a
record naming one fails alone, with the reason); an operator's NOT NULL column without a default
gives each record a clear failure. Real SQLite and PostgreSQL (SQL Server: the recording double)."""

from __future__ import annotations

import sqlite3
import uuid

import psycopg
import pytest

from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from shared.engine.ports import Layout
from tests.conftest import DestinationFactory
from tests.support.model import Change

pytestmark = pytest.mark.integration

SYSTEM = {
    "sqlite": '"Id" TEXT PRIMARY KEY, "SinkCreatedOn" TEXT NOT NULL, "SinkModifiedOn" TEXT NOT NULL, '
    '"versionnumber" INTEGER NOT NULL, "name" TEXT',
    "postgresql": '"Id" uuid PRIMARY KEY, "SinkCreatedOn" timestamptz NOT NULL, "SinkModifiedOn" timestamptz NOT NULL, '
    '"versionnumber" bigint NOT NULL, "name" text',
}


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def create(dsn: str, extra: str) -> None:
    dialect = "sqlite" if dsn.startswith("sqlite") else "postgresql"
    ddl = f'CREATE TABLE "account" ({SYSTEM[dialect]}, {extra})'
    if dialect == "sqlite":
        with sqlite3.connect(dsn[len("sqlite:///") :]) as conn:
            conn.execute(ddl)
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ddl)  # type: ignore[arg-type]


def test_generated_and_identity_columns_are_never_written(open_dest: DestinationFactory, dsn: str) -> None:
    sqlite = dsn.startswith("sqlite")
    extra = "\"label\" TEXT GENERATED ALWAYS AS (\"name\" || '!') STORED"
    if not sqlite:
        extra += ', "seq" bigint GENERATED ALWAYS AS IDENTITY'
    create(dsn, extra)
    dest = open_dest(Layout())
    engine = SyncEngine(dest, backoff_seconds=0)
    bodies = [
        Change("account", rid(1), "create", 1, {"name": "a"}).body(),
        Change("account", rid(2), "create", 1, {"name": "b", "label": "mine"}).body(),
        Change("account", rid(3), "create", 1, {"name": "c", "phone": "1"}).body(),
    ]
    result = engine.apply_bodies(bodies)
    assert result.conserved
    assert (result.applied, result.failed) == (2, 1)
    (failure,) = result.failures
    assert failure.record_id == rid(2)
    assert "no writable column" in failure.reason
    rows = {str(r["Id"]): r for r in table_rows(dest, "account")}
    assert {k: r["label"] for k, r in rows.items()} == {rid(1): "a!", rid(3): "c!"}
    assert rows[rid(3)]["phone"] == "1"  # our own new column next to them
    # Updates leave them alone too.
    result = engine.apply_bodies([Change("account", rid(1), "update", 2, {"name": "z"}).body()])
    assert result.applied == 1
    assert {str(r["Id"]): r["label"] for r in table_rows(dest, "account")}[rid(1)] == "z!"


def test_a_not_null_column_without_a_value_is_a_clear_record_failure(open_dest: DestinationFactory, dsn: str) -> None:
    create(dsn, '"region" TEXT NOT NULL')
    dest = open_dest(Layout())
    result = SyncEngine(dest, backoff_seconds=0).apply_bodies(
        [
            Change("account", rid(1), "create", 1, {"name": "a"}).body(),
            Change("account", rid(2), "create", 1, {"name": "b", "region": "north"}).body(),
            Change("contact", rid(3), "create", 1, {"name": "c"}).body(),
        ]
    )
    assert result.conserved
    assert (result.applied, result.failed) == (2, 1)
    (failure,) = result.failures
    assert failure.record_id == rid(1)
    assert "region" in failure.reason
    assert "null" in failure.reason.lower()


def run_sql(dsn: str, statement: str) -> None:
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn[len("sqlite:///") :]) as conn:
            conn.execute(statement)
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]


def test_an_operators_own_column_is_never_written(open_dest: DestinationFactory, dsn: str) -> None:
    """Once set to NULL by every full-state update (the upsert wrote every catalog column)."""
    dest = open_dest(Layout())
    engine = SyncEngine(dest, backoff_seconds=0)
    first = Change("account", rid(1), "create", 1, {"name": "a", "phone": "1"})
    assert engine.apply_bodies([first.body()]).applied == 1
    run_sql(dsn, 'ALTER TABLE "account" ADD COLUMN "notes" TEXT')
    run_sql(dsn, """UPDATE "account" SET "notes" = 'keep me'""")
    for fresh in (False, True):  # the same process, and a new one (cold catalog)
        eng = SyncEngine(open_dest(Layout()), backoff_seconds=0) if fresh else engine
        version = 3 if fresh else 2
        result = eng.apply_bodies(
            [
                Change("account", rid(1), "update", version, {"name": f"v{version}"}).body(),  # phone now absent
                Change("account", rid(2), "create", 1, {"name": "b", "notes": "mine"}).body(),
            ]
        )
        assert result.conserved
        assert result.applied == 1
        assert {f.record_id for f in result.failures} == {rid(2)}
        assert "no writable column" in result.failures[0].reason
        (row,) = [r for r in table_rows(dest, "account") if str(r["Id"]) == rid(1)]
        assert row["notes"] == "keep me"  # theirs: untouched
        assert row["phone"] is None  # ours: the row is the full state
        assert row["name"] == f"v{version}"
