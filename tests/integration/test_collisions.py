"""Entity tables never collide with internal tables or reserved names, and a table that is not an
entity table is never adopted. Real SQLite and PostgreSQL: names are compared the way each database
compares them (SQLite folds ASCII case; PostgreSQL, with every name quoted, compares exactly).
"""

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


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def up(entity: str, i: int, version: int = 1, **attrs: object) -> str:
    return Change(entity, rid(i), "update", version, attrs).body()  # type: ignore[arg-type]


def rm(entity: str, i: int, version: int) -> str:
    return Change(entity, rid(i), "delete", version).body()


def run_sql(dsn: str, *statements: str) -> None:
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn[len("sqlite:///") :]) as conn:
            for s in statements:
                conn.execute(s)
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for s in statements:
                conn.execute(s)  # type: ignore[arg-type]


@pytest.mark.parametrize(("prefix", "entity"), [("", "deletelog"), ("p", "deletelog"), ("", "optionsetmetadata")])
def test_an_entity_named_like_an_internal_table(
    open_dest: DestinationFactory, dsn: str, prefix: str, entity: str
) -> None:
    """On SQLite ``deletelog`` is the table ``DeleteLog``: once adopted, every later delete failed."""
    layout = Layout(prefix=prefix, write_delete_log=True)
    dest = open_dest(layout)
    engine = SyncEngine(dest, backoff_seconds=0)
    result = engine.apply_bodies([up("account", 1, name="a"), up(entity, 2, x=1), up(entity, 3, x=2)])
    assert result.conserved
    collides = dest.dialect == "sqlite"
    assert result.applied == (1 if collides else 3)
    if collides:
        assert {f.record_id for f in result.failures} == {rid(2), rid(3)}
        assert all("keeps for itself" in f.reason for f in result.failures)
    # Deletes (and the delete log) keep working either way.
    result = engine.apply_bodies([rm("account", 1, 2)])
    assert (result.applied, result.failed) == (1, 0)
    logged = [r for r in table_rows(dest, layout.delete_log_table) if r["EntityName"] == "account"]
    assert [str(r["RecordId"]) for r in logged] == [rid(1)]


def test_reserved_sqlite_names_fail_per_record_and_the_batch_goes_on(open_dest: DestinationFactory, dsn: str) -> None:
    """``sqlite_stat1`` once aborted the whole batch on SQLite (replay exited 1)."""
    dest = open_dest()
    if dest.dialect == "sqlite":
        run_sql(dsn, "CREATE TABLE t (x)", "CREATE INDEX tx ON t (x)", "INSERT INTO t VALUES (1)", "ANALYZE")
    engine = SyncEngine(dest, backoff_seconds=0)
    bodies = [up("account", 1, name="a"), up("sqlite_stat1", 2, tbl="x"), up("sqlite_master", 3, x=1)]
    result = engine.apply_bodies(bodies)
    assert result.conserved
    if dest.dialect == "sqlite":
        assert result.applied == 1
        assert {f.record_id: f.reason for f in result.failures}.keys() == {rid(2), rid(3)}
        assert all("reserves for its own tables" in f.reason for f in result.failures)
        stat = list(table_rows(dest, "sqlite_stat1"))
        assert stat
        assert all("Id" not in r for r in stat)  # SQLite's own table, untouched
    else:
        assert result.applied == 3  # ordinary names on PostgreSQL


@pytest.mark.parametrize(
    "ddl",
    [
        'CREATE TABLE "account" ("id" integer PRIMARY KEY, "name" text)',
        'CREATE TABLE "account" ("Id" text, "name" text)',  # an Id that is not the key
        'CREATE TABLE "account" ("Id" text PRIMARY KEY, "name" text)',  # no version or sink columns
    ],
)
def test_a_table_that_is_not_an_entity_table_is_never_adopted(
    open_dest: DestinationFactory, dsn: str, ddl: str
) -> None:
    key = "1" if "integer" in ddl else "'k'"
    run_sql(dsn, ddl, f"""INSERT INTO "account" ("{'id' if key == '1' else 'Id'}", "name") VALUES ({key}, 'theirs')""")
    dest = open_dest()
    before = list(table_rows(dest, "account"))
    engine = SyncEngine(dest, backoff_seconds=0)
    result = engine.apply_bodies([up("account", 1, name="a", extra=1), up("contact", 2, name="c"), rm("account", 3, 1)])
    assert result.conserved
    assert (result.applied, result.failed) == (1, 2)
    assert all("not an entity table" in f.reason or "without the columns" in f.reason for f in result.failures)
    after = list(table_rows(dest, "account"))
    assert after == before  # no row written, and no column added
    assert set(after[0]) == set(before[0])
    assert [r["name"] for r in table_rows(dest, "contact")] == ["c"]


def test_an_existing_entity_table_with_our_key_is_adopted(open_dest: DestinationFactory, dsn: str) -> None:
    sqlite = dsn.startswith("sqlite")
    guid, ts = ("TEXT", "TEXT") if sqlite else ("uuid", "timestamp with time zone")
    run_sql(
        dsn,
        f'CREATE TABLE "account" ("Id" {guid} PRIMARY KEY, "SinkCreatedOn" {ts} NOT NULL, '
        f'"SinkModifiedOn" {ts} NOT NULL, "versionnumber" bigint NOT NULL, "name" text)',
    )
    dest = open_dest()
    result = SyncEngine(dest, backoff_seconds=0).apply_bodies([up("account", 1, name="a")])
    assert (result.applied, result.failed) == (1, 0)
    assert [r["name"] for r in table_rows(dest, "account")] == ["a"]
