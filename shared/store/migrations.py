"""Versioned schema migrations of the admin store, applied on start.

Each migration has a version (1, 2, ...) and its statements per dialect. ``des_store_version``
records what was applied; :meth:`shared.store.sql.SqlStore.migrate` applies the missing ones in
order, each in the transaction that records it, under a lock that keeps concurrent starts (several
function instances) from applying one twice. A store whose version is newer than this code knows
is refused with a clear error (an older build must not write to a newer schema).

Never edit a released migration: add the next one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    # dialect -> statements; ``{profiles}``, ``{metrics}``, ``{history}`` stand for the qualified table names.
    statements: Mapping[str, Sequence[str]]


_V1_SQLITE = [
    """CREATE TABLE {profiles} (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL UNIQUE,
        organization_id TEXT NOT NULL,
        state TEXT NOT NULL,
        definition TEXT NOT NULL,
        revision INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX {profiles_org_index} ON {profiles_bare} (organization_id, state)",
    """CREATE TABLE {metrics} (
        profile_id TEXT NOT NULL,
        entity TEXT NOT NULL,
        total INTEGER NOT NULL DEFAULT 0,
        success INTEGER NOT NULL DEFAULT 0,
        failure INTEGER NOT NULL DEFAULT 0,
        stale INTEGER NOT NULL DEFAULT 0,
        unprocessable INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        pending_retry INTEGER NOT NULL DEFAULT 0,
        last_export_date TEXT,
        last_export_status TEXT,
        last_changed_on TEXT,
        initial_sync_state TEXT NOT NULL DEFAULT 'NotStarted',
        PRIMARY KEY (profile_id, entity)
    )""",
]

_V1_POSTGRES = [
    """CREATE TABLE {profiles} (
        id varchar(36) PRIMARY KEY,
        name varchar(200) NOT NULL,
        name_key varchar(200) NOT NULL UNIQUE,
        organization_id varchar(36) NOT NULL,
        state varchar(16) NOT NULL,
        definition text NOT NULL,
        revision integer NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    )""",
    "CREATE INDEX {profiles_org_index} ON {profiles} (organization_id, state)",
    """CREATE TABLE {metrics} (
        profile_id varchar(36) NOT NULL,
        entity varchar(128) NOT NULL,
        total bigint NOT NULL DEFAULT 0,
        success bigint NOT NULL DEFAULT 0,
        failure bigint NOT NULL DEFAULT 0,
        stale bigint NOT NULL DEFAULT 0,
        unprocessable bigint NOT NULL DEFAULT 0,
        skipped bigint NOT NULL DEFAULT 0,
        pending_retry bigint NOT NULL DEFAULT 0,
        last_export_date timestamptz,
        last_export_status varchar(32),
        last_changed_on timestamptz,
        initial_sync_state varchar(32) NOT NULL DEFAULT 'NotStarted',
        PRIMARY KEY (profile_id, entity)
    )""",
]

_V1_MSSQL = [
    """CREATE TABLE {profiles} (
        id nvarchar(36) NOT NULL CONSTRAINT {profiles_pk} PRIMARY KEY,
        name nvarchar(200) NOT NULL,
        name_key nvarchar(200) NOT NULL CONSTRAINT {profiles_name_uq} UNIQUE,
        organization_id nvarchar(36) NOT NULL,
        state nvarchar(16) NOT NULL,
        definition nvarchar(max) NOT NULL,
        revision int NOT NULL,
        created_at datetime2(6) NOT NULL,
        updated_at datetime2(6) NOT NULL
    )""",
    "CREATE INDEX {profiles_org_index} ON {profiles} (organization_id, state)",
    """CREATE TABLE {metrics} (
        profile_id nvarchar(36) NOT NULL,
        entity nvarchar(128) NOT NULL,
        total bigint NOT NULL DEFAULT 0,
        success bigint NOT NULL DEFAULT 0,
        failure bigint NOT NULL DEFAULT 0,
        stale bigint NOT NULL DEFAULT 0,
        unprocessable bigint NOT NULL DEFAULT 0,
        skipped bigint NOT NULL DEFAULT 0,
        pending_retry bigint NOT NULL DEFAULT 0,
        last_export_date datetime2(6) NULL,
        last_export_status nvarchar(32) NULL,
        last_changed_on datetime2(6) NULL,
        initial_sync_state nvarchar(32) NOT NULL DEFAULT 'NotStarted',
        CONSTRAINT {metrics_pk} PRIMARY KEY (profile_id, entity)
    )""",
]

