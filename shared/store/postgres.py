"""The admin store on PostgreSQL (psycopg 3), connections pooled with psycopg_pool.

Migrations serialize on a transaction-scoped advisory lock, so several instances starting at once
apply each migration exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg_pool import ConnectionPool, PoolTimeout

from shared.destinations.redaction import redact_url
from shared.store.base import StoreUnavailable
from shared.store.sql import HISTORY, METRICS, VERSIONS, StoreDialect, history_upsert_on_conflict, upsert_on_conflict

POOL_MAX = 4
CONNECT_TIMEOUT_S = 10


class PostgresStoreDialect(StoreDialect):
    name = "postgresql"
    max_params = 60_000  # the protocol allows 65535

    def __init__(self, conninfo: str, schema: str | None = None, *, pool_max: int = POOL_MAX) -> None:
        self.conninfo = conninfo
        self.schema = schema
        try:  # fail fast with the server's own reason (the pool would retry until its timeout)
            psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the admin store {redact_url(conninfo)}: {exc}") from exc
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_max,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S, "application_name": "des-admin"},
            timeout=CONNECT_TIMEOUT_S,
            open=False,
            name="des-admin-store",
        )
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout as exc:
            self.pool.close()
            raise StoreUnavailable(f"cannot connect to the admin store {redact_url(conninfo)}: {exc}") from exc

    def describe(self) -> str:
        where = redact_url(self.conninfo)
        return f"{where} (schema {self.schema})" if self.schema else where

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def table(self, name: str) -> str:
        return f"{self.quote(self.schema)}.{self.quote(name)}" if self.schema else self.quote(name)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        try:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except PoolTimeout as exc:
            raise StoreUnavailable(f"no admin store connection available: {exc}") from exc

    @contextmanager
    def reader(self) -> Iterator[psycopg.Cursor[Any]]:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except PoolTimeout as exc:
            raise StoreUnavailable(f"no admin store connection available: {exc}") from exc

    def lock_migrations(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"des-admin-store:{self.schema or ''}"])
        if self.schema:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(self.schema)}")

    def create_version_table(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table(VERSIONS)} "
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
        )

    def metrics_upsert(self, rows: int) -> str:
        return upsert_on_conflict(self.table(METRICS), rows, "%s")

    def history_upsert(self, rows: int) -> str:
        return history_upsert_on_conflict(self.table(HISTORY), rows, "%s")

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, pgerrors.UniqueViolation)

    def is_unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout)

    def close(self) -> None:
        self.pool.close()
