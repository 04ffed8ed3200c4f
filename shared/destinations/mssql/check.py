"""Live check of a SQL Server / Azure SQL destination: connect, the schema, a probe table (rolled back)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.destinations.checks import CheckReport, Scrub, probe_name, step
from shared.engine.ports import Layout

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "dbo"
SCHEMA_ID = "SELECT SCHEMA_ID(?)"


def check(
    dsn: str, layout: Layout, report: CheckReport, scrub: Scrub, *, connect: Callable[[], Any] | None = None
) -> None:
    from shared.destinations.mssql.connect import DsnError, connector, parse_dsn
    from shared.destinations.mssql.dialect import quote

    schema = layout.schema or DEFAULT_SCHEMA
    try:
        target = parse_dsn(dsn)
    except DsnError as exc:
        report.add("connect", False, scrub(str(exc)))
        return
    try:
        conn = (connect or connector(target))()
    except Exception as exc:
        report.add("connect", False, scrub(f"{type(exc).__name__}: {exc}"))
        return
    began = False
    try:
        report.add("connect", True, "connected")
        cur = conn.cursor()
        cur.execute("BEGIN TRANSACTION")
        began = True
        cur.execute(SCHEMA_ID, schema)
        row = cur.fetchone()
        if row is None or row[0] is None:
            if not step(report, "schema", lambda: cur.execute(f"CREATE SCHEMA {quote(schema)}"), scrub):
                return
            report.replace_last("schema", True, f"schema {schema!r} does not exist yet; it will be created")
        else:
            report.add("schema", True, f"schema {schema!r} exists")
        name = f"{quote(schema)}.{quote(probe_name(layout))}"
        create = f"CREATE TABLE {name} ([Id] uniqueidentifier PRIMARY KEY)"
        if not step(report, "create table", lambda: cur.execute(create), scrub):
            return
        step(report, "drop table", lambda: cur.execute(f"DROP TABLE {name}"), scrub)
    finally:
        try:
            if began:
                conn.cursor().execute("ROLLBACK TRANSACTION")
        except Exception as exc:
            log.debug("rollback after the destination check failed: %s", exc)
        conn.close()
