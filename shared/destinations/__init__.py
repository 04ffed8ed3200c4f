"""Destination dialects, chosen by DSN scheme: ``sqlite:///path.db``, ``postgresql://...``, ``mssql://...``."""

from __future__ import annotations

from urllib.parse import urlsplit

from shared.destinations.base import (
    ConnectionFailed,
    Destination,
    DestinationError,
    Layout,
    LayoutError,
    TransientDestinationError,
)

__all__ = [
    "ConnectionFailed",
    "Destination",
    "DestinationError",
    "Layout",
    "LayoutError",
    "TransientDestinationError",
    "UnsupportedDestination",
    "open_destination",
    "redact",
]


class UnsupportedDestination(ValueError):
    pass


def redact(dsn: str) -> str:
    """The DSN with any password removed, for messages and logs."""
    if dsn.lower().startswith(("mssql:", "mssql+odbc:")):
        from shared.destinations.mssql.connect import redact_dsn

        return redact_dsn(dsn)
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return dsn


def open_destination(dsn: str, layout: Layout | None = None) -> Destination:
    scheme = dsn.split(":", 1)[0].lower() if ":" in dsn else ""
    if scheme == "sqlite":
        from shared.destinations.sqlite.dialect import SqliteDestination

        if not dsn.startswith("sqlite:///"):
            raise UnsupportedDestination("a SQLite DSN looks like sqlite:///relative.db or sqlite:////abs/path.db")
        return SqliteDestination(dsn[len("sqlite:///") :], layout)
    if scheme in ("postgresql", "postgres"):
        from shared.destinations.postgres.dialect import PostgresDestination

        return PostgresDestination(dsn, layout)
    if scheme in ("mssql", "mssql+odbc"):
        from shared.destinations.mssql.dialect import MssqlDestination

        return MssqlDestination.from_dsn(dsn, layout)
    raise UnsupportedDestination(
        f"unsupported destination {redact(dsn)!r}: use sqlite:///path.db, postgresql://user:pw@host:port/db "
        "or mssql://user:pw@host:port/db (see docs/sqlserver.md)"
    )