# Version 2: the per-minute metrics history the console's charts read (one row per profile, entity
# and UTC minute; pruned after shared.store.base.HISTORY_RETENTION).
_V2_SQLITE = [
    """CREATE TABLE {history} (
        profile_id TEXT NOT NULL,
        entity TEXT NOT NULL,
        minute TEXT NOT NULL,
        total INTEGER NOT NULL DEFAULT 0,
        success INTEGER NOT NULL DEFAULT 0,
        failure INTEGER NOT NULL DEFAULT 0,
        stale INTEGER NOT NULL DEFAULT 0,
        unprocessable INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        lag_ms INTEGER,
        PRIMARY KEY (profile_id, entity, minute)
    )""",
    "CREATE INDEX {history_minute_index} ON {history} (minute)",
]

_V2_POSTGRES = [
    """CREATE TABLE {history} (
        profile_id varchar(36) NOT NULL,
        entity varchar(128) NOT NULL,
        minute timestamptz NOT NULL,
        total bigint NOT NULL DEFAULT 0,
        success bigint NOT NULL DEFAULT 0,
        failure bigint NOT NULL DEFAULT 0,
        stale bigint NOT NULL DEFAULT 0,
        unprocessable bigint NOT NULL DEFAULT 0,
        skipped bigint NOT NULL DEFAULT 0,
        lag_ms bigint,
        PRIMARY KEY (profile_id, entity, minute)
    )""",
    "CREATE INDEX {history_minute_index} ON {history} (minute)",
]

_V2_MSSQL = [
    """CREATE TABLE {history} (
        profile_id nvarchar(36) NOT NULL,
        entity nvarchar(128) NOT NULL,
        minute datetime2(0) NOT NULL,
        total bigint NOT NULL DEFAULT 0,
        success bigint NOT NULL DEFAULT 0,
        failure bigint NOT NULL DEFAULT 0,
        stale bigint NOT NULL DEFAULT 0,
        unprocessable bigint NOT NULL DEFAULT 0,
        skipped bigint NOT NULL DEFAULT 0,
        lag_ms bigint NULL,
        CONSTRAINT {history_pk} PRIMARY KEY (profile_id, entity, minute)
    )""",
    "CREATE INDEX {history_minute_index} ON {history} (minute)",
]


# v3: the Dataverse source's cursor per (profile, entity) and the ids a re-sync has read
# (shared/source/dataverse/cursors.py, docs/dataverse.md).
_CURSOR_COLUMNS = {
    "sqlite": ("TEXT", "TEXT", "INTEGER", "TEXT", "TEXT"),
    "postgresql": ("varchar(128)", "text", "bigint", "timestamptz", "varchar(36)"),
    "mssql": ("nvarchar(128)", "nvarchar(max)", "bigint", "datetime2(6)", "nvarchar(36)"),
}


def _v3(dialect: str) -> list[str]:
    name, text, big, ts, key = _CURSOR_COLUMNS[dialect]
    return [
        f"""CREATE TABLE {{source_cursors}} (
        profile_id {key} NOT NULL,
        entity {name} NOT NULL,
        phase {name} NOT NULL,
        link {text} NULL,
        info {text} NULL,
        organization_id {key} NULL,
        high_water {big} NOT NULL DEFAULT 0,
        revision {big} NOT NULL DEFAULT 0,
        lease_owner {name} NULL,
        lease_until {ts} NULL,
        initial_sync_state {name} NOT NULL,
        state_reason {text} NULL,
        rows_read {big} NOT NULL DEFAULT 0,
        deletes_read {big} NOT NULL DEFAULT 0,
        pages {big} NOT NULL DEFAULT 0,
        last_poll {ts} NULL,
        newest_modified_on {ts} NULL,
        next_poll {ts} NULL,
        updated_at {ts} NOT NULL,
        CONSTRAINT {{source_cursors_pk}} PRIMARY KEY (profile_id, entity)
    )""",
        f"""CREATE TABLE {{source_seen}} (
        profile_id {key} NOT NULL,
        entity {name} NOT NULL,
        record_id {key} NOT NULL,
        CONSTRAINT {{source_seen_pk}} PRIMARY KEY (profile_id, entity, record_id)
    )""",
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "profiles and per-entity metrics",
        {"sqlite": _V1_SQLITE, "postgresql": _V1_POSTGRES, "mssql": _V1_MSSQL},
    ),
    Migration(
        2,
        "per-minute metrics history",
        {"sqlite": _V2_SQLITE, "postgresql": _V2_POSTGRES, "mssql": _V2_MSSQL},
    ),
    Migration(
        3,
        "Dataverse source cursors and re-sync ids",
        {"sqlite": _v3("sqlite"), "postgresql": _v3("postgresql"), "mssql": _v3("mssql")},
    ),
)


def latest(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return max((m.version for m in migrations), default=0)


def check_sequence(migrations: Sequence[Migration]) -> None:
    """Versions must be 1..N without gaps (a typo in a new migration fails at start, loudly)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"store migrations must be numbered 1..N in order, got {versions}")
