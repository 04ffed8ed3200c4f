"""The engine's destination port: what every destination dialect implements, and the layout (names).

The engine owns orchestration (reduction, type decisions, outcomes, retries) and this port; a
dialect (``shared/destinations/<dialect>/``) owns all SQL text, type mapping, locking and error
classification for one database and depends on the engine, never the reverse. SQLite, PostgreSQL
and SQL Server implement the same :class:`Destination`; the registry
(``shared/destinations/registry.py``) picks one by DSN scheme.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Literal, Protocol

from shared.engine.coltypes import ColumnType

SCHEMA_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,127}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,14}$")

# System columns every entity table has, in this order, before the attribute columns.
ID, CREATED, MODIFIED, VERSION = "Id", "SinkCreatedOn", "SinkModifiedOn", "versionnumber"
SYSTEM_COLUMNS = (ID, CREATED, MODIFIED, VERSION)


class LayoutError(ValueError):
    """A schema or prefix that cannot be used (bad profile field)."""


class UnsupportedDestination(ValueError):
    """A DSN no destination accepts (unknown scheme, malformed for its dialect)."""


class DestinationError(Exception):
    """A destination problem that is not about one record."""


class TransientDestinationError(DestinationError):
    """Connection lost, deadlock, serialization failure, timeout: worth retrying later."""


class EnvironmentalDestinationError(TransientDestinationError):
    """The database cannot take writes for now, whatever the records: log or disk full, size quota,
    read-only (after a failover), cancelled, out of memory, permission revoked. The batch is parked
    and retried with backoff until the environment is fixed; its records are never failure-logged."""


class EntityRefused(DestinationError):
    """One entity's table cannot be used: a reserved or colliding name, a table that is not ours,
    DDL the database refuses (too many columns, a dependent object), a DDL lock not granted in time.
    That entity's records fail with this reason; the other entities of the batch commit."""


class ErrorClass(str, Enum):
    """What an error from a destination says about the batch (docs/sqlserver.md, "Error taxonomy").

    Each dialect classifies its own errors (``Destination.classify``); the engine acts on the class:

    * ``RECORD``: one record is at fault (constraint, truncation, conversion, out of range): the
      write is bisected to find it; it is failure-logged, the others apply.
    * ``ENTITY``: the entity's table is at fault: that entity's records fail with the reason, the
      other entities of the batch commit.
    * ``TRANSIENT``: retry the batch a few times, then park it (retry blob) as a whole.
    * ``ENVIRONMENTAL``: the database cannot write at all now: park at once and retry with backoff;
      never failure-log.
    """

    RECORD = "record"
    ENTITY = "entity"
    TRANSIENT = "transient"
    ENVIRONMENTAL = "environmental"


def classify_own(exc: BaseException) -> ErrorClass | None:
    """The class of an error raised by our own code (dialects, engine); None for a driver's error."""
    if isinstance(exc, EnvironmentalDestinationError):
        return ErrorClass.ENVIRONMENTAL
    if isinstance(exc, TransientDestinationError | ConnectionFailed):
        return ErrorClass.TRANSIENT
    if isinstance(exc, EntityRefused):
        return ErrorClass.ENTITY
    return None


class ConnectionFailed(DestinationError):
    """The destination could not be reached or refused the credentials."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where and under which names a profile's tables live."""

    schema: str | None = None  # None: the dialect's default (public, dbo; SQLite has none)
    prefix: str = ""
    write_delete_log: bool = False

    def __post_init__(self) -> None:
        if self.schema is not None and not SCHEMA_RE.match(self.schema):
            raise LayoutError(
                f"schema {self.schema!r} must be alphanumeric, start with a letter, at most 128 characters"
            )
        if self.prefix and not PREFIX_RE.match(self.prefix):
            raise LayoutError(f"prefix {self.prefix!r} must be alphanumeric and fewer than 15 characters")

    def entity_table(self, entity: str) -> str:
        return f"{self.prefix}_{entity}" if self.prefix else entity

    @property
    def tombstone_table(self) -> str:
        # Entity names start with a letter, so a leading or doubled underscore can never collide
        # with an entity table, even case-insensitively.
        return f"{self.prefix}__des_tombstones" if self.prefix else "_des_tombstones"

    @property
    def delete_log_table(self) -> str:
        return f"{self.prefix}_DeleteLog" if self.prefix else "DeleteLog"

    def metadata_table(self, name: str) -> str:
        """A DES metadata table (``OptionsetMetadata``, ...): ``<prefix>_<name>``, just the name without a prefix."""
        return f"{self.prefix}_{name}" if self.prefix else name

    @property
    def metadata_state_table(self) -> str:
        """Applied metadata version (and declared columns) per entity; named like the tombstone table."""
        return f"{self.prefix}__des_metadata" if self.prefix else "_des_metadata"

    @property
    def columns_table(self) -> str:
        """Which columns of each entity table are ours (created, or there when the table was adopted):
        only those are written; columns others add later are left alone."""
        return f"{self.prefix}__des_columns" if self.prefix else "_des_columns"

    @property
    def internal_tables(self) -> tuple[str, ...]:
        """Every table of this layout that is not an entity's (the delete log even while it is off)."""
        return (
            self.tombstone_table,
            self.columns_table,
            self.delete_log_table,
            self.metadata_state_table,
            *(self.metadata_table(t.name) for t in METADATA_TABLES),
        )


