"""SQLite destination (standard library driver): the embedded default.

All SQL text and type mapping for SQLite lives here. Writers serialize on ``BEGIN IMMEDIATE``, so
the version guard is computed from a read inside the write transaction and is exact; several
processes may share one file (WAL mode, busy timeout).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import count
from typing import cast

from shared.destinations.base import (
    CREATED,
    ID,
    METADATA_TABLES,
    MODIFIED,
    SYSTEM_COLUMNS,
    VERSION,
    Applied,
    ConnectionFailed,
    Layout,
    LayoutError,
    MetadataRows,
    MetaKind,
    WriteSet,
)
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind

log = logging.getLogger(__name__)

# sqlite3 binds a bool (not exactly an int) through its adaptation protocol, which looks up
# __adapt__/__conform__ and raises and clears an AttributeError per value: ~1,200 instructions for
# every boolean. A registered adapter is found first and binds the same 1 or 0 (issue 14).
sqlite3.register_adapter(bool, int)

BUSY_TIMEOUT_S = 60.0

_DECLARED = {
    Kind.BOOLEAN: "BOOLEAN",
    Kind.INTEGER: "INTEGER",
    Kind.FLOAT: "REAL",
    Kind.DECIMAL: "NUMERIC",
    Kind.TEXT: "TEXT",
    Kind.GUID: "GUID TEXT",  # TEXT affinity, and the catalog still says it is a GUID
    Kind.DATETIME: "DATETIME TEXT",
}
_VARCHAR = re.compile(r"^VARCHAR\((\d+)\)$")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def declared_type(t: ColumnType) -> str:
    if t.kind is Kind.TEXT and t.length is not None:
        return f"VARCHAR({t.length})"
    if t.kind is Kind.DECIMAL and t.precision is not None:
        return f"DECIMAL({t.precision},{t.scale or 0})"
    return _DECLARED[t.kind]


def column_type(declared: str) -> ColumnType:
    d = declared.upper().strip()
    for kind, name in _DECLARED.items():
        if d == name:
            return ColumnType(kind)
    m = _VARCHAR.match(d)
    if m:
        return ColumnType(Kind.TEXT, int(m.group(1)))
    if d.startswith("DECIMAL"):
        p, _, sc = d[d.index("(") + 1 : d.index(")")].partition(",")
        return ColumnType(Kind.DECIMAL, precision=int(p), scale=int(sc or 0))
    return coltypes.TEXT  # a column someone else made: treat its values as text


def sink_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class SqliteTransaction:
    def __init__(self, dest: SqliteDestination) -> None:
        self.dest = dest
        self.conn = dest.conn
        self._sp = count()

    def columns(self, table: str) -> dict[str, ColumnType] | None:
        return self.dest.read_columns(table)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        name = f"des_sp_{next(self._sp)}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        self.conn.execute(f"RELEASE {name}")

    def _versions(self, sql: str, head: Sequence[object], ids: Sequence[str]) -> dict[str, int]:
        """id -> version for the given ids: one query, the ids passed as one JSON array parameter."""
        if not ids:
            return {}
        return dict(self.conn.execute(sql, (*head, json.dumps(ids))).fetchall())

    def write(self, ws: WriteSet) -> Applied:
        q = quote
        table = q(ws.table)
        tomb = q(self.dest.layout.tombstone_table)
        ids = cast(list[str], [r[0] for r in ws.upserts]) + [d[0] for d in ws.deletes]
        live = self._versions(
            f"SELECT {q(ID)}, {q(VERSION)} FROM {table} WHERE {q(ID)} IN (SELECT value FROM json_each(?))", (), ids
        )
        dead = self._versions(
            f'SELECT "RecordId", "VersionNumber" FROM {tomb} WHERE "EntityName" = ? '
            'AND "RecordId" IN (SELECT value FROM json_each(?))',
            (ws.entity,),
            ids,
        )
        now = sink_time(ws.now)
        up = [
            (r[0], now, now, *r[1:])
            for r in ws.upserts
            if r[1] > live.get(r[0], -1) and r[1] > dead.get(r[0], -1)  # type: ignore[call-overload,operator]
        ]
        if up:
            cols = [ID, CREATED, MODIFIED, VERSION, *ws.columns]
            updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in [MODIFIED, VERSION, *ws.columns])
            self.conn.executemany(
                f"INSERT INTO {table} ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT ({q(ID)}) DO UPDATE SET {updates} "
                f"WHERE excluded.{q(VERSION)} > {table}.{q(VERSION)}",
                up,
            )
        gone = [d for d in ws.deletes if d[1] > live.get(d[0], -1) and d[1] > dead.get(d[0], -1)]
        if gone:
            self.conn.executemany(f"DELETE FROM {table} WHERE {q(ID)} = ? AND {q(VERSION)} < ?", gone)
            stones = [(ws.entity, rid, v, now) for rid, v in gone]
            self.conn.executemany(
                f"INSERT INTO {tomb} VALUES (?, ?, ?, ?) ON CONFLICT (\"EntityName\", \"RecordId\") DO UPDATE "
                'SET "VersionNumber" = excluded."VersionNumber", "SinkDeleteTime" = excluded."SinkDeleteTime" '
                'WHERE excluded."VersionNumber" > "VersionNumber"',
                stones,
            )
            if self.dest.layout.write_delete_log:
                self.conn.executemany(
                    f"INSERT INTO {q(self.dest.layout.delete_log_table)} VALUES (?, ?, ?, ?)", stones
                )
        return Applied(frozenset(r[0] for r in up), frozenset(d[0] for d in gone))  # type: ignore[misc]


class SqliteDestination:
    dialect = "sqlite"
    max_identifier_length = 1024  # SQLite has no limit of its own; keep names sane

    def __init__(self, path: str, layout: Layout | None = None, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.layout = layout or Layout()
        self.busy_timeout = busy_timeout
        if self.layout.schema is not None:
            raise LayoutError("SQLite destinations have no schemas; leave the schema unset")
        self.path = path
        self.conn = self._connect()
        self._support_ready = False

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=self.busy_timeout, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise ConnectionFailed(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        return conn

    # ------------------------------------------------------------------------------ catalog/DDL
    def read_columns(self, table: str) -> dict[str, ColumnType] | None:
        rows = self.conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
        if not rows:
            return None
        return {r[1]: column_type(r[2]) for r in rows if r[1] not in SYSTEM_COLUMNS}

    def _ensure_support(self) -> None:
        if self._support_ready:
            return
        q = quote
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q(self.layout.tombstone_table)} ("
            '"EntityName" TEXT NOT NULL, "RecordId" GUID TEXT NOT NULL, "VersionNumber" INTEGER NOT NULL, '
            '"SinkDeleteTime" DATETIME TEXT NOT NULL, PRIMARY KEY ("EntityName", "RecordId")) WITHOUT ROWID'
        )
        if self.layout.write_delete_log:
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {q(self.layout.delete_log_table)} ("
                '"EntityName" TEXT NOT NULL, "RecordId" GUID TEXT NOT NULL, "VersionNumber" INTEGER NOT NULL, '
                '"SinkDeleteTime" DATETIME TEXT NOT NULL)'
            )
        self._support_ready = True

    def ensure_table(self, table: str, wanted: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
        q = quote
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._ensure_support()
            current = self.read_columns(table)
            if current is None:
                cols = ", ".join(f"{q(c)} {declared_type(t)}" for c, t in wanted.items())
                self.conn.execute(
                    f"CREATE TABLE {q(table)} ({q(ID)} GUID TEXT NOT NULL PRIMARY KEY, "
                    f"{q(CREATED)} DATETIME TEXT NOT NULL, {q(MODIFIED)} DATETIME TEXT NOT NULL, "
                    f"{q(VERSION)} INTEGER NOT NULL{', ' + cols if cols else ''})"
                )
            else:
                widen = {}
                for c, t in wanted.items():
                    cur = current.get(c)
                    if cur is None:
                        self.conn.execute(f"ALTER TABLE {q(table)} ADD COLUMN {q(c)} {declared_type(t)}")
                    elif cur != t and coltypes.join(cur, t) == t and self.can_widen(cur, t):
                        widen[c] = t
                if widen:
                    self._rebuild(table, widen)
            result = self.read_columns(table)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        assert result is not None
        return result

    def _rebuild(self, table: str, widen: Mapping[str, ColumnType]) -> None:
        """SQLite cannot change a column's type in place: copy into a new table and swap."""
        q = quote
        info = self.conn.execute(f"PRAGMA table_info({q(table)})").fetchall()
        defs = []
        for _cid, name, decl, notnull, _default, pk in info:
            decl = declared_type(widen[name]) if name in widen else decl
            defs.append(f"{q(name)} {decl}{' NOT NULL' if notnull else ''}{' PRIMARY KEY' if pk else ''}")
        tmp = f"_des_rebuild_{table}"
        names = ", ".join(q(r[1]) for r in info)
        self.conn.execute(f"DROP TABLE IF EXISTS {q(tmp)}")
        self.conn.execute(f"CREATE TABLE {q(tmp)} ({', '.join(defs)})")
        self.conn.execute(f"INSERT INTO {q(tmp)} ({names}) SELECT {names} FROM {q(table)}")
        self.conn.execute(f"DROP TABLE {q(table)}")
        self.conn.execute(f"ALTER TABLE {q(tmp)} RENAME TO {q(table)}")
        log.info("widened %s in %s", dict(widen), table)

    def can_widen(self, current: ColumnType, wider: ColumnType) -> bool:
        return coltypes.join(current, wider) == wider

    def check_values(self, column: ColumnType, values: Sequence[object]) -> dict[int, str]:
        if column.kind is Kind.DECIMAL:
            return {
                i: "SQLite cannot store integers outside the signed 64-bit range"
                for i, v in enumerate(values)
                if type(v) is int and not coltypes.INT64_MIN <= v <= coltypes.INT64_MAX
            }
        return {}

    # ------------------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        self._ensure_support()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTransaction(self)
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc).lower()
            return any(s in text for s in ("locked", "busy", "disk i/o", "unable to open"))
        return False

    def reset(self) -> None:
        try:
            self.conn.close()
        finally:
            self.conn = self._connect()

    def table_rows(self, table: str) -> Iterator[dict[str, object]]:
        cur = self.conn.execute(f"SELECT * FROM {quote(table)}")
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row, strict=True))

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------ entity metadata: DES's tables (engine/metadata.py)
    _metadata_ready = False

    def _ensure_metadata_tables(self) -> None:
        q = quote
        for t in METADATA_TABLES:
            cols = ", ".join(
                f"{q(c)} {_META_SQL[kind]}{'' if nullable or kind == 'identity' else ' NOT NULL'}"
                for c, kind, nullable in t.columns
            )
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {q(self.layout.metadata_table(t.name))} ({cols})")
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q(self.layout.metadata_state_table)} ("
            '"EntityName" TEXT NOT NULL PRIMARY KEY, "VersionNumber" INTEGER NOT NULL, "Columns" TEXT NOT NULL, '
            '"SinkModifiedOn" DATETIME TEXT NOT NULL) WITHOUT ROWID'
        )

    def metadata_state(self, entity: str) -> tuple[int, str] | None:
        table = self.layout.metadata_state_table
        if not self._metadata_ready:
            found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
            if found.fetchone() is None:
                return None
        row = self.conn.execute(
            f'SELECT "VersionNumber", "Columns" FROM {quote(table)} WHERE "EntityName" = ?', (entity,)
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def replace_metadata(self, rows: MetadataRows) -> bool:
        q = quote
        state = q(self.layout.metadata_state_table)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._ensure_metadata_tables()
            row = self.conn.execute(
                f'SELECT "VersionNumber" FROM {state} WHERE "EntityName" = ?', (rows.entity,)
            ).fetchone()
            if row is not None and row[0] >= rows.version:
                self.conn.execute("COMMIT")
                return False
            for t in METADATA_TABLES:
                table = q(self.layout.metadata_table(t.name))
                keys = [(rows.entity,)] if t.scope == "EntityName" else [(n,) for n in rows.global_option_sets]
                self.conn.executemany(f"DELETE FROM {table} WHERE {q(t.scope)} = ?", keys)
                cols = t.insert_columns
                self.conn.executemany(
                    f"INSERT INTO {table} ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))})",
                    rows.rows.get(t.name, ()),
                )
            self.conn.execute(
                f"INSERT INTO {state} VALUES (?, ?, ?, ?) ON CONFLICT (\"EntityName\") DO UPDATE SET "
                '"VersionNumber" = excluded."VersionNumber", "Columns" = excluded."Columns", '
                '"SinkModifiedOn" = excluded."SinkModifiedOn"',
                (rows.entity, rows.version, rows.columns, sink_time(rows.now)),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self._metadata_ready = True
        return True


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
