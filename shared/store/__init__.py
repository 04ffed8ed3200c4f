"""The admin store: profiles and sync metrics, on SQLite (default), PostgreSQL or Azure SQL.

``open_store(dsn)`` picks the implementation by scheme, the same DSN forms as destinations:
``sqlite:///des-admin.db``, ``postgresql://user:pw@host/db``, ``mssql://...`` or
``mssql+odbc:///?odbc_connect=...`` (Azure SQL with ``Authentication=ActiveDirectoryManagedIdentity``).
Pending schema migrations are applied on open.
"""

from __future__ import annotations

from shared.destinations import redact
from shared.destinations.base import SCHEMA_RE
from shared.metrics import MetricsSink
from shared.store.base import (
    DuplicateName,
    EntityDelta,
    EntityMetrics,
    ExportStatus,
    MetricsEntry,
    ProfileExists,
    ProfileMetrics,
    ProfileNotFound,
    RevisionConflict,
    Store,
    StoredProfile,
    StoreError,
    StoreUnavailable,
)
from shared.store.sql import SqlStore

__all__ = [
    "DuplicateName",
    "EntityDelta",
    "EntityMetrics",
    "ExportStatus",
    "MetricsEntry",
    "MetricsSink",
    "ProfileExists",
    "ProfileMetrics",
    "ProfileNotFound",
    "RevisionConflict",
    "SqlStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredProfile",
    "open_store",
]


def open_store(dsn: str, *, schema: str | None = None) -> SqlStore:
    """Open (and migrate) the admin store at ``dsn``; ``schema`` for PostgreSQL and SQL Server."""
    scheme = dsn.split(":", 1)[0].lower() if ":" in dsn else ""
    if schema is not None and not SCHEMA_RE.match(schema):
        raise StoreError(f"admin store schema {schema!r} must be alphanumeric and start with a letter")
    if scheme == "sqlite":
        from shared.store.sqlite import SqliteStoreDialect

        if not dsn.startswith("sqlite:///"):
            raise StoreError("a SQLite admin store DSN looks like sqlite:///des-admin.db or sqlite:////abs/path.db")
        if schema:
            raise StoreError("SQLite has no schemas: leave the admin store schema unset")
        return SqlStore(SqliteStoreDialect(dsn[len("sqlite:///") :]))
    if scheme in ("postgresql", "postgres"):
        from shared.store.postgres import PostgresStoreDialect

        return SqlStore(PostgresStoreDialect(dsn, schema))
    if scheme in ("mssql", "mssql+odbc"):
        from shared.store.mssql import MssqlStoreDialect

        return SqlStore(MssqlStoreDialect.from_dsn(dsn, schema))
    raise StoreError(f"unsupported admin store {redact(dsn)!r}: use sqlite:///path.db, postgresql://... or mssql://...")