@dataclass(frozen=True, slots=True)
class WriteSet:
    """One entity's winning changes of a batch, ready for one set-based write.

    ``upserts`` rows are ``(id, version, *values)`` with values in ``columns`` order; ``columns`` is
    every attribute column of the table (absent attributes are NULL: the row is the full state).
    """

    entity: str
    table: str
    columns: Sequence[str]
    upserts: Sequence[tuple[object, ...]]
    deletes: Sequence[tuple[str, int]]  # (id, version)
    now: datetime


@dataclass(frozen=True, slots=True)
class Applied:
    """Ids whose change took effect; ids the database refused (record-level, with the reason, from a
    dialect whose writes isolate records: :attr:`Transaction.isolates_records`); every other id of
    the write set was stale."""

    upserted: frozenset[str]
    deleted: frozenset[str]
    rejected: Mapping[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ entity metadata (DES's tables)
# name: text of at most 128 characters; text: unbounded; int: 32-bit; identity: a generated bigint key.
MetaKind = Literal["name", "text", "int", "bigint", "bool", "datetime", "guid", "identity"]


@dataclass(frozen=True, slots=True)
class MetadataTable:
    """A metadata table as DES created it: name (without prefix) and columns (name, kind, nullable).

    ``scope`` is the column whose value selects the rows one metadata notification replaces:
    ``EntityName``, or ``OptionSetName`` for global option sets (shared by entities).
    """

    name: str
    columns: tuple[tuple[str, MetaKind, bool], ...]
    scope: str = "EntityName"

    @property
    def insert_columns(self) -> tuple[str, ...]:
        return tuple(c for c, kind, _ in self.columns if kind != "identity")

    @property
    def insert_kinds(self) -> tuple[MetaKind, ...]:
        return tuple(kind for _, kind, _ in self.columns if kind != "identity")


_LABEL: tuple[tuple[str, MetaKind, bool], ...] = (
    ("IsUserLocalizedLabel", "bool", False),
    ("LocalizedLabelLanguageCode", "int", True),
    ("LocalizedLabel", "text", True),
)
GLOBAL_OPTIONSET_METADATA = MetadataTable(
    "GlobalOptionsetMetadata", (("OptionSetName", "name", False), ("Option", "int", False), *_LABEL), "OptionSetName"
)
OPTIONSET_METADATA = MetadataTable(
    "OptionsetMetadata",
    (("EntityName", "name", False), ("OptionSetName", "name", False), ("Option", "int", False), *_LABEL),
)
STATE_METADATA = MetadataTable("StateMetadata", (("EntityName", "name", False), ("State", "int", False), *_LABEL))
STATUS_METADATA = MetadataTable(
    "StatusMetadata",
    (("EntityName", "name", False), ("State", "int", False), ("Status", "int", False), *_LABEL),
)
TARGET_METADATA = MetadataTable(
    "TargetMetadata",
    (
        ("EntityName", "name", False),
        ("AttributeName", "name", False),
        ("ReferencedEntity", "name", False),
        ("ReferencedAttribute", "name", False),
    ),
)
ATTRIBUTE_METADATA = MetadataTable(
    "AttributeMetadata",
    (
        ("Id", "identity", False),
        ("EntityName", "name", False),
        ("AttributeName", "name", False),
        ("AttributeType", "name", False),
        ("AttributeTypeCode", "int", False),
        ("Version", "bigint", False),
        ("Timestamp", "datetime", False),
        ("MetadataId", "guid", True),
        ("Precision", "int", True),
        ("MaxLength", "int", True),
    ),
)
METADATA_TABLES = (
    GLOBAL_OPTIONSET_METADATA,
    OPTIONSET_METADATA,
    STATE_METADATA,
    STATUS_METADATA,
    TARGET_METADATA,
    ATTRIBUTE_METADATA,
)


@dataclass(frozen=True, slots=True)
class MetadataRows:
    """One entity's metadata notification as rows of the metadata tables (shared/engine/metadata.py)."""

    entity: str
    version: int
    columns: str  # JSON object: the columns the metadata declares -> their type (for the support table)
    now: datetime
    global_option_sets: Sequence[str]  # names whose GlobalOptionsetMetadata rows are replaced
    rows: Mapping[str, Sequence[tuple[object, ...]]]  # MetadataTable.name -> rows in insert_columns order


class Transaction(Protocol):
    # True: ``write`` changes nothing when it raises, and reports the records the database refuses
    # in ``Applied.rejected`` instead of raising (SQLite: one atomic statement per row), so the engine
    # writes without a savepoint (which costs SQLite a journal of every page the write touches).
    # False: the engine wraps each write in a savepoint and bisects a rejected write.
    isolates_records: bool

    def columns(self, table: str) -> dict[str, ColumnType] | None:
        """Attribute columns of ``table``, read under a lock that keeps DDL out until commit."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope that rolls back alone when its body raises."""

    def write(self, ws: WriteSet) -> Applied:
        """Apply upserts and deletes with the version guard and tombstones; return what took effect."""


class Destination(Protocol):
    dialect: str
    max_identifier_length: int
    max_columns: int  # per table, ours included (SQLite 2,000; PostgreSQL 1,600; SQL Server 1,024)
    layout: Layout

    def existing_columns(self, table: str) -> dict[str, ColumnType] | None:
        """The attribute columns of ``table`` as the catalog has them now (no lock, no DDL); None when
        there is no such table. Raises :class:`EntityRefused` for a table that is not an entity table."""

    def ensure_table(self, table: str, wanted: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
        """Create the table and add or widen columns (concurrency-safe); return its attribute columns."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        """One atomic unit of writes."""

    def can_widen(self, current: ColumnType, wider: ColumnType) -> bool:
        """Whether this database can change a column from ``current`` to ``wider`` in place."""

    def check_values(self, column: ColumnType, values: Sequence[object]) -> dict[int, str]:
        """Positions of values this database cannot store in such a column, with reasons.

        ``values`` is one column of a batch (``None`` for NULL, to be skipped); every non-null value
        already fits the type lattice. Checks only limits of the database itself (NUL characters,
        integer range, ...). Called once per column per batch: keep the common case C-level fast.
        """

    def classify(self, exc: BaseException) -> ErrorClass:
        """Which :class:`ErrorClass` an error from this database (or from this dialect) belongs to."""

    def name_key(self, name: str) -> str:
        """``name`` as this database compares table names: two names with the same key are one table
        (SQLite: ASCII case-insensitive; SQL Server: case-insensitive, as its default collations;
        PostgreSQL, where every name is quoted: exactly)."""

    def reserved(self, table: str) -> str | None:
        """Why this database keeps ``table`` for itself (SQLite's ``sqlite_*``), or None."""

    def reset(self) -> None:
        """Drop and reopen the connection after a transient failure."""

    # -- keyed reads (the push re-read, docs/dataverse-push.md): no lock, no DDL, no table scan
    def held_versions(self, table: str, ids: Sequence[str]) -> dict[str, int]:
        """Record id (lower case) -> ``versionnumber`` of the rows of ``table`` among ``ids``
        (lower-case GUIDs), read by primary key; {} when there is no such table."""

    def rows_with(self, table: str, values: Mapping[str, str]) -> list[tuple[str, int]]:
        """``(id, versionnumber)`` of the rows of ``table`` whose columns hold the given GUIDs
        (column -> lower-case GUID; an N:N intersect row by its two ids); [] when the table or one
        of the columns does not exist."""

    def close(self) -> None: ...

    # -- entity metadata (shared/engine/metadata.py, docs/metadata.md)
    def metadata_state(self, entity: str) -> tuple[int, str] | None:
        """The version and declared columns (JSON) of the entity's applied metadata; None if none yet."""

    def replace_metadata(self, rows: MetadataRows) -> bool:
        """Create the metadata tables if needed; then in one transaction, unless metadata at least as new
        is recorded for the entity, replace its rows in every metadata table and record its version.
        True when applied, False when stale (serialized with other writers of metadata)."""


def entity_table_problem(dest: Destination, table: str) -> str | None:
    """Why ``table`` cannot be an entity's table on ``dest``: a name the database reserves, or the
    same table, as the database compares names, as one of the layout's internal tables; else None."""
    reason = dest.reserved(table)
    if reason is not None:
        return reason
    key = dest.name_key(table)
    for internal in dest.layout.internal_tables:
        if dest.name_key(internal) == key:
            return (
                f"table {table!r} would be the same {dest.dialect} table as {internal!r}, "
                "which this app keeps for itself (tombstones, delete log, metadata)"
            )
    return None


def adoption_problem(
    table: str, columns: Sequence[str], primary_key: Sequence[str], name_key: Callable[[str], str]
) -> str | None:
    """Why an existing table cannot be adopted as an entity's table, or None.

    Ours (or DES's) has the primary key (``Id``) and the system columns; anything else is someone
    else's table of the same name: refused, never adopted (nothing is added to it or written)."""
    if [name_key(k) for k in primary_key] != [name_key(ID)]:
        key = f"({', '.join(primary_key)})" if primary_key else "none"
        return (
            f"table {table!r} already exists and is not an entity table (primary key {key}, not ({ID})); "
            "it is left alone: rename it or use a table prefix"
        )
    have = {name_key(c) for c in columns}
    missing = [c for c in SYSTEM_COLUMNS if name_key(c) not in have]
    if missing:
        return (
            f"table {table!r} already exists without the columns {', '.join(missing)} of an entity table; "
            "it is left alone: rename it or use a table prefix"
        )
    return None
