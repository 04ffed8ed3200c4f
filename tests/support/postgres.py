"""A real PostgreSQL server for the tests: the one in DES_TEST_POSTGRES, or Debian's local cluster.

When DES_TEST_POSTGRES is unset, the local cluster is started (``pg_ctlcluster``) and a superuser
role ``des_test`` is created through the postgres OS user (root may ``runuser``). No test double:
if no server can be had, the tests that need one fail with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV = "DES_TEST_POSTGRES"
LOCAL_DSN = "postgresql://des_test:des_test@127.0.0.1:5432/postgres"


def _run_as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", "postgres", "--"]
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, check=False, timeout=60)


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@cache
def admin_dsn() -> str:
    """A DSN with the right to create databases; starts the local cluster if needed."""
    given = os.environ.get(ENV)
    if given:
        if not _reachable(given):
            raise RuntimeError(f"{ENV} is set but PostgreSQL is not reachable there")
        return given
    if _reachable(LOCAL_DSN):
        return LOCAL_DSN
    if shutil.which("pg_ctlcluster") is None:
        raise RuntimeError(
            "PostgreSQL is needed: install Debian's postgresql package (scripts/setup.sh does) "
            f"or set {ENV} to a DSN that may create databases"
        )
    versions = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)
    version = versions[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    for _ in range(50):
        ready = _run_as_postgres("psql", "-tAc", "SELECT 1")
        if ready.returncode == 0:
            break
        time.sleep(0.2)
    _run_as_postgres(
        "psql", "-c",
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'des_test') THEN "
        "CREATE ROLE des_test LOGIN SUPERUSER PASSWORD 'des_test'; END IF; END$$;",
    )
    if not _reachable(LOCAL_DSN):
        raise RuntimeError("could not start or reach the local PostgreSQL cluster (see scripts/setup.sh)")
    return LOCAL_DSN


def _with_db(dsn: str, dbname: str) -> str:
    """The same server URL with another database (DES_TEST_POSTGRES must be a postgresql:// URL)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise RuntimeError(f"{ENV} must be a postgresql://user:password@host:port/db URL")
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@contextmanager
def fresh_database(prefix: str = "des_t") -> Iterator[str]:
    """A new, empty database; dropped afterwards (connections forced out)."""
    admin = admin_dsn()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Switch:
    """A PostgreSQL database reachable only through one role, whose access can be cut and restored."""

    dsn: str  # as the destination role
    admin: str  # superuser DSN on the same database
    role: str

    def down(self) -> None:
        """Refuse new logins of the role and end its sessions: the destination is really gone."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(self.role)))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [self.role])

    def up(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(self.role)))

    def rows(self, table: str = "account") -> dict[str, tuple[int, str | None]]:
        """Id -> (versionnumber, name) of a table in the public schema, read as the superuser."""
        with psycopg.connect(self.admin) as conn:
            query = sql.SQL('SELECT "Id"::text, "versionnumber", "name" FROM "public".{}').format(sql.Identifier(table))
            return {r[0]: (r[1], r[2]) for r in conn.execute(query).fetchall()}


@contextmanager
def switchable_database(prefix: str = "des_sw") -> Iterator[Switch]:
    """A fresh database owned by a new login role (dropped afterwards), as a :class:`Switch`."""
    role = f"{prefix}_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    try:
        with fresh_database() as admin:
            dbname = admin.rsplit("/", 1)[1]
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(role))
                )
            port = psycopg.conninfo.conninfo_to_dict(admin).get("port", 5432)
            yield Switch(f"postgresql://{role}:{password}@127.0.0.1:{port}/{dbname}", admin, role)
    finally:
        with psycopg.connect(admin_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
