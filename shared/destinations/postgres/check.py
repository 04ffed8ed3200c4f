"""Live check of a PostgreSQL destination: connect, the schema (or the right to create it), a probe table."""

from __future__ import annotations

from shared.destinations.checks import (
    CONNECT_TIMEOUT_S,
    STATEMENT_TIMEOUT_MS,
    CheckReport,
    Scrub,
    probe_name,
    step,
)
from shared.engine.ports import Layout

DEFAULT_SCHEMA = "public"


def check(dsn: str, layout: Layout, report: CheckReport, scrub: Scrub) -> None:
    import psycopg
    from psycopg import sql

    schema = layout.schema or DEFAULT_SCHEMA
    try:
        conn = psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, application_name="des-check")
    except psycopg.Error as exc:
        report.add("connect", False, scrub(str(exc)))
        return
    except Exception as exc:  # a malformed conninfo is a ProgrammingError, a bad port a ValueError
        report.add("connect", False, scrub(f"{type(exc).__name__}: {exc}"))
        return
    try:
        report.add("connect", True, f"PostgreSQL {conn.info.server_version // 10000}")
        cur = conn.cursor()
        cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT_MS)))
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        if cur.fetchone() is None:
            create = sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema))
            if not step(report, "schema", lambda: cur.execute(create), scrub):
                return
            detail = f"schema {schema!r} does not exist yet; it will be created on first write"
            report.replace_last("schema", True, detail)
        else:
            cur.execute("SELECT has_schema_privilege(current_user, %s, 'CREATE')", [schema])
            row = cur.fetchone()
            if not (row and row[0]):
                report.add("schema", False, f"the login may not create tables in schema {schema!r}")
                return
            report.add("schema", True, f"schema {schema!r} exists")
        name = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(probe_name(layout)))
        create_table = sql.SQL('CREATE TABLE {} ("Id" uuid PRIMARY KEY)').format(name)
        if not step(report, "create table", lambda: cur.execute(create_table), scrub):
            return
        step(report, "drop table", lambda: cur.execute(sql.SQL("DROP TABLE {}").format(name)), scrub)
    finally:
        try:
            conn.rollback()
        finally:
            conn.close()
