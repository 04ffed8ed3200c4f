"""The admin store: profiles and sync metrics, on SQLite (default), PostgreSQL or Azure SQL.

``open_store(dsn)`` picks the implementation by scheme, the same DSN forms as destinations:
``sqlite:///des-admin.db``, ``postgresql://user:pw@host/db``, ``mssql://...`` or
``mssql+odbc:///?odbc_connect=...`` (Azure SQL with ``Authentication=ActiveDirectoryManagedIdentity``).
Pending schema migrations are applied on open.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.destinations import registry
from shared.engine.ports import SCHEMA_RE, UnsupportedDestination
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
from shared.store.sql import SqlStore, StoreDialect

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
    """Open (and migrate) the admin store at ``dsn``; ``schema`` for PostgreSQL and SQL Server.

    The database is picked by the destination registry (the same DSN forms as destinations).
    """
    if schema is not None and not SCHEMA_RE.match(schema):
        raise StoreError(f"admin store schema {schema!r} must be alphanumeric and start with a letter")
    if registry.find(dsn) is None:
        raise StoreError(
            f"unsupported admin store {registry.redact(dsn)!r}: use sqlite:///path.db, postgresql://... or mssql://..."
        )
    try:
        dialect = _DIALECTS[registry.factory(dsn).dialect](dsn, schema)
    except UnsupportedDestination as exc:
        raise StoreError(f"admin store: {exc}") from exc
    return SqlStore(dialect)


def _sqlite(dsn: str, schema: str | None) -> StoreDialect:
    from shared.store.sqlite import SqliteStoreDialect

    path = registry.sqlite_path(dsn)
    if schema:
        raise UnsupportedDestination("SQLite has no schemas: leave the admin store schema unset")
    return SqliteStoreDialect(path)


def _postgres(dsn: str, schema: str | None) -> StoreDialect:
    from shared.store.postgres import PostgresStoreDialect

    return PostgresStoreDialect(dsn, schema)


def _mssql(dsn: str, schema: str | None) -> StoreDialect:
    from shared.store.mssql import MssqlStoreDialect

    return MssqlStoreDialect.from_dsn(dsn, schema)


# The admin store's dialect per destination dialect (the registry's ``DestinationFactory.dialect``).
_DIALECTS: dict[str, Callable[[str, str | None], StoreDialect]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "mssql": _mssql,
}
