"""The admin store on SQLite (standard library driver): the embedded default, one file.

One connection, shared by the threads of the process under a lock (SQLite serializes writers
anyway); WAL mode and a busy timeout let several processes (``des api`` and a function host) use
the same file. Write transactions start with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from shared.sqlite_wal import connect_wal
from shared.store.base import StoreUnavailable
from shared.store.sql import HISTORY, METRICS, StoreDialect, history_upsert_on_conflict, upsert_on_conflict

BUSY_TIMEOUT_S = 30.0
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width: text order is time order


class SqliteStoreDialect(StoreDialect):
    name = "sqlite"
    max_params = 30_000  # SQLite >= 3.32 allows 32766 per statement

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # Several workers may start at once on a new file: connect_wal waits out the switch to WAL.
            self.conn = connect_wal(self.path, BUSY_TIMEOUT_S, ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the admin store {self.path!r}: {exc}") from exc
        self._lock = threading.RLock()

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def table(self, name: str) -> str:
        return self.quote(name)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                self.conn.rollback()
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self.conn.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def lock_migrations(self, cur: sqlite3.Cursor) -> None:
        pass  # BEGIN IMMEDIATE already holds the database's write lock

    def create_version_table(self, cur: sqlite3.Cursor) -> None:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS des_store_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )

    def metrics_upsert(self, rows: int) -> str:
        return upsert_on_conflict(self.table(METRICS), rows, "?")

    def history_upsert(self, rows: int) -> str:
        return history_upsert_on_conflict(self.table(HISTORY), rows, "?")

    def ts_in(self, value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).strftime(_TS_FORMAT)

    def ts_out(self, value: object) -> datetime | None:
        if value is None:
            return None
        return datetime.strptime(str(value), _TS_FORMAT).replace(tzinfo=UTC)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc).upper()

    def is_unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "unable to open" in str(exc) or "disk I/O" in str(exc)
        )

    def close(self) -> None:
        with self._lock:
            self.conn.close()
