"""Adopting a database the old DES filled: its tables and column types (int, smallint, datetime,
money, nvarchar(n), uniqueidentifier) are read and written as they are; no column changes type.
Real SQLite and PostgreSQL (SQL Server: tests/unit/test_mssql_dialect.py, recording double)."""

from __future__ import annotations

import sqlite3
import uuid
from decimal import Decimal

import psycopg
import pytest

from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from shared.engine.ports import Layout
from tests.conftest import DestinationFactory
from tests.support.model import Change

pytestmark = pytest.mark.integration

DDL = {
    "sqlite": (
        'CREATE TABLE "account" ("Id" UNIQUEIDENTIFIER NOT NULL PRIMARY KEY, "SinkCreatedOn" DATETIME NOT NULL, '
        '"SinkModifiedOn" DATETIME NOT NULL, "versionnumber" BIGINT NOT NULL, "name" NVARCHAR(160), '
        '"numberofemployees" INT, "statecode" SMALLINT, "createdon" DATETIME, "revenue" MONEY, '
        '"primarycontactid" UNIQUEIDENTIFIER)'
    ),
    "postgresql": (
        'CREATE TABLE "account" ("Id" uuid PRIMARY KEY, "SinkCreatedOn" timestamp NOT NULL, '
        '"SinkModifiedOn" timestamp NOT NULL, "versionnumber" bigint NOT NULL, "name" varchar(160), '
        '"numberofemployees" integer, "statecode" smallint, "createdon" timestamp, "revenue" numeric(19,4), '
        '"primarycontactid" uuid)'
    ),
}


def column_types(dsn: str) -> dict[str, str]:
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn[len("sqlite:///") :]) as conn:
            return {r[1]: r[2] for r in conn.execute('PRAGMA table_info("account")')}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'public.account'::regclass AND attnum > 0 AND NOT attisdropped"
        ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}


def test_an_existing_des_table_is_written_with_its_own_column_types(open_dest: DestinationFactory, dsn: str) -> None:
    dialect = "sqlite" if dsn.startswith("sqlite") else "postgresql"
    if dialect == "sqlite":
        with sqlite3.connect(dsn[len("sqlite:///") :]) as conn:
            conn.execute(DDL[dialect])
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL[dialect])  # type: ignore[arg-type]
    before = column_types(dsn)
    dest = open_dest(Layout())
    contact = str(uuid.uuid4())
    attrs = {
        "name": "Contoso",
        "numberofemployees": 42,
        "statecode": 1,
        "createdon": "2026-11-21T10:00:00Z",
        "revenue": 1234.5,
        "primarycontactid": contact,
    }
    rid = str(uuid.UUID(int=7, version=4))
    result = SyncEngine(dest, backoff_seconds=0).apply_bodies([Change("account", rid, "create", 1, attrs).body()])
    assert result.failures == []
    assert result.applied == 1
    assert column_types(dsn) == before  # nothing widened, nothing added
    (row,) = list(table_rows(dest, "account"))
    assert row["name"] == "Contoso"
    assert row["numberofemployees"] == 42
    assert row["statecode"] == 1
    assert Decimal(str(row["revenue"])) == Decimal("1234.5")
    assert str(row["primarycontactid"]).lower() == contact
    assert row["createdon"] is not None
