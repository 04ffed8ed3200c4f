"""Post-deploy, database part: the function identity's user in Azure SQL, then the admin store's
migrations (scripts/postdeploy.sh runs this; so can an operator).

Connects as whoever is signed in (azd / az login: DefaultAzureCredential), who must be the server's
Entra admin (infra/main.bicep makes the deploying principal the admin). Settings from the azd
environment (or exported by hand): AZURE_SQL_SERVER_FQDN, AZURE_SQL_DATABASE_NAME,
AZURE_MANAGED_IDENTITY_NAME, optional DES_ADMIN_STORE_SCHEMA.

    python scripts/postdeploy_db.py              # create the user, grant, migrate
    python scripts/postdeploy_db.py --print-sql  # only print the user SQL (for the portal's query editor)

Needs pyodbc and Microsoft ODBC Driver 18 for SQL Server on this machine.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL_FILE = Path(__file__).with_name("postdeploy.sql")
# Azure resource names of user-assigned identities: letters, digits, hyphens and underscores.
IDENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,127}$")
HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,252}$")
DATABASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class PostDeployError(Exception):
    pass


def quote_identifier(name: str) -> str:
    return "[" + name.replace("]", "]]") + "]"


def quote_literal(name: str) -> str:
    return "N'" + name.replace("'", "''") + "'"


def user_statements(identity: str, template: str | None = None) -> list[str]:
    """The statements of postdeploy.sql for ``identity``, one per element (no comments)."""
    if not IDENTITY_NAME.match(identity):
        raise PostDeployError(f"{identity!r} is not a managed identity name (letters, digits, - and _)")
    text = SQL_FILE.read_text(encoding="utf-8") if template is None else template
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    rendered = body.replace("{identity_literal}", quote_literal(identity)).replace(
        "{identity}", quote_identifier(identity)
    )
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", rendered) if s.strip()]


def admin_dsn(env: Mapping[str, str]) -> str:
    """The admin store as the signed-in Entra admin sees it."""
    server = need(env, "AZURE_SQL_SERVER_FQDN", HOST_NAME)
    database = need(env, "AZURE_SQL_DATABASE_NAME", DATABASE_NAME)
    return f"mssql://{server}:1433/{database}?authentication=ActiveDirectoryDefault&encrypt=yes"


def need(env: Mapping[str, str], name: str, shape: re.Pattern[str]) -> str:
    value = (env.get(name) or "").strip()
    if not value:
        raise PostDeployError(f"{name} is not set (azd env get-values has it after azd provision)")
    if not shape.match(value):
        raise PostDeployError(f"{name}={value!r} does not look like one")
    return value


def run(env: Mapping[str, str]) -> None:
    sys.path.insert(0, str(ROOT))
    from shared.destinations.mssql.connect import connector, parse_dsn
    from shared.store import open_store

    identity = need(env, "AZURE_MANAGED_IDENTITY_NAME", IDENTITY_NAME)
    dsn = admin_dsn(env)
    conn = connector(parse_dsn(dsn))()
    try:
        cur = conn.cursor()
        for statement in user_statements(identity):
            cur.execute(statement)
    finally:
        conn.close()
    print(f"database user {identity}: present, with db_datareader, db_datawriter, db_ddladmin")
    store = open_store(dsn, schema=(env.get("DES_ADMIN_STORE_SCHEMA") or "").strip() or None)
    try:
        print(f"admin store migrated: {store.d.describe()}")
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--print-sql", action="store_true", help="print the user SQL and exit")
    args = ap.parse_args(argv)
    try:
        if args.print_sql:
            identity = need(os.environ, "AZURE_MANAGED_IDENTITY_NAME", IDENTITY_NAME)
            print(";\n".join(user_statements(identity)) + ";")
            return 0
        run(os.environ)
    except PostDeployError as exc:
        print(f"postdeploy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
