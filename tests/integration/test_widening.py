"""Widen only on evidence: with a cold catalog (a new process), types are decided against the table
as it is, so a short string never widens a bounded text column (once: NVARCHAR(160) -> MAX, a
whole-table rewrite). A value that does not fit still widens it. Real SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import uuid

import psycopg
import pytest

from shared.destinations.inspect import table_rows
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.engine import SyncEngine
from shared.engine.ports import Layout
from tests.conftest import DestinationFactory
from tests.support.model import Change

pytestmark = pytest.mark.integration


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def declared(dsn: str) -> str:
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn[len("sqlite:///") :]) as conn:
            return next(str(r[2]) for r in conn.execute('PRAGMA table_info("account")') if r[1] == "name")
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'public.account'::regclass AND attname = 'name'"
        ).fetchone()
        assert row is not None
        return str(row[0])


def test_a_cold_catalog_never_widens_a_bounded_column_for_a_value_that_fits(
    open_dest: DestinationFactory, dsn: str
) -> None:
    first = open_dest(Layout())
    first.ensure_table("account", {"name": ColumnType(Kind.TEXT, 160)})
    bounded = declared(dsn)
    assert "160" in bounded
    # A new process: nothing cached, no metadata state (as after adopting a DES database).
    dest = open_dest(Layout())
    engine = SyncEngine(dest, backoff_seconds=0)
    result = engine.apply_bodies([Change("account", rid(1), "create", 1, {"name": "short"}).body()])
    assert (result.applied, result.failed) == (1, 0)
    assert declared(dsn) == bounded
    # Evidence: a value that does not fit widens it.
    result = SyncEngine(open_dest(Layout()), backoff_seconds=0).apply_bodies(
        [Change("account", rid(2), "create", 1, {"name": "x" * 200}).body()]
    )
    assert (result.applied, result.failed) == (1, 0)
    assert "160" not in declared(dsn)
    assert sorted(len(str(r["name"])) for r in table_rows(dest, "account")) == [5, 200]
