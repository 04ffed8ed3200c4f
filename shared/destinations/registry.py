"""Which database a DSN names, and everything that differs per database outside the write path.

One table, scheme -> :class:`DestinationFactory` (dlt's destination factories, Debezium's dialect
provider): ``open`` a destination, run the live ``check``, ``redact`` and ``describe`` a DSN
without its credentials and list its ``secrets`` (to mask driver messages). Nothing else picks a
database by scheme: the admin store (:mod:`shared.store`) builds on this table by ``dialect`` name,
so destinations never import the store.

Drivers are imported only when a factory is used, so parsing, redacting and describing DSNs works
where a driver (psycopg, pyodbc) is not installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.destinations.checks import CheckReport, Runner
from shared.destinations.redaction import (
    describe_url,
    redact_text,
    redact_url,
    redacted,
    remember,
    url_secrets,
    with_encodings,
)
from shared.engine.ports import Destination, Layout, UnsupportedDestination

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class DestinationFactory:
    """One database: its DSN schemes and what the rest of the app may do with such a DSN."""

    dialect: str  # "sqlite", "postgresql", "mssql": Destination.dialect
    schemes: tuple[str, ...]
    example: str  # a DSN form, for messages
    open: Callable[[str, Layout | None], Destination]
    check: Runner
    redact: Callable[[str], str] = redact_url
    describe: Callable[[str], str] = describe_url
    secrets: Callable[[str], list[str]] = url_secrets


# ------------------------------------------------------------------------------------ SQLite
_SQLITE_FORM = "a SQLite DSN looks like sqlite:///relative.db or sqlite:////abs/path.db"


def sqlite_path(dsn: str) -> str:
    """The file path of a ``sqlite:///`` DSN (``UnsupportedDestination`` for another form)."""
    from shared.destinations.sqlite.check import path_of

    path = path_of(dsn)
    if path is None:
        raise UnsupportedDestination(_SQLITE_FORM)
    return path


def _open_sqlite(dsn: str, layout: Layout | None) -> Destination:
    from shared.destinations.sqlite.dialect import SqliteDestination

    return SqliteDestination(sqlite_path(dsn), layout)


def _check_sqlite(dsn: str, layout: Layout, report: CheckReport, scrub: Callable[[str], str]) -> None:
    from shared.destinations.sqlite.check import check

    check(dsn, layout, report, scrub)



# -------------------------------------------------------------------------------- PostgreSQL
def _open_postgres(dsn: str, layout: Layout | None) -> Destination:
    from shared.destinations.postgres.dialect import PostgresDestination

    return PostgresDestination(dsn, layout)


def _check_postgres(dsn: str, layout: Layout, report: CheckReport, scrub: Callable[[str], str]) -> None:
    from shared.destinations.postgres.check import check

    check(dsn, layout, report, scrub)



# -------------------------------------------------------------------------------- SQL Server
def _open_mssql(dsn: str, layout: Layout | None) -> Destination:
    from shared.destinations.mssql.dialect import MssqlDestination

    return MssqlDestination.from_dsn(dsn, layout)


def _check_mssql(dsn: str, layout: Layout, report: CheckReport, scrub: Callable[[str], str]) -> None:
    from shared.destinations.mssql.check import check

    check(dsn, layout, report, scrub)



def _redact_mssql(dsn: str) -> str:
    from shared.destinations.mssql.connect import redact_dsn

    return redact_dsn(dsn)


def _describe_mssql(dsn: str) -> str:
    from shared.destinations.mssql.connect import describe_dsn

    return describe_dsn(dsn)


def _mssql_secrets(dsn: str) -> list[str]:
    from shared.destinations.mssql.connect import dsn_secrets

    return dsn_secrets(dsn)


