"""Live check of a profile's destination, as DES's "validate" and "test" did.

Steps, each reported by name: ``secret`` (the connection string could be had), ``connect``,
``schema`` (exists, or may be created), ``create table`` and ``drop table`` (a probe table named
``<prefix>__des_check_<random>`` in the profile's schema). Everything runs in one transaction
that is rolled back, so nothing is left behind even when a step fails half way.

Error details come from the driver, with any password of the connection string masked.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from shared.destinations import Layout

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 15_000
DETAIL_MAX = 500


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail[:DETAIL_MAX]))
        return ok

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def secrets_of(dsn: str) -> list[str]:
    """The parts of a connection string that must never be shown (passwords, tokens)."""
    found: list[str] = []
    try:
        parts = urlsplit(dsn)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for k, v in query.items():
            if re.search(r"pass|pwd|secret|token|key", k, re.I) and v:
                found.append(v)
        raw = query.get("odbc_connect")
        if raw:
            from shared.destinations.mssql.connect import parse_odbc

            found += [v for k, v in parse_odbc(raw) if k.lower() in ("pwd", "password", "accesstoken") and v]
    except ValueError:
        pass
    # Also as they may appear inside a URL (percent-encoded).
    found += [quote(s, safe="") for s in found] + [quote_plus(s, safe="") for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, dsn: str) -> str:
    for secret in secrets_of(dsn):
        text = text.replace(secret, "***")
    return text


def _probe_name(layout: Layout) -> str:
    suffix = uuid.uuid4().hex[:10]
    return f"{layout.prefix}__des_check_{suffix}" if layout.prefix else f"_des_check_{suffix}"


def check_destination(dsn: str, layout: Layout) -> CheckReport:
    """Connect, check the schema, create and drop a probe table; every step named."""
    report = CheckReport()
    scheme = dsn.split(":", 1)[0].lower() if ":" in dsn else ""
    runner: Callable[[str, Layout, CheckReport], None] | None = {
        "sqlite": _check_sqlite,
        "postgresql": _check_postgres,
        "postgres": _check_postgres,
        "mssql": _check_mssql,
        "mssql+odbc": _check_mssql,
    }.get(scheme)
    if runner is None:
        report.add("connect", False, f"unsupported destination scheme {scheme!r}")
        return report
    try:
        runner(dsn, layout, report)
    except Exception as exc:  # a driver surprise: still a named failure, never a 500
        log.warning("destination check stopped: %s", scrub(f"{type(exc).__name__}: {exc}", dsn))
        report.add("check", False, scrub(f"{type(exc).__name__}: {exc}", dsn))
    return report


# ------------------------------------------------------------------------------------- SQLite
def _check_sqlite(dsn: str, layout: Layout, report: CheckReport) -> None:
    if not dsn.startswith("sqlite:///"):
        report.add("connect", False, "a SQLite DSN looks like sqlite:///relative.db or sqlite:////abs/path.db")
        return
    path = Path(dsn[len("sqlite:///") :])
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
        report.add("connect", False, str(exc))
        return
    try:
        report.add("connect", True, "opened" if existed else "the database file will be created on first write")
        report.add("schema", True, "SQLite has no schemas")
        probe = _probe_name(layout)
        q = '"' + probe.replace('"', '""') + '"'
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _step(report, "create table", lambda: conn.execute(f'CREATE TABLE {q} ("Id" TEXT PRIMARY KEY)')):
                return
            _step(report, "drop table", lambda: conn.execute(f"DROP TABLE {q}"))
        finally:
            conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        report.add("create table", False, str(exc))
    finally:
        conn.close()
        if not existed and path.exists() and path.stat().st_size == 0:
            os.unlink(path)  # leave no empty file behind a mere check


def _step(report: CheckReport, name: str, action: Callable[[], Any], dsn: str = "") -> bool:
    try:
        action()
    except Exception as exc:
        return report.add(name, False, scrub(str(exc) or type(exc).__name__, dsn))
    return report.add(name, True, "ok")


# --------------------------------------------------------------------------------- PostgreSQL
def _check_postgres(dsn: str, layout: Layout, report: CheckReport) -> None:
    import psycopg
    from psycopg import sql

    schema = layout.schema or "public"
    try:
        conn = psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, application_name="des-check")
    except psycopg.Error as exc:
        report.add("connect", False, scrub(str(exc), dsn))
        return
    except Exception as exc:  # a malformed conninfo is a ProgrammingError, a bad port a ValueError
        report.add("connect", False, scrub(f"{type(exc).__name__}: {exc}", dsn))
        return
    try:
        report.add("connect", True, f"PostgreSQL {conn.info.server_version // 10000}")
        cur = conn.cursor()
        cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT_MS)))
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        if cur.fetchone() is None:
            ok = _step(
                report,
                "schema",
                lambda: cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema))),
                dsn,
            )
            if not ok:
                return
            report.checks[-1] = Check(
                "schema", True, f"schema {schema!r} does not exist yet; it will be created on first write"
            )
        else:
            cur.execute("SELECT has_schema_privilege(current_user, %s, 'CREATE')", [schema])
            row = cur.fetchone()
            if not (row and row[0]):
                report.add("schema", False, f"the login may not create tables in schema {schema!r}")
                return
            report.add("schema", True, f"schema {schema!r} exists")
        name = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(_probe_name(layout)))
        if not _step(
            report,
            "create table",
            lambda: cur.execute(sql.SQL('CREATE TABLE {} ("Id" uuid PRIMARY KEY)').format(name)),
            dsn,
        ):
            return
        _step(report, "drop table", lambda: cur.execute(sql.SQL("DROP TABLE {}").format(name)), dsn)
    finally:
        try:
            conn.rollback()
        finally:
            conn.close()


# --------------------------------------------------------------------------------- SQL Server
MSSQL_SCHEMA_ID = "SELECT SCHEMA_ID(?)"


def _check_mssql(dsn: str, layout: Layout, report: CheckReport, *, connect: Callable[[], Any] | None = None) -> None:
    from shared.destinations.mssql.connect import DsnError, connector, parse_dsn
    from shared.store.mssql import quote

    schema = layout.schema or "dbo"
    try:
        target = parse_dsn(dsn)
    except DsnError as exc:
        report.add("connect", False, scrub(str(exc), dsn))
        return
    try:
        conn = (connect or connector(target))()
    except Exception as exc:
        report.add("connect", False, scrub(f"{type(exc).__name__}: {exc}", dsn))
        return
    began = False
    try:
        report.add("connect", True, "connected")
        cur = conn.cursor()
        cur.execute("BEGIN TRANSACTION")
        began = True
        cur.execute(MSSQL_SCHEMA_ID, schema)
        row = cur.fetchone()
        if row is None or row[0] is None:
            if not _step(report, "schema", lambda: cur.execute(f"CREATE SCHEMA {quote(schema)}"), dsn):
                return
            report.checks[-1] = Check("schema", True, f"schema {schema!r} does not exist yet; it will be created")
        else:
            report.add("schema", True, f"schema {schema!r} exists")
        name = f"{quote(schema)}.{quote(_probe_name(layout))}"
        if not _step(
            report, "create table", lambda: cur.execute(f"CREATE TABLE {name} ([Id] uniqueidentifier PRIMARY KEY)"), dsn
        ):
            return
        _step(report, "drop table", lambda: cur.execute(f"DROP TABLE {name}"), dsn)
    finally:
        try:
            if began:
                conn.cursor().execute("ROLLBACK TRANSACTION")
        except Exception as exc:
            log.debug("rollback after the destination check failed: %s", exc)
        conn.close()
