"""Open a SQLite file in WAL mode when other threads or processes may be opening it too.

Switching a new file to WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY at once (its
busy handler does not apply) while another connection opens or switches the same file: the open is
tried again until ``timeout``. Used by the SQLite destination and the SQLite admin store.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

RETRY_PAUSE_S = 0.05


def connect_wal(path: str, timeout: float, session: Sequence[str]) -> sqlite3.Connection:
    """A connection to ``path`` (autocommit, usable from any thread) with ``session`` run on it.

    Raises the :class:`sqlite3.Error` of the last attempt: at once for anything but SQLITE_BUSY."""
    deadline = time.monotonic() + timeout
    while True:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=timeout, check_same_thread=False)
            for statement in session:
                conn.execute(statement)
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            code = getattr(exc, "sqlite_errorcode", None)
            busy = code is not None and code & 0xFF == sqlite3.SQLITE_BUSY
            if busy and isinstance(exc, sqlite3.OperationalError) and time.monotonic() < deadline:
                time.sleep(RETRY_PAUSE_S)
                continue
            raise
