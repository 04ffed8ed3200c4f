"""The engine's destination port: what every destination dialect implements, and the layout (names).

The engine owns orchestration (reduction, type decisions, outcomes, retries) and this port; a
dialect (``shared/destinations/<dialect>/``) owns all SQL text, type mapping, locking and error
classification for one database and depends on the engine, never the reverse. SQLite, PostgreSQL
and SQL Server implement the same :class:`Destination`; the registry
(``shared/destinations/registry.py``) picks one by DSN scheme.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
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
    """Ids whose change took effect; every other id of the write set was stale."""

    upserted: frozenset[str]
    deleted: frozenset[str]


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
    def columns(self, table: str) -> dict[str, ColumnType] | None:
        """Attribute columns of ``table``, read under a lock that keeps DDL out until commit."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope that rolls back alone when its body raises."""

    def write(self, ws: WriteSet) -> Applied:
        """Apply upserts and deletes with the version guard and tombstones; return what took effect."""


class Destination(Protocol):
    dialect: str
    max_identifier_length: int
    layout: Layout

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

    def is_transient(self, exc: BaseException) -> bool:
        """Whether an error from this database is worth retrying (connection, deadlock, timeout)."""

    def reset(self) -> None:
        """Drop and reopen the connection after a transient failure."""

    def close(self) -> None: ...

    # -- entity metadata (shared/engine/metadata.py, docs/metadata.md)
    def metadata_state(self, entity: str) -> tuple[int, str] | None:
        """The version and declared columns (JSON) of the entity's applied metadata; None if none yet."""

    def replace_metadata(self, rows: MetadataRows) -> bool:
        """Create the metadata tables if needed; then in one transaction, unless metadata at least as new
        is recorded for the entity, replace its rows in every metadata table and record its version.
        True when applied, False when stale (serialized with other writers of metadata)."""
