"""connect_wal: opening a SQLite file in WAL mode while another connection holds it (several
workers starting at once on a new admin store or destination file) waits instead of failing."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from shared.sqlite_wal import connect_wal

pytestmark = pytest.mark.integration

SESSION = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def test_the_switch_to_wal_waits_for_a_connection_that_holds_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN EXCLUSIVE")  # rollback journal: nobody else can switch the file to WAL now
    with pytest.raises(sqlite3.OperationalError):  # what a plain connect-and-switch meets: busy at once
        sqlite3.connect(path, isolation_level=None, timeout=0.1).execute("PRAGMA journal_mode=WAL")
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    started = time.monotonic()
    conn = connect_wal(path, 5.0, SESSION)
    try:
        assert time.monotonic() - started >= 0.25
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
        holder.close()


def test_a_busy_file_past_the_timeout_and_other_errors_raise(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            connect_wal(path, 0.2, SESSION)
    finally:
        holder.execute("COMMIT")
        holder.close()
    started = time.monotonic()
    with pytest.raises(sqlite3.Error):
        connect_wal(str(tmp_path), 5.0, SESSION)  # a directory: not busy, so no waiting
    assert time.monotonic() - started < 1.0


def test_many_threads_open_a_new_file_at_once(tmp_path: Path) -> None:
    for round_ in range(60):  # a plain connect-and-switch fails in ~1 round of 20
        path = str(tmp_path / f"n{round_}.db")
        opened: list[sqlite3.Connection] = []
        failed: list[BaseException] = []

        def open_one(path: str = path, opened: list[sqlite3.Connection] = opened,
                     failed: list[BaseException] = failed) -> None:  # fmt: skip
            try:
                opened.append(connect_wal(path, 10.0, SESSION))
            except BaseException as exc:
                failed.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in opened:
            c.close()
        assert not failed
        assert len(opened) == 6
