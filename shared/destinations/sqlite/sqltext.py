"""Every statement the SQLite destination sends, and its type mapping. Values are ``?`` parameters.

Pure functions of names and types (like the SQL Server dialect's ``TSql``): the dialect
(:mod:`shared.destinations.sqlite.dialect`) only orchestrates them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.ports import CREATED, ID, METADATA_TABLES, MODIFIED, VERSION, Layout, MetadataTable, MetaKind

_DECLARED = {
    Kind.BOOLEAN: "BOOLEAN",
    Kind.INTEGER: "INTEGER",
    Kind.FLOAT: "REAL",
    Kind.DECIMAL: "DECIMAL BLOB",  # no affinity (see declared_type): a 25-digit number stays exact
    Kind.TEXT: "TEXT",
    Kind.GUID: "GUID TEXT",  # TEXT affinity, and the catalog still says it is a GUID
    Kind.DATETIME: "DATETIME TEXT",
}
_SAVEPOINT_RE = re.compile(r"^des_sp_\d{1,9}$")

_META_SQL: dict[MetaKind, str] = {
    "name": "TEXT",
    "text": "TEXT",
    "int": "INTEGER",
    "bigint": "INTEGER",
    "bool": "BOOLEAN",
    "datetime": "DATETIME TEXT",
    "guid": "GUID TEXT",
    "identity": "INTEGER PRIMARY KEY",  # the rowid: numbered by SQLite
}
# Columns of the tombstone table and of the delete log, in this order.
_STONE_COLUMNS = (
    '"EntityName" TEXT NOT NULL, "RecordId" GUID TEXT NOT NULL, "VersionNumber" INTEGER NOT NULL, '
    '"SinkDeleteTime" DATETIME TEXT NOT NULL'
)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------- types
def declared_type(t: ColumnType) -> str:
    if t.kind is Kind.TEXT and t.length is not None:
        return f"VARCHAR({t.length})"
    if t.kind is Kind.DECIMAL and t.precision is not None:
        # BLOB in the name: no affinity. SQLite would turn the exact text of a 20-digit money value
        # into a double in a NUMERIC-affinity column (``DECIMAL(p,s)``); here a number stays what
        # it was bound as: an integer or a double when a double holds it, else its exact text.
        return f"DECIMAL BLOB({t.precision},{t.scale or 0})"
    return _DECLARED[t.kind]


_OTHER_DECLARED = {
    "NUMERIC": Kind.DECIMAL,  # how an earlier version declared a decimal inferred without metadata
    "INT": Kind.INTEGER,
    "BIGINT": Kind.INTEGER,
    "SMALLINT": Kind.INTEGER,
    "TINYINT": Kind.INTEGER,
    "FLOAT": Kind.FLOAT,
    "DOUBLE": Kind.FLOAT,
    "BIT": Kind.BOOLEAN,
    "DATETIME": Kind.DATETIME,
    "DATETIME2": Kind.DATETIME,
    "UNIQUEIDENTIFIER": Kind.GUID,
    "NVARCHAR(MAX)": Kind.TEXT,
}
_NVARCHAR = re.compile(r"^N?VARCHAR\((\d+)\)$")


def column_type(declared: str) -> ColumnType:
    """The logical type of a declared column type: ours, or an existing table's (``INT``,
    ``DATETIME``, ``NVARCHAR(n)``, ``MONEY``, ``UNIQUEIDENTIFIER``, ...)."""
    d = declared.upper().strip()
    for kind, name in _DECLARED.items():
        if d == name:
            return ColumnType(kind)
    other = _OTHER_DECLARED.get(d)
    if other is not None:
        return ColumnType(other)
    if d in ("MONEY", "SMALLMONEY"):
        return ColumnType(Kind.DECIMAL, precision=19 if d == "MONEY" else 10, scale=4)
    m = _NVARCHAR.match(d)
    if m:
        return ColumnType(Kind.TEXT, int(m.group(1)))
    if d.startswith(("DECIMAL", "NUMERIC")) and "(" in d:
        p, _, sc = d[d.index("(") + 1 : d.index(")")].partition(",")
        return ColumnType(Kind.DECIMAL, precision=int(p), scale=int(sc or 0))
    return coltypes.TEXT  # a column someone else made: treat its values as text


# ------------------------------------------------------------------------------------- SQL
class SqliteSql:
    """Every statement of the SQLite destination, for one layout."""

    BEGIN = "BEGIN IMMEDIATE"  # writers serialize here: the version guard reads inside the lock
    COMMIT = "COMMIT"
    ROLLBACK = "ROLLBACK"
    SESSION = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
    DEFAULT_CACHE_SIZE = -2000  # SQLite's default page cache: 2,000 KiB
    TABLE_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.tombstones = quote(layout.tombstone_table)

    # -- savepoints (names are ours: des_sp_<n>)
    @staticmethod
    def savepoint(name: str) -> str:
        return f"SAVEPOINT {_savepoint(name)}"

    @staticmethod
    def rollback_to(name: str) -> str:
        return f"ROLLBACK TO {_savepoint(name)}"

    @staticmethod
    def release(name: str) -> str:
        return f"RELEASE {_savepoint(name)}"

    # -- catalog and DDL
    @staticmethod
    def table_info(table: str) -> str:
        """Rows (cid, name, declared type, notnull, default, pk)."""
        return f"PRAGMA table_info({quote(table)})"

    @staticmethod
    def table_xinfo(table: str) -> str:
        """Rows (cid, name, declared type, notnull, default, pk, hidden): hidden 2 or 3 is a
        generated column."""
        return f"PRAGMA table_xinfo({quote(table)})"

    def create_tombstones(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.tombstones} ({_STONE_COLUMNS}, "
            'PRIMARY KEY ("EntityName", "RecordId")) WITHOUT ROWID'
        )

    def create_columns_registry(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {quote(self.layout.columns_table)} ("
            '"TableName" TEXT NOT NULL, "ColumnName" TEXT NOT NULL, PRIMARY KEY ("TableName", "ColumnName")) '
            "WITHOUT ROWID"
        )

    def registered_columns(self) -> str:
        """Parameter: table. Rows (column name) of the table's columns that are ours."""
        return f'SELECT "ColumnName" FROM {quote(self.layout.columns_table)} WHERE "TableName" = ?'

    def register_column(self) -> str:
        """Parameters per row: table, column."""
        return f"INSERT OR IGNORE INTO {quote(self.layout.columns_table)} VALUES (?, ?)"

    def create_delete_log(self) -> str:
        return f"CREATE TABLE IF NOT EXISTS {quote(self.layout.delete_log_table)} ({_STONE_COLUMNS})"

    @staticmethod
    def create_table(table: str, columns: Mapping[str, ColumnType]) -> str:
        cols = "".join(f", {quote(c)} {declared_type(t)}" for c, t in columns.items())
        return (
            f"CREATE TABLE {quote(table)} ({quote(ID)} GUID TEXT NOT NULL PRIMARY KEY, "
            f"{quote(CREATED)} DATETIME TEXT NOT NULL, {quote(MODIFIED)} DATETIME TEXT NOT NULL, "
            f"{quote(VERSION)} INTEGER NOT NULL{cols})"
        )

    @staticmethod
    def add_column(table: str, column: str, t: ColumnType) -> str:
        return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {declared_type(t)}"

    @staticmethod
    def column_definition(name: str, declared: str, notnull: bool, pk: bool) -> str:
        return f"{quote(name)} {declared}{' NOT NULL' if notnull else ''}{' PRIMARY KEY' if pk else ''}"

    @staticmethod
    def rebuild(table: str, definitions: Sequence[str], names: Sequence[str]) -> list[str]:
        """SQLite cannot change a column's type in place: copy into a new table and swap."""
        tmp = quote(f"_des_rebuild_{table}")
        cols = ", ".join(map(quote, names))
        return [
            f"DROP TABLE IF EXISTS {tmp}",
            f"CREATE TABLE {tmp} ({', '.join(definitions)})",
            f"INSERT INTO {tmp} ({cols}) SELECT {cols} FROM {quote(table)}",
            f"DROP TABLE {quote(table)}",
            f"ALTER TABLE {tmp} RENAME TO {quote(table)}",
        ]

    @staticmethod
    def select_all(table: str) -> str:
        return f"SELECT * FROM {quote(table)}"

    @staticmethod
    def id_versions_after(table: str, first: bool) -> str:
        """Parameters: (the last id of the previous chunk unless ``first``,) the chunk size. Rows
        (id, version) in key order: the source's reconcile reads a table in bounded chunks."""
        where = "" if first else f" WHERE {quote(ID)} > ?"
        return f"SELECT {quote(ID)}, {quote(VERSION)} FROM {quote(table)}{where} ORDER BY {quote(ID)} LIMIT ?"

    # -- the write path (one entity of a batch)
    @staticmethod
    def live_versions(table: str) -> str:
        """Parameter: a JSON array of ids. Rows (id, version) of those that are live."""
        return (
            f"SELECT {quote(ID)}, {quote(VERSION)} FROM {quote(table)} "
            f"WHERE {quote(ID)} IN (SELECT value FROM json_each(?))"
        )

    @staticmethod
    def rows_with(table: str, columns: Sequence[str]) -> str:
        """Parameters: one lower-case GUID per column. Rows (id, version) whose columns hold them."""
        where = " AND ".join(f"lower({quote(c)}) = ?" for c in columns)
        return f"SELECT {quote(ID)}, {quote(VERSION)} FROM {quote(table)} WHERE {where}"

    def tombstone_versions(self) -> str:
        """Parameters: entity, a JSON array of ids. Rows (id, version) of their tombstones.

        ``CROSS JOIN`` keeps ``json_each`` the outer loop: one primary-key probe per id, without the
        ephemeral index SQLite builds for ``IN (SELECT value FROM json_each(?))`` (0.08 s instead of
        0.14 s for the 77 reads of the 200k bench stream; a plain ``JOIN`` may scan the tombstones
        per id instead). An id given twice yields its row twice."""
        return (
            f'SELECT t."RecordId", t."VersionNumber" FROM json_each(?2) AS j CROSS JOIN {self.tombstones} AS t '
            'ON t."EntityName" = ?1 AND t."RecordId" = j.value'
        )

    @staticmethod
    def upsert(table: str, columns: Sequence[str]) -> str:
        """Parameters per row: id, version, *columns, the sink time (a write set's row plus the time).
        Only a newer version updates; the connection's change count after it says whether the row
        took effect. A single-row ``VALUES`` statement, unlike ``INSERT ... SELECT``, needs no
        statement journal; its text is the same for every batch, so it stays prepared.
        """
        q = quote
        cols = [ID, CREATED, MODIFIED, VERSION, *columns]
        stamp = f"?{len(columns) + 3}"
        values = ["?1", stamp, stamp, "?2", *(f"?{i}" for i in range(3, 3 + len(columns)))]
        updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in [MODIFIED, VERSION, *columns])
        return (
            f"INSERT INTO {q(table)} ({', '.join(map(q, cols))}) VALUES ({', '.join(values)}) "
            f"ON CONFLICT ({q(ID)}) DO UPDATE SET {updates} "
            f"WHERE excluded.{q(VERSION)} > {q(table)}.{q(VERSION)}"
        )

    @staticmethod
    def delete_older(table: str) -> str:
        """Parameters per row: id, version. Removes the live row when it is not newer (a delete wins a tie)."""
        return f"DELETE FROM {quote(table)} WHERE {quote(ID)} = ? AND {quote(VERSION)} <= ?"

    def upsert_tombstones(self) -> str:
        """Parameters per row: entity, id, version, time. Only a newer version replaces a tombstone."""
        return (
            f"INSERT INTO {self.tombstones} VALUES (?, ?, ?, ?) ON CONFLICT (\"EntityName\", \"RecordId\") DO UPDATE "
            'SET "VersionNumber" = excluded."VersionNumber", "SinkDeleteTime" = excluded."SinkDeleteTime" '
            'WHERE excluded."VersionNumber" > "VersionNumber"'
        )

    def insert_delete_log(self) -> str:
        """Parameters per row: entity, id, version, time."""
        return f"INSERT INTO {quote(self.layout.delete_log_table)} VALUES (?, ?, ?, ?)"

    # -- entity metadata: DES's metadata tables (shared/engine/metadata.py)
    def create_metadata_tables(self) -> list[str]:
        statements = []
        for t in METADATA_TABLES:
            cols = ", ".join(
                f"{quote(c)} {_META_SQL[kind]}{'' if nullable or kind == 'identity' else ' NOT NULL'}"
                for c, kind, nullable in t.columns
            )
            statements.append(f"CREATE TABLE IF NOT EXISTS {quote(self.layout.metadata_table(t.name))} ({cols})")
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {quote(self.layout.metadata_state_table)} ("
            '"EntityName" TEXT NOT NULL PRIMARY KEY, "VersionNumber" INTEGER NOT NULL, "Columns" TEXT NOT NULL, '
            '"SinkModifiedOn" DATETIME TEXT NOT NULL) WITHOUT ROWID'
        )
        return statements

    def select_metadata_state(self) -> str:
        """Parameter: entity. Row (version, columns JSON)."""
        table = quote(self.layout.metadata_state_table)
        return f'SELECT "VersionNumber", "Columns" FROM {table} WHERE "EntityName" = ?'

    def delete_metadata(self, t: MetadataTable) -> str:
        """Parameter: the entity (or the global option set's name)."""
        return f"DELETE FROM {quote(self.layout.metadata_table(t.name))} WHERE {quote(t.scope)} = ?"

    def insert_metadata(self, t: MetadataTable) -> str:
        cols = t.insert_columns
        return (
            f"INSERT INTO {quote(self.layout.metadata_table(t.name))} ({', '.join(map(quote, cols))}) "
            f"VALUES ({', '.join('?' * len(cols))})"
        )

    def upsert_metadata_state(self) -> str:
        """Parameters: entity, version, columns, time."""
        return (
            f"INSERT INTO {quote(self.layout.metadata_state_table)} VALUES (?, ?, ?, ?) "
            'ON CONFLICT ("EntityName") DO UPDATE SET '
            '"VersionNumber" = excluded."VersionNumber", "Columns" = excluded."Columns", '
            '"SinkModifiedOn" = excluded."SinkModifiedOn"'
        )


def _savepoint(name: str) -> str:
    if not _SAVEPOINT_RE.match(name):
        raise ValueError(f"bad savepoint name {name!r}")
    return name
