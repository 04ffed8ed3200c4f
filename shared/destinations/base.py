"""The interface every destination dialect implements, and the destination layout (names).

The engine owns orchestration (reduction, type decisions, outcomes, retries); a dialect owns all
SQL text, type mapping, locking and error classification for one database. SQLite, PostgreSQL and
SQL Server implement the same :class:`Destination`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.engine.coltypes import ColumnType

SCHEMA_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,127}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,14}$")

# System columns every entity table has, in this order, before the attribute columns.
ID, CREATED, MODIFIED, VERSION = "Id", "SinkCreatedOn", "SinkModifiedOn", "versionnumber"
SYSTEM_COLUMNS = (ID, CREATED, MODIFIED, VERSION)


class LayoutError(ValueError):
    """A schema or prefix that cannot be used (bad profile field)."""


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

    def table_rows(self, table: str) -> Iterator[dict[str, object]]:
        """Every row of a table (tests, the demo's convergence check)."""

    def close(self) -> None: ...
