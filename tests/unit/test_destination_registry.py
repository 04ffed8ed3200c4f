"""The destination registry: one scheme -> factory table used by every caller that picks a database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.destinations import registry
from shared.destinations.inspect import table_rows
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.engine.ports import Layout, UnsupportedDestination
from shared.store import StoreError, open_store

ROOT = Path(__file__).resolve().parents[2] / "shared"


def test_every_scheme_has_exactly_one_factory() -> None:
    schemes = [s for f in registry.FACTORIES for s in f.schemes]
    assert len(schemes) == len(set(schemes))
    assert set(registry.SCHEMES) == {"sqlite", "postgresql", "postgres", "mssql", "mssql+odbc"}
    assert registry.factory("POSTGRESQL://u@h/db").dialect == "postgresql"
    assert registry.factory("mssql+odbc:///?odbc_connect=x").dialect == "mssql"


def test_open_destination_by_scheme(tmp_path: Path) -> None:
    dest = registry.open_destination(f"sqlite:///{tmp_path / 'd.db'}", Layout(prefix="p"))
    try:
        assert isinstance(dest, SqliteDestination)
        assert dest.dialect == "sqlite"
        assert dest.layout.prefix == "p"
    finally:
        dest.close()


def test_unsupported_scheme_names_the_forms_and_hides_the_password() -> None:
    with pytest.raises(UnsupportedDestination) as info:
        registry.open_destination("oracle://scott:tiger-Pw@db/orcl")
    message = str(info.value)
    assert "tiger-Pw" not in message
    assert "sqlite:///path.db" in message
    assert "postgresql://" in message
    assert "mssql://" in message
    with pytest.raises(UnsupportedDestination, match=r"sqlite:///relative\.db"):
        registry.open_destination("sqlite://relative.db")


passwords = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=6, max_size=30).filter(
    lambda p: p.strip() == p and not any(c in p for c in "@/?#[]:")
)


@settings(max_examples=60, deadline=None)
@given(password=passwords)
def test_no_view_of_a_dsn_carries_its_password(password: str) -> None:
    from urllib.parse import quote

    password = "Zq9" + password  # a marker no description or message text can contain by chance
    encoded = quote(password, safe="")
    odbc_braced = password.replace("}", "}}")  # a braced ODBC value doubles its closing braces
    dsns = [
        f"postgresql://alice:{encoded}@db.example:5432/sales",
        f"mssql://alice:{encoded}@sql.example:1433/sales?encrypt=yes",
        "mssql+odbc:///?odbc_connect=" + quote(f"Server=sql.example;Database=sales;UID=alice;PWD={{{odbc_braced}}};"),
    ]
    for dsn in dsns:
        for view in (registry.redact(dsn), registry.describe(dsn), registry.scrub(f"login failed: {dsn}", dsn)):
            assert password not in view, (dsn, view)
            assert encoded not in view, (dsn, view)


def test_live_check_of_sqlite_runs_the_dialects_steps(tmp_path: Path) -> None:
    report = registry.check(f"sqlite:///{tmp_path / 'c.db'}", Layout(prefix="x"))
    assert [(c.name, c.ok) for c in report.checks] == [
        ("connect", True),
        ("schema", True),
        ("create table", True),
        ("drop table", True),
    ]
    assert not (tmp_path / "c.db").exists()  # nothing left behind
    bad = registry.check("db2://u:pw@h/x", Layout())
    assert not bad.ok
    assert "unsupported destination scheme 'db2'" in bad.checks[0].detail


def test_admin_store_dialect_comes_from_the_registry(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'admin.db'}")
    try:
        assert store.dialect == "sqlite"
    finally:
        store.close()
    with pytest.raises(StoreError, match="no schemas"):
        open_store(f"sqlite:///{tmp_path / 'admin2.db'}", schema="des")
    with pytest.raises(StoreError, match="unsupported admin store"):
        open_store("oracle://scott:tiger@db/orcl")


def test_table_rows_is_an_inspection_helper_not_part_of_the_port(tmp_path: Path) -> None:
    from shared.engine import ports

    assert not hasattr(ports.Destination, "table_rows")
    with pytest.raises(TypeError, match="cannot read tables back"):
        list(table_rows(object(), "account"))


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_engine_never_imports_a_destination() -> None:
    for path in (ROOT / "engine").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("shared.destinations")}, path


SCHEME_NAMES = {"sqlite", "postgres", "postgresql", "mssql", "mssql+odbc"}


def test_only_the_registry_picks_a_database_by_scheme() -> None:
    """No comparison of a DSN's scheme with a database's scheme outside the registry (and outside the
    SQL Server dialect's own parsing of its two DSN forms)."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.name == "registry.py" or path.parent.name == "mssql":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                consts = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in SCHEME_NAMES]
                if consts:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value in ("postgres", "mssql+odbc") for k in node.keys
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
