"""Live check of a SQLite destination: the file can be opened, a probe table created and dropped; decimal
columns an earlier version declared with NUMERIC affinity are named (they round to about 15 digits)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from shared.destinations.checks import CONNECT_TIMEOUT_S, CheckReport, Scrub, probe_name, step
from shared.destinations.sqlite.sqltext import quote
from shared.engine.ports import Layout

PREFIX = "sqlite:///"
ROUNDING_NOTICE = (
    "decimal columns of NUMERIC affinity (DECIMAL(p,s) from an earlier version, NUMERIC inferred without "
    "metadata) keep about 15 significant digits (docs/metadata.md, upgrading money columns): "
)
_ROUNDING = """
SELECT m.name, c.name FROM sqlite_schema AS m, pragma_table_info(m.name) AS c
WHERE m.type = 'table' AND (upper(c.type) LIKE 'DECIMAL(%' OR upper(c.type) LIKE 'NUMERIC%')
ORDER BY m.name, c.cid
"""


def rounding_decimal_columns(conn: sqlite3.Connection) -> list[str]:
    """``table.column`` of decimal columns with NUMERIC affinity (``DECIMAL(p,s)`` declared before
    ``DECIMAL BLOB(p,s)``, or ``NUMERIC``): SQLite turns a number of more than 15 significant digits
    into a double there."""
    return [f"{t}.{c}" for t, c in conn.execute(_ROUNDING).fetchall()]


def path_of(dsn: str) -> str | None:
    """The database file of ``sqlite:///relative.db`` / ``sqlite:////abs/path.db``; None if malformed."""
    return dsn[len(PREFIX) :] if dsn.startswith(PREFIX) else None


def check(dsn: str, layout: Layout, report: CheckReport, scrub: Scrub) -> None:
    raw = path_of(dsn)
    if raw is None:
        report.add("connect", False, "a SQLite DSN looks like sqlite:///relative.db or sqlite:////abs/path.db")
        return
    path = Path(raw)
    if layout.schema:
        report.add("schema", False, "SQLite has no schemas: leave the schema empty")
        return
    existed = path.exists()
    if not existed and not path.parent.is_dir():
        report.add("connect", False, f"directory {str(path.parent)!r} does not exist")
        return
    try:
        conn = sqlite3.connect(path, timeout=CONNECT_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        report.add("connect", False, scrub(str(exc)))
        return
    try:
        report.add("connect", True, "opened" if existed else "the database file will be created on first write")
        report.add("schema", True, "SQLite has no schemas")
        q = quote(probe_name(layout))
        conn.execute("BEGIN IMMEDIATE")
        try:
            create = f'CREATE TABLE {q} ("Id" TEXT PRIMARY KEY)'
            if not step(report, "create table", lambda: conn.execute(create), scrub):
                return
            step(report, "drop table", lambda: conn.execute(f"DROP TABLE {q}"), scrub)
        finally:
            conn.execute("ROLLBACK")
        if existed:
            rounding = rounding_decimal_columns(conn)
            if rounding:  # a notice, not a failure: the values a double holds are still stored exactly
                report.add("exact decimals", True, ROUNDING_NOTICE + ", ".join(rounding))
    except sqlite3.Error as exc:
        report.add("create table", False, scrub(str(exc)))
    finally:
        conn.close()
        if not existed and path.exists() and path.stat().st_size == 0:
            os.unlink(path)  # leave no empty file behind a mere check