FACTORIES: tuple[DestinationFactory, ...] = (
    DestinationFactory(
        "sqlite",
        ("sqlite",),
        "sqlite:///path.db",
        _open_sqlite,
        _check_sqlite,
        redact=lambda dsn: dsn,  # a file path carries no credential
        describe=lambda dsn: dsn,
        secrets=lambda dsn: [],
    ),
    DestinationFactory(
        "postgresql",
        ("postgresql", "postgres"),
        "postgresql://user:pw@host:port/db",
        _open_postgres,
        _check_postgres,
    ),
    DestinationFactory(
        "mssql",
        ("mssql", "mssql+odbc"),
        "mssql://user:pw@host:port/db",
        _open_mssql,
        _check_mssql,
        redact=_redact_mssql,
        describe=_describe_mssql,
        secrets=_mssql_secrets,
    ),
)
_BY_SCHEME = {scheme: f for f in FACTORIES for scheme in f.schemes}
SCHEMES: tuple[str, ...] = tuple(_BY_SCHEME)


def scheme_of(dsn: str) -> str:
    return dsn.split(":", 1)[0].lower() if ":" in dsn else ""


def find(dsn: str) -> DestinationFactory | None:
    """The factory for the DSN's scheme, or None."""
    return _BY_SCHEME.get(scheme_of(dsn))


def forms() -> str:
    """The accepted DSN forms, for messages."""
    examples = [f.example for f in FACTORIES]
    return ", ".join(examples[:-1]) + " or " + examples[-1]


def factory(dsn: str) -> DestinationFactory:
    """The factory for the DSN's scheme; :class:`UnsupportedDestination` (never quoting a secret) otherwise."""
    found = find(dsn)
    if found is None:
        raise UnsupportedDestination(
            f"unsupported destination {redact(dsn)!r}: use {forms()} (see docs/sqlserver.md)"
        )
    return found


# ------------------------------------------------------------------------- the public operations
def open_destination(dsn: str, layout: Layout | None = None) -> Destination:
    """Open the DSN's destination. Its secrets are remembered by the one redaction
    (:func:`~shared.destinations.redaction.redact_text`), and an error raised while opening comes
    out as the same class with its text redacted and without the driver's exception as its cause."""
    secrets = secrets_of(dsn)  # remembered
    try:
        return factory(dsn).open(dsn, layout)
    except Exception as exc:
        raise redacted(exc, secrets) from None


def redact(dsn: str) -> str:
    """The DSN with its secrets masked, for messages and logs (any scheme)."""
    found = find(dsn)
    secrets = secrets_of(dsn)
    try:
        text = redact_url(dsn) if found is None else found.redact(dsn)
    except ValueError:
        return f"{scheme_of(dsn)}://…"
    return redact_text(text, secrets)


def describe(dsn: str) -> str:
    """Where a DSN points, rebuilt from harmless parts only (allow-list): never a credential, also
    for a malformed DSN (checked against the DSN's secrets and the credential forms)."""
    found = find(dsn)
    scheme = scheme_of(dsn)
    generic = f"{scheme if scheme.isalnum() else '?'}://… (literal connection string; credentials hidden)"
    secrets = secrets_of(dsn)
    try:
        text = describe_url(dsn) if found is None else found.describe(dsn)
    except ValueError:
        return generic
    return text if redact_text(text, secrets) == text else generic


def secrets_of(dsn: str) -> list[str]:
    """Every secret of the DSN as it may appear in a message (plain and percent-encoded), longest
    first; remembered by the one redaction from now on."""
    found = find(dsn)
    try:
        secrets = with_encodings(url_secrets(dsn) if found is None else found.secrets(dsn))
    except ValueError:
        secrets = []
    remember(secrets)
    return secrets


def scrub(text: str, dsn: str) -> str:
    """``text`` with every secret of ``dsn`` (and every credential by its form) masked."""
    return redact_text(text, secrets_of(dsn))


def check(dsn: str, layout: Layout) -> CheckReport:
    """Run the destination's live check (connect, schema, probe table), every step named."""
    report = CheckReport()
    found = find(dsn)
    if found is None:
        report.add("connect", False, f"unsupported destination scheme {scheme_of(dsn)!r}")
        return report
    try:
        found.check(dsn, layout, report, lambda text: scrub(text, dsn))
    except Exception as exc:  # a driver surprise: still a named failure, never a 500
        detail = scrub(f"{type(exc).__name__}: {exc}", dsn)
        log.warning("destination check stopped: %s", detail)
        report.add("check", False, detail)
    return report




def dialects() -> Sequence[str]:
    return [f.dialect for f in FACTORIES]
