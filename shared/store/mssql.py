"""The admin store on Azure SQL Database / SQL Server through pyodbc (ODBC Driver 18 in Azure).

Connections come from the SQL Server destination's connection handling
(:mod:`shared.destinations.mssql.connect`): the same DSN forms, Microsoft Entra tokens from
managed identity, login and query timeouts. A few idle connections are kept for reuse.

Sessions run with ``SET NOCOUNT ON`` and ``SET XACT_ABORT ON`` (any error rolls the whole
transaction back); a statement whose row count the store needs gets ``SELECT @@ROWCOUNT`` in the
same batch, so it stays one round trip. Migrations serialize on ``sp_getapplock``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from shared.destinations.mssql import errors as mssql_errors
from shared.destinations.mssql.connect import OdbcTarget, connector, parse_dsn, target_from_odbc
from shared.engine.ports import SCHEMA_RE
from shared.store.base import StoreError, StoreUnavailable
from shared.store.sql import HISTORY, HISTORY_COLUMNS, HISTORY_COUNTERS, METRIC_COLUMNS, METRICS, VERSIONS, StoreDialect

log = logging.getLogger(__name__)

POOL_IDLE = 4
QUERY_TIMEOUT_S = 30  # every statement of the store; a DSN's query_timeout overrides it
LOCK_TIMEOUT_MS = 60_000
SESSION = ("SET NOCOUNT ON", "SET XACT_ABORT ON")
BEGIN, COMMIT, ROLLBACK = "BEGIN TRANSACTION", "COMMIT TRANSACTION", "ROLLBACK TRANSACTION"
TRANCOUNT = "SELECT @@TRANCOUNT"
APPLOCK = (
    "DECLARE @des_lock INT; "
    "EXEC @des_lock = sp_getapplock @Resource = ?, @LockMode = N'Exclusive', "
    "@LockOwner = N'Transaction', @LockTimeout = ?; "
    "SELECT @des_lock AS [status]"
)
SCHEMA_ID = "SELECT SCHEMA_ID(?)"
OBJECT_ID = "SELECT OBJECT_ID(?, N'U')"
ROWCOUNT_SUFFIX = "; SELECT @@ROWCOUNT AS [rows]"

# Types of the metrics upsert's source columns (the VALUES rows are cast to these).
_METRIC_TYPES = {
    "profile_id": "nvarchar(36)",
    "entity": "nvarchar(128)",
    "last_export_date": "datetime2(6)",
    "last_export_status": "nvarchar(32)",
    "last_changed_on": "datetime2(6)",
}


def quote(identifier: str) -> str:
    return "[" + identifier.replace("]", "]]") + "]"


def _merge(
    table: str, rows: int, columns: Sequence[str], types: Mapping[str, str], keys: Sequence[str], sets: Sequence[str]
) -> str:
    """One MERGE (HOLDLOCK: no lost update between two inserts) of ``rows`` rows of ``columns`` on ``keys``."""
    cols = ", ".join(quote(c) for c in columns)
    one = "(" + ", ".join("?" for _ in columns) + ")"
    casts = ", ".join(f"CAST(v.{quote(c)} AS {types.get(c, 'bigint')}) AS {quote(c)}" for c in columns)
    on = " AND ".join(f"m.{quote(k)} = s.{quote(k)}" for k in keys)
    return (
        f"MERGE {table} WITH (HOLDLOCK) AS m USING (SELECT {casts} FROM (VALUES "
        + ", ".join(one for _ in range(rows))
        + f") AS v ({cols})) AS s ON {on} WHEN MATCHED THEN UPDATE SET " + ", ".join(sets)
        + f" WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ("
        + ", ".join(f"s.{quote(c)}" for c in columns) + ");"
    )  # fmt: skip


def _larger(column: str) -> str:
    """SET clause keeping the larger of the stored and the new value (NULL counts as smallest)."""
    c = quote(column)
    return f"{c} = CASE WHEN m.{c} IS NULL OR s.{c} > m.{c} THEN COALESCE(s.{c}, m.{c}) ELSE m.{c} END"


def metrics_merge(table: str, rows: int) -> str:
    """One MERGE adding ``rows`` rows of counters."""
    counters = [c for c in METRIC_COLUMNS[2:] if _METRIC_TYPES.get(c) is None]
    sets = [f"{quote(c)} = m.{quote(c)} + s.{quote(c)}" for c in counters]
    sets += [
        "[last_export_date] = COALESCE(s.[last_export_date], m.[last_export_date])",
        "[last_export_status] = COALESCE(s.[last_export_status], m.[last_export_status])",
        _larger("last_changed_on"),
    ]
    return _merge(table, rows, METRIC_COLUMNS, _METRIC_TYPES, ("profile_id", "entity"), sets)


_HISTORY_TYPES = {"profile_id": "nvarchar(36)", "entity": "nvarchar(128)", "minute": "datetime2(0)"}


def history_merge(table: str, rows: int) -> str:
    """One MERGE adding ``rows`` rows to the per-minute history (counters added, lag the larger)."""
    sets = [f"{quote(c)} = m.{quote(c)} + s.{quote(c)}" for c in HISTORY_COUNTERS]
    sets.append(_larger("lag_ms"))
    return _merge(table, rows, HISTORY_COLUMNS, _HISTORY_TYPES, ("profile_id", "entity", "minute"), sets)


class _Cursor:
    """A pyodbc cursor that reports row counts under NOCOUNT (via ``SELECT @@ROWCOUNT``)."""

    def __init__(self, cur: Any) -> None:
        self.cur = cur
        self.rowcount = -1

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        head = sql.lstrip()[:7].upper()
        if head.startswith(("UPDATE", "DELETE")):
            self.cur.execute(sql + ROWCOUNT_SUFFIX, *params) if params else self.cur.execute(sql + ROWCOUNT_SUFFIX)
            row = self.cur.fetchone()
            self.rowcount = int(row[0]) if row else -1
            return
        if params:
            self.cur.execute(sql, *params)
        else:
            self.cur.execute(sql)
        self.rowcount = self.cur.rowcount

    def fetchone(self) -> Any:
        return self.cur.fetchone()

    def fetchall(self) -> Any:
        return self.cur.fetchall()


class MssqlStoreDialect(StoreDialect):
    name = "mssql"
    max_params = 2000  # SQL Server allows 2100 parameters per request

    def __init__(
        self,
        target: OdbcTarget,
        schema: str | None = None,
        *,
        connect: Callable[[], Any] | None = None,
        pool_idle: int = POOL_IDLE,
    ) -> None:
        if schema is not None and not SCHEMA_RE.match(schema):
            raise StoreError(f"admin store schema {schema!r} must be alphanumeric and start with a letter")
        self.target = target
        self.schema = schema
        self._connect = connect or connector(target)
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=pool_idle)
        self._closed = threading.Event()

    @classmethod
    def from_dsn(cls, dsn: str, schema: str | None = None) -> MssqlStoreDialect:
        return cls(parse_dsn(dsn), schema)

    @classmethod
    def from_odbc(cls, conn_str: str, schema: str | None = None) -> MssqlStoreDialect:
        return cls(target_from_odbc(conn_str), schema)

    def describe(self) -> str:
        where = f"SQL Server ({self.target.redacted()})"
        return f"{where} schema {self.schema}" if self.schema else where

    def quote(self, identifier: str) -> str:
        return quote(identifier)

    def table(self, name: str) -> str:
        return f"{quote(self.schema)}.{quote(name)}" if self.schema else quote(name)

    # ----------------------------------------------------------------------------- connections
    def _acquire(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            conn = self._connect()
        except Exception as exc:
            raise StoreUnavailable(f"cannot connect to the admin store {self.describe()}: {exc}") from exc
        try:
            conn.timeout = self.target.query_timeout or QUERY_TIMEOUT_S  # pyodbc: SQL_ATTR_QUERY_TIMEOUT
            cur = conn.cursor()
            for statement in SESSION:
                cur.execute(statement)
            cur.close()
        except Exception as exc:  # never leak the connection whose session could not be set up
            try:
                conn.close()
            except Exception as close_exc:
                log.debug("closing an admin store connection failed: %s", close_exc)
            raise StoreUnavailable(f"cannot set up an admin store session on {self.describe()}: {exc}") from exc
        return conn

    def _release(self, conn: Any, healthy: bool) -> None:
        if healthy and not self._closed.is_set():
            try:
                self._idle.put_nowait(conn)
                return
            except queue.Full:
                pass
        try:
            conn.close()
        except Exception as exc:  # already broken
            log.debug("closing an admin store connection failed: %s", exc)

    @contextmanager
    def transaction(self) -> Iterator[_Cursor]:
        conn = self._acquire()
        healthy = True
        raw = conn.cursor()
        try:
            raw.execute(BEGIN)
            yield _Cursor(raw)
            raw.execute(COMMIT)
        except BaseException as exc:
            healthy = not self.is_unavailable(exc)
            if healthy:
                try:
                    raw.execute(TRANCOUNT)
                    row = raw.fetchone()
                    if row and row[0]:
                        raw.execute(ROLLBACK)
                except Exception as rollback_exc:
                    log.warning("admin store rollback failed, dropping the connection: %s", rollback_exc)
                    healthy = False
            raise
        finally:
            try:
                raw.close()
            except Exception:
                healthy = False
            self._release(conn, healthy)

    @contextmanager
    def reader(self) -> Iterator[_Cursor]:
        conn = self._acquire()
        healthy = True
        raw = conn.cursor()
        try:
            yield _Cursor(raw)
        except BaseException as exc:
            healthy = not self.is_unavailable(exc)
            raise
        finally:
            try:
                raw.close()
            except Exception:
                healthy = False
            self._release(conn, healthy)

    # ------------------------------------------------------------------------------ migrations
    def lock_migrations(self, cur: _Cursor) -> None:
        resource = f"des-admin-store:{(self.schema or 'default').lower()}"
        cur.execute(APPLOCK, (resource, LOCK_TIMEOUT_MS))
        row = cur.fetchone()
        status = row[0] if row else None
        if not isinstance(status, int) or status < 0:
            raise StoreUnavailable(f"sp_getapplock for the store migration returned {status}")
        if self.schema:
            cur.execute(SCHEMA_ID, (self.schema,))
            row = cur.fetchone()
            if row is None or row[0] is None:
                cur.execute(f"CREATE SCHEMA {quote(self.schema)}")

    def create_version_table(self, cur: _Cursor) -> None:
        cur.execute(OBJECT_ID, (self.table(VERSIONS),))
        row = cur.fetchone()
        if row is None or row[0] is None:
            cur.execute(
                f"CREATE TABLE {self.table(VERSIONS)} ([version] int NOT NULL PRIMARY KEY, "
                "[name] nvarchar(200) NOT NULL, [applied_at] datetime2(6) NOT NULL)"
            )

    def metrics_upsert(self, rows: int) -> str:
        return metrics_merge(self.table(METRICS), rows)

    def history_upsert(self, rows: int) -> str:
        return history_merge(self.table(HISTORY), rows)

    def ts_in(self, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC).replace(tzinfo=None)

    def is_unique_violation(self, exc: BaseException) -> bool:
        state, codes = mssql_errors.error_parts(exc)
        return state == "23000" and any(c in (2601, 2627) for c in codes)

    def is_unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, StoreUnavailable) or mssql_errors.is_transient(exc)

    def is_deadlock(self, exc: BaseException) -> bool:
        return 1205 in mssql_errors.error_parts(exc)[1]

    def close(self) -> None:
        self._closed.set()
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self._release(conn, healthy=False)
