"""SQL Server and Azure SQL Database destination (pyodbc): all T-SQL text and type mapping.

Statement text comes from :class:`TSql` (pure functions of names and types, values always ``?``
parameters) and is executed by :class:`MssqlDestination` through any DB-API connection that looks
like pyodbc's, which is how the unit tests capture and parse every statement without a server.

Write path for one entity of a batch (inside the engine's transaction and savepoint):

1. ``sp_getapplock`` on the table, exclusive and owned by the transaction. Writers of one table
   and its DDL take turns; the engine writes entities in sorted order, so DES writers never
   deadlock on these locks, and no column can be added between reading the catalog and writing.
2. ``CREATE TABLE #des_stage`` and ``fast_executemany`` inserts in chunks bounded by rows and by
   the bytes of pyodbc's parameter array (:func:`chunk_rows`).
3. After staging, one batch (one round trip): ``MERGE ... WITH (HOLDLOCK)`` of every upsert newer
   than both the live row and the tombstone (read without HOLDLOCK: the app lock serialises this
   entity's writers), ``OUTPUT ... INTO #des_applied``; ``DELETE`` of live rows not newer than a
   staged delete; ``MERGE`` of the tombstones, ``OUTPUT ... INTO #des_gone``; the delete log from
   ``#des_gone``; one ``SELECT`` of what took effect; the temporary tables dropped.

See docs/sqlserver.md for the reasoning (MERGE versus UPDATE + INSERT, chunk sizes, row size).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext
from itertools import count, islice
from typing import Any, Protocol

from shared.destinations.mssql import errors
from shared.destinations.mssql.connect import connector, parse_dsn, target_from_odbc
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.ports import (
    CREATED,
    ID,
    METADATA_TABLES,
    MODIFIED,
    SYSTEM_COLUMNS,
    VERSION,
    Applied,
    ConnectionFailed,
    DestinationError,
    EntityRefused,
    ErrorClass,
    Layout,
    MetadataRows,
    MetadataTable,
    MetaKind,
    WriteSet,
    adoption_problem,
)

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "dbo"
MAX_IDENTIFIER = 128  # sysname
NVARCHAR_MAX_N = 4000  # NVARCHAR(n) takes n <= 4000 UTF-16 code units; beyond that NVARCHAR(MAX)
NVARCHAR_MAX_UNITS = 2**30 - 1  # NVARCHAR(MAX) holds 2 GB
UNTYPED_DECIMAL_SCALE = 18  # DECIMAL(38, 18): every int64 and Dataverse decimal/money, doubles >= 0.01 exactly
DECIMAL_PRECISION = 38
LOCK_TIMEOUT_MS = 60_000  # SET LOCK_TIMEOUT and sp_getapplock's wait; 1222 / -1 then retry the batch
# DDL (CREATE, ALTER) waits at most this long for its schema lock behind readers (reports, ...);
# then the entity's records fail with the reason instead of the whole batch waiting or retrying.
DDL_LOCK_TIMEOUT_MS = 5_000

# Bulk path: rows per fast_executemany call, and bytes of pyodbc's parameter array per call.
CHUNK_MAX_ROWS = 1000
CHUNK_MAX_BYTES = 16 * 1024 * 1024
HELD_CHUNK = 500  # ids per keyed read (SQL Server takes at most 2,100 parameters)

STAGE = "#des_stage"
GONE = "#des_gone"
APPLIED = "#des_applied"
_TEMP_TABLES = frozenset({STAGE, GONE, APPLIED})  # the only names that may start with "#"
DELETE_FLAG = "_des_delete"  # starts with "_": can never be an attribute name

# ODBC SQL types (sql.h / sqlext.h), as pyodbc exposes them, for cursor.setinputsizes.
SQL_WVARCHAR = -9
SQL_GUID = -11
SQL_BIGINT = -5
SQL_BIT = -7
SQL_DOUBLE = 8
SQL_NUMERIC = 2
SQL_TYPE_TIMESTAMP = 93
_SQLLEN = 8  # length/indicator word pyodbc keeps per parameter
_DAE_BYTES = 16  # pyodbc's DAEParam: the value streams from the Python object at execute time
_BOUND_BYTES = {SQL_GUID: 16, SQL_BIGINT: 8, SQL_BIT: 1, SQL_DOUBLE: 8, SQL_NUMERIC: 19, SQL_TYPE_TIMESTAMP: 16}

_SQL_TYPE = {
    Kind.BOOLEAN: "BIT",
    Kind.INTEGER: "BIGINT",
    Kind.FLOAT: "FLOAT",
    Kind.GUID: "UNIQUEIDENTIFIER",
    Kind.DATETIME: "DATETIME2(7)",
}
_SAVEPOINT_RE = re.compile(r"^des_sp_\d{1,9}$")
FLOAT_MIN_NORMAL = sys.float_info.min
BIND_CONTEXT = Context(prec=DECIMAL_PRECISION)


class InvalidIdentifier(DestinationError):
    """A name SQL Server cannot take as an identifier."""


class Cursor(Protocol):
    """The part of a pyodbc cursor this dialect uses."""

    fast_executemany: bool

    @property
    def description(self) -> Any: ...

    def execute(self, sql: str, *params: Any) -> Any: ...

    def executemany(self, sql: str, params: Sequence[Any], /) -> Any: ...

    def setinputsizes(self, sizes: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...

    def nextset(self) -> Any: ...

    def close(self) -> Any: ...


class Connection(Protocol):
    def cursor(self) -> Any: ...

    def close(self) -> Any: ...


# ------------------------------------------------------------------------------- identifiers
def check_identifier(name: str) -> str:
    """``name`` if SQL Server can take it as a (bracket-quoted) identifier; raises otherwise."""
    if not isinstance(name, str) or not name:
        raise InvalidIdentifier("an identifier must be a non-empty string")
    try:
        units = len(name.encode("utf-16-le")) // 2
    except UnicodeEncodeError as exc:
        raise InvalidIdentifier(f"identifier {name!r} contains an unpaired surrogate") from exc
    if units > MAX_IDENTIFIER:
        raise InvalidIdentifier(f"identifier {name[:40]!r}... is longer than {MAX_IDENTIFIER} characters")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidIdentifier(f"identifier {name!r} contains control characters")
    if name != name.rstrip(" "):
        raise InvalidIdentifier(f"identifier {name!r} ends with a space, which SQL Server would drop")
    if name.startswith("#") and name not in _TEMP_TABLES:
        raise InvalidIdentifier(f"identifier {name!r} starts with '#', which names a temporary table")
    return name


def quote(name: str) -> str:
    """A bracket-quoted identifier with ``]`` doubled, after :func:`check_identifier`."""
    return "[" + check_identifier(name).replace("]", "]]") + "]"


# ------------------------------------------------------------------------------------- types
def sql_type(t: ColumnType) -> str:
    if t.kind is Kind.TEXT:
        if t.length is not None and 1 <= t.length <= NVARCHAR_MAX_N:
            return f"NVARCHAR({t.length})"
        return "NVARCHAR(MAX)"
    if t.kind is Kind.DECIMAL:
        return f"DECIMAL({DECIMAL_PRECISION}, {decimal_scale(t)})"
    return _SQL_TYPE[t.kind]


def decimal_scale(t: ColumnType) -> int:
    """DECIMAL(38, s): s from metadata when known, else 18 for JSON numbers (docs/sqlserver.md)."""
    if t.precision is None and t.scale is None:
        return UNTYPED_DECIMAL_SCALE
    return max(0, min(t.scale or 0, DECIMAL_PRECISION))


_INTEGER_TYPES = frozenset({"bigint", "int", "smallint", "tinyint"})
_DATETIME_TYPES = frozenset({"datetime2", "datetime", "smalldatetime", "datetimeoffset", "date"})
_MONEY = {
    "money": ColumnType(Kind.DECIMAL, precision=19, scale=4),
    "smallmoney": ColumnType(Kind.DECIMAL, precision=10, scale=4),
}


def column_type(type_name: str, max_length: int, precision: int, scale: int) -> ColumnType:
    """The logical type of a catalog column (sys.columns / sys.types), ours or an existing DES
    database's (``int``, ``smallint``, ``datetime``, ``money``, ``nvarchar(n)``, ...): values are
    bound as the logical type and SQL Server converts them on write (a value the narrower column
    cannot hold, such as 2**40 for an ``int``, is that record's failure, error 8115)."""
    name = type_name.lower()
    if name == "uniqueidentifier":
        return coltypes.GUID
    if name == "bit":
        return coltypes.BOOLEAN
    if name in _INTEGER_TYPES:
        return coltypes.INTEGER
    if name in ("float", "real"):
        return coltypes.FLOAT
    if name in _DATETIME_TYPES:
        return coltypes.DATETIME
    if name in ("decimal", "numeric"):
        if precision == DECIMAL_PRECISION and scale == UNTYPED_DECIMAL_SCALE:
            return coltypes.DECIMAL
        return ColumnType(Kind.DECIMAL, precision=precision, scale=scale)
    if name in _MONEY:
        return _MONEY[name]
    if name in ("nvarchar", "nchar"):
        return coltypes.TEXT if max_length == -1 else ColumnType(Kind.TEXT, max_length // 2)
    if name in ("varchar", "char"):
        return coltypes.TEXT if max_length == -1 else ColumnType(Kind.TEXT, max_length)
    return coltypes.TEXT  # ntext, text, xml, ...: values as text


def utf16_units(text: str) -> int:
    """Length in UTF-16 code units, which is what NVARCHAR(n) counts (strict: raises on lone surrogates)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2



def to_decimal(value: object) -> Decimal:
    """The exact decimal a JSON number stands for (a float by its shortest repr, not its binary value)."""
    if type(value) is float:
        return Decimal(repr(value))
    return Decimal(value)  # type: ignore[arg-type]


def input_size(t: ColumnType, width: int = 0) -> tuple[int, int, int]:
    """(ODBC SQL type, column size, decimal digits) for cursor.setinputsizes.

    ``width`` is the longest text of the chunk in UTF-16 code units; 0 (or more than 4000) binds
    NVARCHAR(MAX), whose values pyodbc streams as data-at-execution instead of copying them.
    """
    k = t.kind
    if k is Kind.TEXT:
        return (SQL_WVARCHAR, width if 0 < width <= NVARCHAR_MAX_N else 0, 0)
    if k is Kind.DECIMAL:
        return (SQL_NUMERIC, DECIMAL_PRECISION, decimal_scale(t))
    if k is Kind.GUID:
        return (SQL_GUID, 16, 0)
    if k is Kind.INTEGER:
        return (SQL_BIGINT, 19, 0)
    if k is Kind.BOOLEAN:
        return (SQL_BIT, 1, 0)
    if k is Kind.FLOAT:
        return (SQL_DOUBLE, 15, 0)
    return (SQL_TYPE_TIMESTAMP, 27, 7)


def bound_bytes(size: tuple[int, int, int]) -> int:
    """Bytes pyodbc's fast_executemany keeps per row for one parameter bound with ``size``."""
    sqltype, column_size, _ = size
    if sqltype == SQL_WVARCHAR:
        return (column_size * 2 if column_size else _DAE_BYTES) + _SQLLEN
    return _BOUND_BYTES[sqltype] + _SQLLEN


def chunk_rows(row_bytes: int) -> int:
    """Rows per fast_executemany call: at most CHUNK_MAX_ROWS and CHUNK_MAX_BYTES of parameters."""
    return max(1, min(CHUNK_MAX_ROWS, CHUNK_MAX_BYTES // max(1, row_bytes)))


def _converter(t: ColumnType) -> Callable[[object], object]:
    if t.kind is Kind.GUID:
        return lambda v: uuid.UUID(str(v))
    if t.kind is Kind.DECIMAL:
        return to_decimal
    if t.kind is Kind.DATETIME:  # aware UTC (coltypes.coerce) -> DATETIME2's naive UTC
        return lambda v: _naive_utc(v) if isinstance(v, datetime) else v
    return lambda v: v


def _chunks(rows: Iterable[tuple[object, ...]], size: int) -> Iterator[list[tuple[object, ...]]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def _guid_text(value: object) -> str:
    return str(value).lower()


def _naive_utc(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now


# ------------------------------------------------------------------------------------- T-SQL
class TSql:
    """Every statement this dialect sends, for one schema and layout. Values are ``?`` parameters."""

    SESSION = ("SET NOCOUNT ON", "SET XACT_ABORT OFF", f"SET LOCK_TIMEOUT {LOCK_TIMEOUT_MS}")
    BEGIN = "BEGIN TRANSACTION"
    COMMIT = "COMMIT TRANSACTION"
    ROLLBACK = "ROLLBACK TRANSACTION"
    TRANCOUNT = "SELECT @@TRANCOUNT"
    XACT_STATE = "SELECT XACT_STATE()"
    SCHEMA_ID = "SELECT SCHEMA_ID(?)"
    OBJECT_ID = "SELECT OBJECT_ID(?, N'U')"
    # Parameters: resource, timeout in ms. Returns sp_getapplock's status (>= 0 granted).
    APPLOCK = (
        "DECLARE @des_lock INT; "
        "EXEC @des_lock = sp_getapplock @Resource = ?, @LockMode = N'Exclusive', "
        "@LockOwner = N'Transaction', @LockTimeout = ?; "
        "SELECT @des_lock AS [status]"
    )
    # Parameter: the quoted two-part table name.
    # The last column is 0 for what is never written: computed, identity and rowversion columns.
    COLUMNS = (
        "SELECT c.[name], ty.[name], c.[max_length], c.[precision], c.[scale], "
        "CAST(CASE WHEN c.[is_computed] = 1 OR c.[is_identity] = 1 OR ty.[name] = N'timestamp' "
        "THEN 0 ELSE 1 END AS BIT) AS [writable] "
        "FROM sys.columns AS c INNER JOIN sys.types AS ty ON ty.[user_type_id] = c.[user_type_id] "
        "WHERE c.[object_id] = OBJECT_ID(?, N'U') ORDER BY c.[column_id]"
    )

    # Parameter: the quoted two-part table name. The primary key's columns, in key order.
    PRIMARY_KEY = (
        "SELECT c.[name] FROM sys.indexes AS i "
        "INNER JOIN sys.index_columns AS ic ON ic.[object_id] = i.[object_id] AND ic.[index_id] = i.[index_id] "
        "INNER JOIN sys.columns AS c ON c.[object_id] = ic.[object_id] AND c.[column_id] = ic.[column_id] "
        "WHERE i.[object_id] = OBJECT_ID(?, N'U') AND i.[is_primary_key] = 1 ORDER BY ic.[key_ordinal]"
    )

    def __init__(self, schema: str, layout: Layout) -> None:
        self.schema = check_identifier(schema)
        self.layout = layout

    def table(self, name: str) -> str:
        return f"{quote(self.schema)}.{quote(name)}"

    # -- transactions
    @staticmethod
    def lock_timeout(ms: int) -> str:
        return f"SET LOCK_TIMEOUT {int(ms)}"

    @staticmethod
    def save(name: str) -> str:
        if not _SAVEPOINT_RE.match(name):
            raise ValueError(f"bad savepoint name {name!r}")
        return f"SAVE TRANSACTION {name}"

    @staticmethod
    def rollback_to(name: str) -> str:
        if not _SAVEPOINT_RE.match(name):
            raise ValueError(f"bad savepoint name {name!r}")
        return f"ROLLBACK TRANSACTION {name}"

    def lock_resource(self, what: str) -> str:
        """sp_getapplock resource (nvarchar(255), compared in binary: lower-cased, as names are CI)."""
        resource = f"des:{self.schema}.{what}".lower()
        if len(resource) > 255:
            resource = "des:" + hashlib.sha256(resource.encode("utf-8")).hexdigest()
        return resource

    # -- support tables
    def create_schema(self) -> str:
        return f"CREATE SCHEMA {quote(self.schema)}"

    def create_tombstones(self) -> str:
        return (
            f"CREATE TABLE {self.table(self.layout.tombstone_table)} ("
            "[EntityName] NVARCHAR(128) NOT NULL, [RecordId] UNIQUEIDENTIFIER NOT NULL, "
            "[VersionNumber] BIGINT NOT NULL, [SinkDeleteTime] DATETIME2(7) NOT NULL, "
            "PRIMARY KEY ([EntityName], [RecordId]))"
        )

    def create_columns_registry(self) -> str:
        return (
            f"CREATE TABLE {self.table(self.layout.columns_table)} ("
            "[TableName] NVARCHAR(128) NOT NULL, [ColumnName] NVARCHAR(128) NOT NULL, "
            "PRIMARY KEY ([TableName], [ColumnName]))"
        )

    def registered_columns(self) -> str:
        """Parameter: table. Rows (column name) of the table's columns that are ours."""
        return f"SELECT [ColumnName] FROM {self.table(self.layout.columns_table)} WHERE [TableName] = ?"

    def register_columns(self, rows: int) -> str:
        """Parameters: (table, column) per row; rows already registered are skipped."""
        registry = self.table(self.layout.columns_table)
        values = ", ".join("(?, ?)" for _ in range(rows))
        return (
            f"INSERT INTO {registry} ([TableName], [ColumnName]) SELECT v.[t], v.[c] FROM (VALUES {values}) "
            f"AS v ([t], [c]) WHERE NOT EXISTS (SELECT 1 FROM {registry} AS r "
            "WHERE r.[TableName] = v.[t] AND r.[ColumnName] = v.[c])"
        )

    def create_delete_log(self) -> str:
        return (
            f"CREATE TABLE {self.table(self.layout.delete_log_table)} ("
            "[EntityName] NVARCHAR(128) NOT NULL, [RecordId] UNIQUEIDENTIFIER NOT NULL, "
            "[VersionNumber] BIGINT NOT NULL, [SinkDeleteTime] DATETIME2(7) NOT NULL)"
        )

    # -- entity tables
    def create_table(self, table: str, columns: Mapping[str, ColumnType]) -> str:
        defs = "".join(f", {quote(c)} {sql_type(t)} NULL" for c, t in columns.items())
        return (
            f"CREATE TABLE {self.table(table)} ({quote(ID)} UNIQUEIDENTIFIER NOT NULL PRIMARY KEY, "
            f"{quote(CREATED)} DATETIME2(7) NOT NULL, {quote(MODIFIED)} DATETIME2(7) NOT NULL, "
            f"{quote(VERSION)} BIGINT NOT NULL{defs})"
        )

    def add_columns(self, table: str, columns: Mapping[str, ColumnType]) -> str:
        defs = ", ".join(f"{quote(c)} {sql_type(t)} NULL" for c, t in columns.items())
        return f"ALTER TABLE {self.table(table)} ADD {defs}"

    def alter_column(self, table: str, column: str, t: ColumnType) -> str:
        return f"ALTER TABLE {self.table(table)} ALTER COLUMN {quote(column)} {sql_type(t)} NULL"

    def select_all(self, table: str) -> str:
        return f"SELECT * FROM {self.table(table)}"

    # -- keyed reads (the push re-read)
    def held_versions(self, table: str, count: int) -> str:
        """Parameters: ``count`` ids. Rows (id, version), by primary key."""
        markers = ", ".join("?" * count)
        return f"SELECT {quote(ID)}, {quote(VERSION)} FROM {self.table(table)} WHERE {quote(ID)} IN ({markers})"

    def rows_with(self, table: str, columns: Sequence[str]) -> str:
        """Parameters: one lower-case GUID per column (a uniqueidentifier or a text column). Rows (id, version)."""
        where = " AND ".join(f"LOWER(CONVERT(NVARCHAR(36), {quote(c)})) = ?" for c in columns)
        return f"SELECT {quote(ID)}, {quote(VERSION)} FROM {self.table(table)} WHERE {where}"

    def id_versions_after(self, table: str, first: bool) -> str:
        """Parameters: the chunk size (, the last id of the previous chunk unless ``first``). Rows
        (id, version) in key order (uniqueidentifier order: a total order, all a keyset needs)."""
        where = "" if first else f" WHERE {quote(ID)} > CAST(? AS UNIQUEIDENTIFIER)"
        return (
            f"SELECT TOP (?) {quote(ID)}, {quote(VERSION)} FROM {self.table(table)}{where} ORDER BY {quote(ID)}"
        )

    # -- bulk write
    @staticmethod
    def create_stage(columns: Sequence[tuple[str, ColumnType]]) -> str:
        defs = "".join(f", {quote(c)} {sql_type(t)} NULL" for c, t in columns)
        return (
            f"CREATE TABLE {quote(STAGE)} ({quote(ID)} UNIQUEIDENTIFIER NOT NULL PRIMARY KEY, "
            f"{quote(VERSION)} BIGINT NOT NULL, {quote(DELETE_FLAG)} BIT NOT NULL{defs})"
        )

    @staticmethod
    def insert_stage(columns: Sequence[str]) -> str:
        names = ", ".join(quote(c) for c in (ID, VERSION, DELETE_FLAG, *columns))
        marks = ", ".join("?" * (3 + len(columns)))
        return f"INSERT INTO {quote(STAGE)} ({names}) VALUES ({marks})"

    def merge_upsert(self, table: str, columns: Sequence[str]) -> str:
        """Parameters: entity name, now (update), now, now (insert). The applied ids go to #des_applied
        (``OUTPUT ... INTO``: a plain ``OUTPUT`` fails on a table with a trigger, error 334). The
        tombstones are read without HOLDLOCK: the table's app lock already serialises its writers,
        and range locks on the tombstone table, shared by every entity, would block other entities."""
        q = quote
        cols = [q(c) for c in columns]
        source = ", ".join(f"s.{c}" for c in [q(ID), q(VERSION), *cols])
        sets = ", ".join(
            [f"t.{q(MODIFIED)} = ?", f"t.{q(VERSION)} = s.{q(VERSION)}", *(f"t.{c} = s.{c}" for c in cols)]
        )
        insert_cols = ", ".join([q(ID), q(CREATED), q(MODIFIED), q(VERSION), *cols])
        insert_vals = ", ".join([f"s.{q(ID)}", "?", "?", f"s.{q(VERSION)}", *(f"s.{c}" for c in cols)])
        return (
            f"MERGE {self.table(table)} WITH (HOLDLOCK) AS t "
            f"USING (SELECT {source} FROM {q(STAGE)} AS s WHERE s.{q(DELETE_FLAG)} = 0 AND NOT EXISTS ("
            f"SELECT 1 FROM {self.table(self.layout.tombstone_table)} AS d "
            f"WHERE d.[EntityName] = ? AND d.[RecordId] = s.{q(ID)} AND d.[VersionNumber] >= s.{q(VERSION)})) AS s "
            f"ON t.{q(ID)} = s.{q(ID)} "
            f"WHEN MATCHED AND t.{q(VERSION)} < s.{q(VERSION)} THEN UPDATE SET {sets} "
            f"WHEN NOT MATCHED BY TARGET THEN INSERT ({insert_cols}) VALUES ({insert_vals}) "
            f"OUTPUT inserted.{q(ID)} INTO {q(APPLIED)} ({q(ID)});"
        )

    def delete_rows(self, table: str) -> str:
        """Removes live rows not newer than a staged delete (a delete wins a tie). No parameters."""
        q = quote
        return (
            f"DELETE t FROM {self.table(table)} AS t WITH (HOLDLOCK) "
            f"INNER JOIN {q(STAGE)} AS s ON t.{q(ID)} = s.{q(ID)} "
            f"WHERE s.{q(DELETE_FLAG)} = 1 AND t.{q(VERSION)} <= s.{q(VERSION)}"
        )

    @staticmethod
    def create_gone() -> str:
        return f"CREATE TABLE {quote(GONE)} ([RecordId] UNIQUEIDENTIFIER NOT NULL, [VersionNumber] BIGINT NOT NULL)"

    @staticmethod
    def create_applied() -> str:
        return f"CREATE TABLE {quote(APPLIED)} ({quote(ID)} UNIQUEIDENTIFIER NOT NULL)"

    def apply_staged(self, table: str, columns: Sequence[str], *, upserts: bool, deletes: bool) -> str:
        """Every statement after staging, as one batch (one round trip): the guarded MERGE of the
        upserts, the deletes, their tombstones and delete log, then one result set of
        ``(id, is_delete)`` for what took effect, then the temporary tables dropped.

        Parameters, in order: the MERGE's (entity, now, now, now) if ``upserts``; the tombstone
        MERGE's (entity, now, now) and the delete log's (entity, now) if ``deletes``."""
        q = quote
        parts: list[str] = []
        results: list[str] = []
        drops: list[str] = []
        if upserts:
            parts += [self.create_applied(), self.merge_upsert(table, columns)]
            results.append(f"SELECT a.{q(ID)}, CAST(0 AS BIT) AS [deleted] FROM {q(APPLIED)} AS a")
            drops.append(self.drop(APPLIED))
        if deletes:
            parts += [self.create_gone(), self.delete_rows(table), self.merge_tombstones(table)]
            if self.layout.write_delete_log:
                parts.append(self.insert_delete_log())
            results.append(f"SELECT g.[RecordId], CAST(1 AS BIT) AS [deleted] FROM {q(GONE)} AS g")
            drops.append(self.drop(GONE))
        parts.append(" UNION ALL ".join(results))
        parts += [*drops, self.drop(STAGE)]
        return "; ".join(p.rstrip(";") for p in parts) + ";"

    def merge_tombstones(self, table: str) -> str:
        """Parameters: entity, now (update), now (insert). Applied deletes go to #des_gone.

        A staged delete applies unless a live row at least as new survived :meth:`delete_rows`
        or the tombstone is at least as new. ``ON`` compares the whole key and nothing else.
        """
        q = quote
        return (
            f"MERGE {self.table(self.layout.tombstone_table)} AS d "
            f"USING (SELECT ? AS [EntityName], s.{q(ID)}, s.{q(VERSION)} FROM {q(STAGE)} AS s "
            f"WHERE s.{q(DELETE_FLAG)} = 1 AND NOT EXISTS (SELECT 1 FROM {self.table(table)} AS t WITH (HOLDLOCK) "
            f"WHERE t.{q(ID)} = s.{q(ID)})) AS s "
            f"ON d.[EntityName] = s.[EntityName] AND d.[RecordId] = s.{q(ID)} "
            f"WHEN MATCHED AND d.[VersionNumber] < s.{q(VERSION)} THEN "
            f"UPDATE SET d.[VersionNumber] = s.{q(VERSION)}, d.[SinkDeleteTime] = ? "
            "WHEN NOT MATCHED BY TARGET THEN INSERT ([EntityName], [RecordId], [VersionNumber], [SinkDeleteTime]) "
            f"VALUES (s.[EntityName], s.{q(ID)}, s.{q(VERSION)}, ?) "
            f"OUTPUT inserted.[RecordId], inserted.[VersionNumber] INTO {q(GONE)} ([RecordId], [VersionNumber]);"
        )

    def insert_delete_log(self) -> str:
        """Parameters: entity, now."""
        return (
            f"INSERT INTO {self.table(self.layout.delete_log_table)} "
            "([EntityName], [RecordId], [VersionNumber], [SinkDeleteTime]) "
            f"SELECT ?, g.[RecordId], g.[VersionNumber], ? FROM {quote(GONE)} AS g"
        )

    @staticmethod
    def drop(temp_table: str) -> str:
        return f"DROP TABLE {quote(temp_table)}"

    # -- entity metadata: DES's metadata tables (shared/engine/metadata.py)
    def create_metadata_table(self, t: MetadataTable) -> str:
        defs = ", ".join(
            f"{quote(c)} {_META_SQL[kind]}" + ("" if kind == "identity" else " NULL" if nullable else " NOT NULL")
            for c, kind, nullable in t.columns
        )
        return f"CREATE TABLE {self.table(self.layout.metadata_table(t.name))} ({defs})"

    def create_metadata_state(self) -> str:
        return (
            f"CREATE TABLE {self.table(self.layout.metadata_state_table)} ("
            "[EntityName] NVARCHAR(128) NOT NULL PRIMARY KEY, [VersionNumber] BIGINT NOT NULL, "
            "[Columns] NVARCHAR(MAX) NOT NULL, [SinkModifiedOn] DATETIME2(7) NOT NULL)"
        )

    def select_metadata_state(self) -> str:
        """Parameter: entity."""
        return (
            "SELECT [VersionNumber], [Columns] "
            f"FROM {self.table(self.layout.metadata_state_table)} WHERE [EntityName] = ?"
        )

    def insert_metadata_state(self) -> str:
        """Parameters: entity, version, columns, now."""
        return (
            f"INSERT INTO {self.table(self.layout.metadata_state_table)} "
            "([EntityName], [VersionNumber], [Columns], [SinkModifiedOn]) VALUES (?, ?, ?, ?)"
        )

    def update_metadata_state(self) -> str:
        """Parameters: version, columns, now, entity."""
        return (
            f"UPDATE {self.table(self.layout.metadata_state_table)} "
            "SET [VersionNumber] = ?, [Columns] = ?, [SinkModifiedOn] = ? WHERE [EntityName] = ?"
        )

    def delete_metadata(self, t: MetadataTable) -> str:
        """Parameter: the entity (or the global option set's name)."""
        return f"DELETE FROM {self.table(self.layout.metadata_table(t.name))} WHERE {quote(t.scope)} = ?"

    def insert_metadata(self, t: MetadataTable) -> str:
        names = ", ".join(quote(c) for c in t.insert_columns)
        marks = ", ".join("?" * len(t.insert_columns))
        return f"INSERT INTO {self.table(self.layout.metadata_table(t.name))} ({names}) VALUES ({marks})"


# ------------------------------------------------------------------------------ transactions
class MssqlTransaction:
    isolates_records = False  # set-based writes: the engine's savepoint and bisection

    def __init__(self, dest: MssqlDestination) -> None:
        self.dest = dest
        self._sp = count()
        self._locked: set[str] = set()

    def lock(self, table: str) -> None:
        if table not in self._locked:
            self.dest.applock(table)
            self._locked.add(table)

    def columns(self, table: str) -> dict[str, ColumnType] | None:
        # The exclusive applock keeps ensure_table's DDL (and other writers) out until commit.
        self.lock(table)
        return self.dest.read_columns(table)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        name = f"des_sp_{next(self._sp)}"
        locked = set(self._locked)
        self.dest.execute(TSql.save(name))
        try:
            yield
        except Exception as exc:
            self._locked = locked
            if self.dest.classify(exc) in (ErrorClass.TRANSIENT, ErrorClass.ENVIRONMENTAL):
                raise  # the whole transaction goes; the engine retries or parks the batch
            state = self.dest.scalar(TSql.XACT_STATE)
            if state != 1:
                raise errors.TransactionLost(
                    f"SQL Server rolled the transaction back after an error ({exc}); the batch will be retried"
                ) from exc
            self.dest.execute(TSql.rollback_to(name))
            raise

    def write(self, ws: WriteSet) -> Applied:
        d = self.dest
        sql = d.sql
        self.lock(ws.table)
        columns = list(ws.columns) if ws.upserts else []
        types = d.column_types(ws.table, columns)
        staged = [(c, types[c]) for c in columns]
        now = _naive_utc(ws.now)
        d.execute(sql.create_stage(staged))
        self._stage(ws, staged)
        # After staging: one round trip for everything else (docs/sqlserver.md, "The write path").
        params: list[object] = []
        if ws.upserts:
            params += [ws.entity, now, now, now]
        if ws.deletes:
            params += [ws.entity, now, now] + ([ws.entity, now] if d.layout.write_delete_log else [])
        batch = sql.apply_staged(ws.table, columns, upserts=bool(ws.upserts), deletes=bool(ws.deletes))
        rows = d.query_batch(batch, *params)
        upserted = {_guid_text(r[0]) for r in rows if not r[1]}
        deleted = {_guid_text(r[0]) for r in rows if r[1]}
        return Applied(frozenset(upserted), frozenset(deleted))

    def _stage(self, ws: WriteSet, staged: Sequence[tuple[str, ColumnType]]) -> None:
        """fast_executemany into #des_stage, in chunks whose parameter arrays stay bounded."""
        plan = stage_plan(ws, staged)
        self.dest.executemany(TSql.insert_stage(plan.columns), _chunks(plan.rows, plan.rows_per_call), plan.sizes)


@dataclass(frozen=True)
class StagePlan:
    """How a write set goes into #des_stage: parameter types and sizes, rows per call, the rows."""

    columns: list[str]  # attribute columns after Id, versionnumber and the delete flag
    sizes: list[tuple[int, int, int]]  # cursor.setinputsizes, one per parameter
    rows_per_call: int
    rows: Iterator[tuple[object, ...]]  # converted for binding: uuid.UUID, Decimal, ...


def stage_plan(ws: WriteSet, staged: Sequence[tuple[str, ColumnType]]) -> StagePlan:
    widths = [0] * len(staged)
    for j, (_c, t) in enumerate(staged):
        if t.kind is Kind.TEXT:
            texts = (r[2 + j] for r in ws.upserts if r[2 + j] is not None)
            widths[j] = max(map(utf16_units, texts), default=1)  # type: ignore[arg-type]
    sizes = [(SQL_GUID, 16, 0), (SQL_BIGINT, 19, 0), (SQL_BIT, 1, 0)]
    sizes += [input_size(t, max(1, w)) for (_c, t), w in zip(staged, widths, strict=True)]
    converters = [_converter(t) for _c, t in staged]
    pad = (None,) * len(staged)

    def rows() -> Iterator[tuple[object, ...]]:
        for r in ws.upserts:
            values = tuple(None if v is None else f(v) for f, v in zip(converters, r[2:], strict=True))
            yield (uuid.UUID(str(r[0])), r[1], False, *values)
        for rid, version in ws.deletes:
            yield (uuid.UUID(rid), version, True, *pad)

    return StagePlan([c for c, _t in staged], sizes, chunk_rows(sum(map(bound_bytes, sizes))), rows())


# ------------------------------------------------------------------------------- destination
class MssqlDestination:
    dialect = "mssql"
    max_identifier_length = MAX_IDENTIFIER
    max_columns = 1024  # a table without sparse columns

    def __init__(
        self, connect: Callable[[], Connection], layout: Layout | None = None, *, name: str = "SQL Server"
    ) -> None:
        self.layout = layout or Layout()
        self.schema = self.layout.schema or DEFAULT_SCHEMA
        self.sql = TSql(self.schema, self.layout)
        self.name = name
        self._connect = connect
        self._conn: Connection | None = None
        self._cur: Any = None
        self._support_ready = False
        self._types: dict[str, dict[str, ColumnType]] = {}
        self._ours: set[str] = set()  # existing tables checked to be entity tables
        self._unwritable: dict[str, set[str]] = {}  # table -> computed, identity, rowversion, others' columns
        self._registered: dict[str, set[str]] = {}  # table -> its columns that are ours (registry cache)
        self._registry_ready = False
        try:
            self._connection()
        except Exception as exc:
            raise ConnectionFailed(f"cannot connect to {name}: {exc}") from exc

    @classmethod
    def from_dsn(cls, dsn: str, layout: Layout | None = None) -> MssqlDestination:
        target = parse_dsn(dsn)
        return cls(connector(target), layout, name=f"SQL Server ({target.redacted()})")

    @classmethod
    def from_odbc(cls, conn_str: str, layout: Layout | None = None) -> MssqlDestination:
        target = target_from_odbc(conn_str)
        return cls(connector(target), layout, name=f"SQL Server ({target.redacted()})")

    # --------------------------------------------------------------------------- statements
    def _connection(self) -> Any:
        if self._cur is None:
            conn = self._connect()
            try:
                cur = conn.cursor()
                for statement in TSql.SESSION:
                    cur.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn, self._cur = conn, cur
        return self._cur

    def execute(self, sql: str, *params: object) -> None:
        self._connection().execute(sql, *params)

    def query(self, sql: str, *params: object) -> list[Any]:
        cur = self._connection()
        cur.execute(sql, *params)
        return list(cur.fetchall())

    def query_batch(self, sql: str, *params: object) -> list[Any]:
        """A batch whose only result set is its rows; the statements after it (drops) complete as
        the remaining results are consumed."""
        cur = self._connection()
        cur.execute(sql, *params)
        rows = list(cur.fetchall())
        while cur.nextset():
            pass
        return rows

    def scalar(self, sql: str, *params: object) -> object:
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def executemany(
        self, sql: str, chunks: Iterable[Sequence[tuple[object, ...]]], sizes: Sequence[tuple[int, int, int]]
    ) -> None:
        # The session's one cursor: a second statement handle on a connection without MARS (and on
        # FreeTDS) can find the connection "busy". Input sizes apply to execute() too: cleared after.
        cur = self._connection()
        cur.fast_executemany = True
        cur.setinputsizes(list(sizes))
        try:
            # DECIMAL(38, s): whatever pyodbc computes from a Decimal while binding, it computes in
            # the thread's decimal context, whose default precision (28 digits) would round a 29-38
            # digit value; bind under a 38-digit context.
            with localcontext(BIND_CONTEXT):
                for chunk in chunks:
                    cur.executemany(sql, chunk)
        finally:
            cur.setinputsizes(None)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.execute(TSql.BEGIN)
        try:
            yield
        except BaseException:
            self._abort()
            raise
        self.execute(TSql.COMMIT)

    def _abort(self) -> None:
        # A registry created in this transaction is gone with it (one committed earlier stays).
        self._registry_ready = self._registry_ready and self._support_ready
        if self._cur is None:
            return
        try:
            if self.scalar(TSql.TRANCOUNT):
                self.execute(TSql.ROLLBACK)
        except Exception as exc:  # the connection is gone: the server rolls back on its own
            log.warning("rollback on %s failed, dropping the connection: %s", self.name, exc)
            self._drop()

    def applock(self, what: str) -> None:
        status = self.scalar(TSql.APPLOCK, self.sql.lock_resource(what), LOCK_TIMEOUT_MS)
        if not isinstance(status, int) or status < 0:
            raise errors.LockTimeout(
                f"sp_getapplock on {what!r} returned {status} (-1 timeout, -2 cancelled, -3 deadlock victim)"
            )

    # ------------------------------------------------------------------------------ catalog/DDL
    def read_columns(self, table: str) -> dict[str, ColumnType] | None:
        rows = self.query(TSql.COLUMNS, self.sql.table(table))
        if not rows:
            self._types.pop(table, None)
            return None
        types = {str(r[0]): column_type(str(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}
        self._types[table] = types
        writable = {str(r[0]) for r in rows if r[5] and str(r[0]) not in SYSTEM_COLUMNS}
        ours = self._our_columns(table, writable)
        # Computed, identity, rowversion columns and columns others added: never written nor added.
        unwritable = self._unwritable[table] = set(types) - set(SYSTEM_COLUMNS) - (writable & ours)
        return {c: t for c, t in types.items() if c not in SYSTEM_COLUMNS and c not in unwritable}

    def _our_columns(self, table: str, present: set[str]) -> set[str]:
        known = self._registered.get(table)
        if known is None or not present <= known:  # another worker may have added some
            rows = self.query(self.sql.registered_columns(), table) if self._registry_ready else []
            known = self._registered[table] = {str(r[0]) for r in rows}
        return known

    def _register(self, table: str, columns: Iterable[str]) -> None:
        names = list(columns)
        for start in range(0, len(names), 1000):  # 2 parameters a row, at most 2,100 a request
            chunk = names[start : start + 1000]
            self.execute(self.sql.register_columns(len(chunk)), *[v for c in chunk for v in (table, c)])
        self._registered.pop(table, None)

    def column_types(self, table: str, columns: Sequence[str]) -> dict[str, ColumnType]:
        known = self._types.get(table, {})
        if any(c not in known for c in columns):
            self.read_columns(table)
            known = self._types.get(table, {})
            missing = [c for c in columns if c not in known]
            if missing:
                raise DestinationError(f"columns {missing} of {table!r} do not exist")
        return known

    def _ensure_support(self) -> None:
        self.applock("_support")
        if self.scalar(TSql.SCHEMA_ID, self.schema) is None:
            self.execute(self.sql.create_schema())
        if self.scalar(TSql.OBJECT_ID, self.sql.table(self.layout.tombstone_table)) is None:
            self.execute(self.sql.create_tombstones())
        if self.scalar(TSql.OBJECT_ID, self.sql.table(self.layout.columns_table)) is None:
            self.execute(self.sql.create_columns_registry())
        self._registry_ready = True
        log_table = self.sql.table(self.layout.delete_log_table)
        if self.layout.write_delete_log and self.scalar(TSql.OBJECT_ID, log_table) is None:
            self.execute(self.sql.create_delete_log())

    def ensure_table(self, table: str, wanted: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
        with self._transaction():
            if not self._support_ready:
                self._ensure_support()
            self.applock(table)
            current = self.read_columns(table)
            if current is None:
                self._ddl(table, self.sql.create_table(table, wanted))
                self._register(table, wanted)
            else:
                if self._adopt(table):
                    current = self.read_columns(table) or {}
                unwritable = self._unwritable.get(table, set())  # computed, identity, rowversion, others'
                added = {c: t for c, t in wanted.items() if c not in current and c not in unwritable}
                if added:
                    self._ddl(table, self.sql.add_columns(table, added))
                    self._register(table, added)
                for c, t in wanted.items():
                    cur_t = current.get(c)
                    if cur_t is not None and cur_t != t and coltypes.join(cur_t, t) == t and self.can_widen(cur_t, t):
                        self._ddl(table, self.sql.alter_column(table, c, t))
                        log.info("widened %s.%s from %s to %s", table, c, cur_t, t)
            result = self.read_columns(table)
        self._support_ready = True
        assert result is not None
        return result

    def existing_columns(self, table: str) -> dict[str, ColumnType] | None:
        with self._transaction():
            if not self._support_ready:
                self._ensure_support()
            columns = self.read_columns(table)
            if columns is not None and self._adopt(table):
                columns = self.read_columns(table)
        self._support_ready = True
        return columns

    def _ddl(self, table: str, statement: str) -> None:
        """One DDL statement, waiting at most DDL_LOCK_TIMEOUT_MS for its schema lock (1222 then
        refuses the entity, with the reason, instead of holding the batch)."""
        self.execute(TSql.lock_timeout(DDL_LOCK_TIMEOUT_MS))
        try:
            self.execute(statement)
        except Exception as exc:
            if 1222 in errors.error_parts(exc)[1]:
                raise EntityRefused(
                    f"changing table {table!r} needs a schema lock that others held for more than "
                    f"{DDL_LOCK_TIMEOUT_MS / 1000:g} s (long reads or writes on it); try again later"
                ) from exc
            raise
        finally:
            try:
                if self._cur is not None:
                    self.execute(TSql.lock_timeout(LOCK_TIMEOUT_MS))
            except Exception as restore:  # the connection is gone: a new session starts with SESSION
                log.debug("restoring LOCK_TIMEOUT on %s: %s", self.name, restore)

    def _adopt(self, table: str) -> bool:
        """An existing table is written only if it is an entity table (ours, or DES's). At first
        sight (no columns registered: DES's table, or ours from before the registry) its attribute
        columns as they are now become ours; True then (the caller reads them again)."""
        if table in self._ours:
            return False
        key = [str(r[0]) for r in self.query(TSql.PRIMARY_KEY, self.sql.table(table))]
        problem = adoption_problem(table, list(self._types.get(table, {})), key, self.name_key)
        if problem is not None:
            raise EntityRefused(problem)
        self._ours.add(table)
        if self.query(self.sql.registered_columns(), table):
            return False
        rows = self.query(TSql.COLUMNS, self.sql.table(table))
        self._register(table, [str(r[0]) for r in rows if r[5] and str(r[0]) not in SYSTEM_COLUMNS])
        return True

    def can_widen(self, current: ColumnType, wider: ColumnType) -> bool:
        """ALTER COLUMN is lossless: longer NVARCHAR, BIGINT into a DECIMAL with room for 19 digits,
        or a DECIMAL with no fewer integer digits and decimal places. FLOAT never becomes DECIMAL."""
        if current == wider or coltypes.join(current, wider) != wider:
            return False
        if current.kind is Kind.TEXT and wider.kind is Kind.TEXT:
            return True
        if wider.kind is Kind.DECIMAL:
            scale = decimal_scale(wider)
            if current.kind is Kind.INTEGER:
                return DECIMAL_PRECISION - scale >= 19
            if current.kind is Kind.DECIMAL:
                cur_scale = decimal_scale(current)
                cur_int = (current.precision or DECIMAL_PRECISION) - cur_scale
                return scale >= cur_scale and DECIMAL_PRECISION - scale >= cur_int
        return False

    def check_values(self, column: ColumnType, values: Sequence[object]) -> dict[int, str]:
        """NVARCHAR(n) counts UTF-16 code units (an emoji takes two); DECIMAL(38, s) bounds digits on
        both sides of the point; FLOAT has no subnormals. None (NULL) is skipped."""
        kind = column.kind
        if kind is Kind.TEXT:
            return self._check_text(column, values)
        if kind is Kind.DECIMAL:
            return self._check_decimal(column, values)
        if kind is Kind.FLOAT:
            nonzero = list(filter(None, values))
            if not nonzero or min(map(abs, nonzero)) >= FLOAT_MIN_NORMAL:  # type: ignore[arg-type]
                return {}
            return {
                i: "number is a subnormal double, smaller than SQL Server's FLOAT can hold"
                for i, v in enumerate(values)
                if v and abs(v) < FLOAT_MIN_NORMAL  # type: ignore[arg-type]
            }
        return {}

    @staticmethod
    def _check_text(column: ColumnType, values: Sequence[object]) -> dict[int, str]:
        bounded = column.length is not None and column.length <= NVARCHAR_MAX_N
        limit = column.length if bounded and column.length is not None else NVARCHAR_MAX_UNITS
        joined = "".join(filter(None, values))  # type: ignore[arg-type]
        if joined.isascii():
            if not bounded or max(map(len, filter(None, values)), default=0) <= limit:  # type: ignore[arg-type]
                return {}
        elif not bounded:
            try:
                joined.encode("utf-16-le")
            except UnicodeEncodeError:
                pass
            else:
                return {}
        reasons: dict[int, str] = {}
        for i, v in enumerate(values):
            if v is None:
                continue
            try:
                units = utf16_units(v)  # type: ignore[arg-type]
            except UnicodeEncodeError:
                reasons[i] = "text contains an unpaired UTF-16 surrogate, which is not valid Unicode"
                continue
            if units > limit:
                reasons[i] = f"text needs {units} UTF-16 code units; {sql_type(column)} holds {limit}"
        return reasons

    @staticmethod
    def _check_decimal(column: ColumnType, values: Sequence[object]) -> dict[int, str]:
        scale = decimal_scale(column)
        int_digits = DECIMAL_PRECISION - scale
        reasons: dict[int, str] = {}
        for i, v in enumerate(values):
            if v is None:
                continue
            before, places = coltypes.decimal_digits_of(to_decimal(v))
            if before > int_digits:
                reasons[i] = (
                    f"number has {before} digits before the decimal point; {sql_type(column)} holds {int_digits}"
                )
            elif places > scale:
                reasons[i] = (
                    f"number has {places} decimal places; {sql_type(column)} keeps {scale} and would round it"
                )
        return reasons

    # ------------------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[MssqlTransaction]:
        if not self._support_ready:
            with self._transaction():
                self._ensure_support()
            self._support_ready = True
        with self._transaction():
            yield MssqlTransaction(self)

    def classify(self, exc: BaseException) -> ErrorClass:
        return errors.classify(exc)

    def name_key(self, name: str) -> str:
        # The default collations (and Azure SQL's) are case-insensitive; a case-sensitive database
        # only loses names it could have told apart.
        return name.casefold()

    def reserved(self, table: str) -> str | None:
        return None  # '#' names are refused by check_identifier

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)

    def _drop(self) -> None:
        conn, self._conn, self._cur = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("closing %s: %s", self.name, exc)

    def reset(self) -> None:
        """Drop the connection; the next statement reconnects (and raises, classifiably, if it cannot)."""
        self._drop()
        self._support_ready = False
        self._types.clear()

    # ------------------------------------------------------------------------------ keyed reads
    def _catalog(self, table: str) -> set[str]:
        return {str(r[0]) for r in self.query(TSql.COLUMNS, self.sql.table(table))}

    def held_versions(self, table: str, ids: Sequence[str]) -> dict[str, int]:
        if not ids or not self._catalog(table):
            return {}
        out: dict[str, int] = {}
        wanted = [i.lower() for i in ids]
        for start in range(0, len(wanted), HELD_CHUNK):
            chunk = wanted[start : start + HELD_CHUNK]
            for rid, version in self.query(self.sql.held_versions(table, len(chunk)), *chunk):
                out[_guid_text(rid)] = int(version)
        return out

    def rows_with(self, table: str, values: Mapping[str, str]) -> list[tuple[str, int]]:
        present = self._catalog(table)
        if not values or not present or not set(values) <= present:
            return []
        rows = self.query(self.sql.rows_with(table, list(values)), *(v.lower() for v in values.values()))
        return [(_guid_text(rid), int(version)) for rid, version in rows]

    def id_versions_after(self, table: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        """At most ``limit`` rows (id, version) of ``table`` after the id ``after``, in key order."""
        params: tuple[object, ...] = (limit,) if after is None else (limit, after)
        rows = self.query(self.sql.id_versions_after(table, after is None), *params)
        return [(_guid_text(r[0]), int(r[1])) for r in rows]

    def table_rows(self, table: str) -> Iterator[dict[str, object]]:
        self.read_columns(table)
        guids = {c for c, t in self._types.get(table, {}).items() if t.kind is Kind.GUID}
        cur = self._connection()
        cur.execute(self.sql.select_all(table))
        names = [d[0] for d in cur.description or ()]
        rows = cur.fetchall()
        for row in rows:
            yield {
                n: (_guid_text(v) if n in guids and v is not None else v) for n, v in zip(names, row, strict=True)
            }

    def close(self) -> None:
        self._drop()

    # ------------------------------------------------ entity metadata: DES's tables (engine/metadata.py)
    _metadata_ready = False

    def metadata_state(self, entity: str) -> tuple[int, str] | None:
        if not self._metadata_ready and self.scalar(
            TSql.OBJECT_ID, self.sql.table(self.layout.metadata_state_table)
        ) is None:
            return None
        rows = self.query(self.sql.select_metadata_state(), entity)
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def replace_metadata(self, rows: MetadataRows) -> bool:
        sql = self.sql
        now = _naive_utc(rows.now)
        with self._transaction():
            if not self._support_ready:
                self._ensure_support()  # the schema, when metadata comes before any record
            self.applock("_metadata")  # metadata writers take turns (global option sets are shared)
            if not self._metadata_ready:
                for t in METADATA_TABLES:
                    if self.scalar(TSql.OBJECT_ID, sql.table(self.layout.metadata_table(t.name))) is None:
                        self.execute(sql.create_metadata_table(t))
                if self.scalar(TSql.OBJECT_ID, sql.table(self.layout.metadata_state_table)) is None:
                    self.execute(sql.create_metadata_state())
            found = self.query(sql.select_metadata_state(), rows.entity)
            if found and int(found[0][0]) >= rows.version:
                return False
            for t in METADATA_TABLES:
                for key in [rows.entity] if t.scope == "EntityName" else rows.global_option_sets:
                    self.execute(sql.delete_metadata(t), key)
                data = rows.rows.get(t.name, ())
                if data:
                    sizes, per_call, converted = _metadata_plan(t.insert_kinds, data)
                    self.executemany(sql.insert_metadata(t), _chunks(converted, per_call), sizes)
            if found:
                self.execute(sql.update_metadata_state(), rows.version, rows.columns, now, rows.entity)
            else:
                self.execute(sql.insert_metadata_state(), rows.entity, rows.version, rows.columns, now)
        self._support_ready = self._metadata_ready = True
        return True


_META_SQL: dict[MetaKind, str] = {
    "name": "NVARCHAR(128)",
    "text": "NVARCHAR(MAX)",
    "int": "INT",
    "bigint": "BIGINT",
    "bool": "BIT",
    "datetime": "DATETIME2(7)",
    "guid": "UNIQUEIDENTIFIER",
    "identity": "BIGINT IDENTITY(1, 1) NOT NULL PRIMARY KEY",
}
_META_TYPE: dict[MetaKind, ColumnType] = {
    "name": ColumnType(Kind.TEXT, 128),
    "text": coltypes.TEXT,
    "int": coltypes.INTEGER,  # bound as BIGINT; the values are 32-bit (the contract checks)
    "bigint": coltypes.INTEGER,
    "bool": coltypes.BOOLEAN,
    "datetime": coltypes.DATETIME,
    "guid": coltypes.GUID,
}


def _metadata_plan(
    kinds: Sequence[MetaKind], data: Sequence[tuple[object, ...]]
) -> tuple[list[tuple[int, int, int]], int, list[tuple[object, ...]]]:
    """Input sizes, rows per fast_executemany call and converted rows for one metadata table."""
    types = [_META_TYPE[k] for k in kinds]
    sizes = []
    for j, t in enumerate(types):
        width = 0
        if t.kind is Kind.TEXT:
            width = max((utf16_units(str(r[j])) for r in data if r[j] is not None), default=1)
        sizes.append(input_size(t, max(1, width)))
    converters = [_converter(t) for t in types]
    rows = [tuple(None if v is None else f(v) for f, v in zip(converters, r, strict=True)) for r in data]
    return sizes, chunk_rows(sum(map(bound_bytes, sizes))), rows
