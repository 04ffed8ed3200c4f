"""PostgreSQL destination (psycopg 3): COPY into a staging table, one guarded upsert per entity.

Concurrency: several workers write the same tables under READ COMMITTED. Every change of a batch,
upsert or delete, first goes through one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE newer``
ordered by id, so the entity table's primary key is the per-record lock and all workers take those
locks in the same order. A delete writes a placeholder row (taking the lock), then removes it and
records a tombstone; when a newer tombstone committed meanwhile, the delete is stale (not counted,
not logged). An upsert is followed by a check against tombstones committed meanwhile (a new
statement sees them), which removes a row a concurrent newer delete has superseded. The result
equals applying every notification in version order (tests/integration/test_concurrency.py forces
each of these interleavings).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import count
from typing import Any

import psycopg
from psycopg import sql

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
    Layout,
    LayoutError,
    MetadataRows,
    MetaKind,
    WriteSet,
)

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "public"
_SQL_TYPE = {
    Kind.BOOLEAN: "boolean",
    Kind.INTEGER: "bigint",
    Kind.FLOAT: "double precision",
    Kind.DECIMAL: "numeric",
    Kind.TEXT: "text",
    Kind.GUID: "uuid",
    Kind.DATETIME: "timestamp with time zone",
}
_BY_SQL = {v: k for k, v in _SQL_TYPE.items()}
_VARCHAR = re.compile(r"^character varying\((\d+)\)$")
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300"}

_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def sql_type(t: ColumnType) -> str:
    if t.kind is Kind.TEXT and t.length is not None:
        return f"character varying({t.length})"
    if t.kind is Kind.DECIMAL and t.precision is not None:
        return f"numeric({t.precision},{t.scale or 0})"
    return _SQL_TYPE[t.kind]


def column_type(formatted: str) -> ColumnType:
    kind = _BY_SQL.get(formatted)
    if kind is not None:
        return ColumnType(kind)
    m = _VARCHAR.match(formatted)
    if m:
        return ColumnType(Kind.TEXT, int(m.group(1)))
    m = _NUMERIC.match(formatted)
    if m:
        return ColumnType(Kind.DECIMAL, precision=int(m.group(1)), scale=int(m.group(2)))
    return coltypes.TEXT


class PostgresTransaction:
    def __init__(self, dest: PostgresDestination) -> None:
        self.dest = dest
        self.conn = dest.conn
        self._stage = count()

    def columns(self, table: str) -> dict[str, ColumnType] | None:
        with self.conn.cursor() as cur:
            # ROW EXCLUSIVE conflicts with ALTER TABLE's lock: no column can be added until commit.
            cur.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(self.dest.ident(table)))
            return self.dest.read_columns(cur, table)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def write(self, ws: WriteSet) -> Applied:
        d = self.dest
        table = d.ident(ws.table)
        tomb = d.ident(d.layout.tombstone_table)
        stage = sql.Identifier(f"_des_stage_{next(self._stage)}")
        types = d.catalog_sql_types(ws.table)
        cols = [sql.Identifier(c) for c in ws.columns]
        with self.conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {} ({} uuid NOT NULL, {} bigint NOT NULL{}) ON COMMIT DROP"
                ).format(
                    stage,
                    sql.Identifier(ID),
                    sql.Identifier(VERSION),
                    sql.SQL("").join(
                        sql.SQL(", {} {}").format(c, sql.SQL(types[name]))  # type: ignore[arg-type]
                        for c, name in zip(cols, ws.columns, strict=True)
                    ),
                )
            )
            copy_cols = sql.SQL(", ").join([sql.Identifier(ID), sql.Identifier(VERSION), *cols])
            pad = (None,) * len(ws.columns)
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, copy_cols)) as cp:
                for row in ws.upserts:
                    cp.write_row(row)
                for rid, version in ws.deletes:
                    cp.write_row((rid, version, *pad))
            # One ordered, guarded upsert locks every record of the write set (deletes included).
            sets = sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(c, c)
                for c in [sql.Identifier(MODIFIED), sql.Identifier(VERSION), *cols]
            )
            select_cols = sql.SQL("").join(sql.SQL(", s.{}").format(c) for c in cols)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {table} ({id}, {created}, {modified}, {version}{cols}) "
                    "SELECT s.{id}, %(now)s, %(now)s, s.{version}{select_cols} FROM {stage} s "
                    "WHERE NOT EXISTS (SELECT 1 FROM {tomb} t WHERE t.\"EntityName\" = %(entity)s "
                    "AND t.\"RecordId\" = s.{id} AND t.\"VersionNumber\" >= s.{version}) "
                    "ORDER BY s.{id} "
                    "ON CONFLICT ({id}) DO UPDATE SET {sets} "
                    "WHERE {table}.{version} < EXCLUDED.{version} "
                    "RETURNING {id}::text"
                ).format(
                    table=table,
                    tomb=tomb,
                    stage=stage,
                    id=sql.Identifier(ID),
                    created=sql.Identifier(CREATED),
                    modified=sql.Identifier(MODIFIED),
                    version=sql.Identifier(VERSION),
                    cols=sql.SQL("").join(sql.SQL(", {}").format(c) for c in cols),
                    select_cols=select_cols,
                    sets=sets,
                ),
                {"now": ws.now, "entity": ws.entity},
            )
            won = {r[0] for r in cur.fetchall()}
            deleted = [(rid, v) for rid, v in ws.deletes if rid in won]
            upserted = won.difference(rid for rid, _ in deleted)
            if deleted:
                ids = [rid for rid, _ in deleted]
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = ANY(%s::uuid[])").format(table, sql.Identifier(ID)),
                    [ids],
                )
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} SELECT %s, r, v, %s FROM unnest(%s::uuid[], %s::bigint[]) AS x(r, v) "
                        'ON CONFLICT ("EntityName", "RecordId") DO UPDATE SET '
                        '"VersionNumber" = EXCLUDED."VersionNumber", "SinkDeleteTime" = EXCLUDED."SinkDeleteTime" '
                        'WHERE {}."VersionNumber" < EXCLUDED."VersionNumber" RETURNING "RecordId"::text'
                    ).format(tomb, tomb),
                    [ws.entity, ws.now, ids, [v for _, v in deleted]],
                )
                # A newer delete that committed while we waited for the record's lock left a newer
                # tombstone: ours is stale (the row, our placeholder, is gone either way).
                stoned = {r[0] for r in cur.fetchall()}
                if len(stoned) < len(deleted):
                    deleted = [(rid, v) for rid, v in deleted if rid in stoned]
                    ids = [rid for rid, _ in deleted]
                if d.layout.write_delete_log and deleted:
                    cur.execute(
                        sql.SQL(
                            "INSERT INTO {} SELECT %s, r, v, %s FROM unnest(%s::uuid[], %s::bigint[]) AS x(r, v)"
                        ).format(d.ident(d.layout.delete_log_table)),
                        [ws.entity, ws.now, ids, [v for _, v in deleted]],
                    )
            if upserted:
                # A newer delete that committed while we waited for a lock: its tombstone wins.
                # Probe the tombstones by primary key for our ids (cheap; usually finds nothing),
                # then remove only the rows a newer tombstone supersedes.
                cur.execute(
                    sql.SQL(
                        'SELECT t."RecordId"::text, t."VersionNumber" FROM {} s '
                        'JOIN {} t ON t."EntityName" = %s AND t."RecordId" = s.{}'
                    ).format(stage, tomb, sql.Identifier(ID)),
                    [ws.entity],
                )
                ours = {r[0]: r[1] for r in ws.upserts}
                superseded = [
                    rid for rid, v in cur.fetchall() if rid in upserted and v >= ours[rid]  # type: ignore[operator]
                ]
                if superseded:
                    cur.execute(
                        sql.SQL(
                            "DELETE FROM {table} e USING {tomb} t WHERE t.\"EntityName\" = %s "
                            "AND t.\"RecordId\" = e.{id} AND t.\"VersionNumber\" >= e.{version} "
                            "AND e.{id} = ANY(%s::uuid[]) RETURNING e.{id}::text"
                        ).format(table=table, tomb=tomb, id=sql.Identifier(ID), version=sql.Identifier(VERSION)),
                        [ws.entity, superseded],
                    )
                    upserted.difference_update(r[0] for r in cur.fetchall())
            cur.execute(sql.SQL("DROP TABLE {}").format(stage))
        return Applied(frozenset(upserted), frozenset(rid for rid, _ in deleted))


class PostgresDestination:
    dialect = "postgresql"
    max_identifier_length = 63  # NAMEDATALEN - 1: longer names would be truncated silently

    def __init__(self, conninfo: str, layout: Layout | None = None) -> None:
        self.layout = layout or Layout()
        self.schema = self.layout.schema or DEFAULT_SCHEMA
        if len(self.schema) > self.max_identifier_length:
            # PostgreSQL would silently truncate it and write into another schema.
            raise LayoutError(
                f"schema {self.schema!r} is longer than PostgreSQL's {self.max_identifier_length}-character limit"
            )
        self.conninfo = conninfo
        self.conn = self._connect()
        self._support_ready = False
        self._types: dict[str, dict[str, str]] = {}

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=10, application_name="des-sync"
            )
        except psycopg.Error as exc:
            raise ConnectionFailed(f"cannot connect to PostgreSQL: {exc}") from exc

    def ident(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    # ------------------------------------------------------------------------------ catalog/DDL
    def read_columns(self, cur: psycopg.Cursor[Any], table: str) -> dict[str, ColumnType] | None:
        cur.execute(_COLUMNS_SQL, [self.schema, table])
        rows = cur.fetchall()
        if not rows:
            return None
        self._types[table] = dict(rows)
        return {name: column_type(formatted) for name, formatted in rows if name not in SYSTEM_COLUMNS}

    def catalog_sql_types(self, table: str) -> dict[str, str]:
        return self._types[table]

    def _lock(self, cur: psycopg.Cursor[Any], what: str) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"des:{self.schema}.{what}"])

    def _ensure_support(self, cur: psycopg.Cursor[Any]) -> None:
        if self._support_ready:
            return
        self._lock(cur, "_support")
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema])
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        cur.execute(
            sql.SQL(
                'CREATE TABLE IF NOT EXISTS {} ("EntityName" text NOT NULL, "RecordId" uuid NOT NULL, '
                '"VersionNumber" bigint NOT NULL, "SinkDeleteTime" timestamp with time zone NOT NULL, '
                'PRIMARY KEY ("EntityName", "RecordId"))'
            ).format(self.ident(self.layout.tombstone_table))
        )
        if self.layout.write_delete_log:
            cur.execute(
                sql.SQL(
                    'CREATE TABLE IF NOT EXISTS {} ("EntityName" text NOT NULL, "RecordId" uuid NOT NULL, '
                    '"VersionNumber" bigint NOT NULL, "SinkDeleteTime" timestamp with time zone NOT NULL)'
                ).format(self.ident(self.layout.delete_log_table))
            )
        self._support_ready = True

    def ensure_table(self, table: str, wanted: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._ensure_support(cur)
            self._lock(cur, table)
            current = self.read_columns(cur, table)
            name = self.ident(table)
            if current is None:
                defs = sql.SQL("").join(
                    sql.SQL(", {} {}").format(sql.Identifier(c), sql.SQL(sql_type(t))) for c, t in wanted.items()
                )
                cur.execute(
                    sql.SQL(
                        "CREATE TABLE {} ({} uuid PRIMARY KEY, {} timestamp with time zone NOT NULL, "
                        "{} timestamp with time zone NOT NULL, {} bigint NOT NULL{})"
                    ).format(
                        name,
                        sql.Identifier(ID),
                        sql.Identifier(CREATED),
                        sql.Identifier(MODIFIED),
                        sql.Identifier(VERSION),
                        defs,
                    )
                )
            else:
                for c, t in wanted.items():
                    cur_t = current.get(c)
                    if cur_t is None:
                        cur.execute(
                            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                                name, sql.Identifier(c), sql.SQL(sql_type(t))
                            )
                        )
                    elif cur_t != t and coltypes.join(cur_t, t) == t and self.can_widen(cur_t, t):
                        # double precision::numeric keeps only 15 significant digits; through text
                        # (shortest exact form, extra_float_digits >= 1) the double converts exactly.
                        via = sql.SQL("::text") if cur_t.kind is Kind.FLOAT else sql.SQL("")
                        cur.execute("SET LOCAL extra_float_digits = 1")
                        cur.execute(
                            sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}{}::{}").format(
                                name,
                                sql.Identifier(c),
                                sql.SQL(sql_type(t)),
                                sql.Identifier(c),
                                via,
                                sql.SQL(sql_type(t)),
                            )
                        )
                        log.info("widened %s.%s from %s to %s", table, c, cur_t, t)
            result = self.read_columns(cur, table)
        assert result is not None
        return result

    def can_widen(self, current: ColumnType, wider: ColumnType) -> bool:
        return coltypes.join(current, wider) == wider

    def check_values(self, column: ColumnType, values: Sequence[object]) -> dict[int, str]:
        if column.kind is Kind.TEXT and "\x00" in "".join(filter(None, values)):  # type: ignore[arg-type]
            return {
                i: "PostgreSQL text cannot contain NUL (\\u0000) characters"
                for i, v in enumerate(values)
                if v is not None and "\x00" in v  # type: ignore[operator]
            }
        return {}

    # ------------------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        if not self._support_ready:
            with self.conn.transaction(), self.conn.cursor() as cur:
                self._ensure_support(cur)
        with self.conn.transaction():
            yield PostgresTransaction(self)

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        state = getattr(getattr(exc, "diag", None), "sqlstate", None)
        return state in _TRANSIENT_SQLSTATES or (isinstance(exc, psycopg.Error) and self.conn.closed)

    def reset(self) -> None:
        try:
            self.conn.close()
        finally:
            self.conn = self._connect()
            self._support_ready = False

    def table_rows(self, table: str) -> Iterator[dict[str, object]]:
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {}").format(self.ident(table)))
            names = [d.name for d in cur.description or []]
            for row in cur.fetchall():
                yield dict(zip(names, row, strict=True))

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------ entity metadata: DES's tables (engine/metadata.py)
    _metadata_ready = False

    def metadata_state(self, entity: str) -> tuple[int, str] | None:
        table = self.layout.metadata_state_table
        with self.conn.cursor() as cur:
            if not self._metadata_ready:
                cur.execute("SELECT to_regclass(%s)", [self.ident(table).as_string(self.conn)])
                row = cur.fetchone()
                if row is None or row[0] is None:
                    return None
            cur.execute(
                sql.SQL('SELECT "VersionNumber", "Columns" FROM {} WHERE "EntityName" = %s').format(self.ident(table)),
                [entity],
            )
            found = cur.fetchone()
        return None if found is None else (int(found[0]), str(found[1]))

    def _create_metadata_tables(self, cur: psycopg.Cursor[Any]) -> None:
        for t in METADATA_TABLES:
            cols = sql.SQL(", ").join(
                sql.SQL("{} {}{}").format(
                    sql.Identifier(c),
                    sql.SQL(_META_SQL[kind]),
                    sql.SQL("" if nullable or kind == "identity" else " NOT NULL"),
                )
                for c, kind, nullable in t.columns
            )
            table = self.ident(self.layout.metadata_table(t.name))
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, cols))
        cur.execute(
            sql.SQL(
                'CREATE TABLE IF NOT EXISTS {} ("EntityName" character varying(128) PRIMARY KEY, '
                '"VersionNumber" bigint NOT NULL, "Columns" text NOT NULL, '
                '"SinkModifiedOn" timestamp with time zone NOT NULL)'
            ).format(self.ident(self.layout.metadata_state_table))
        )

    def replace_metadata(self, rows: MetadataRows) -> bool:
        state = self.ident(self.layout.metadata_state_table)
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._ensure_support(cur)  # the schema, when metadata comes before any record
            self._lock(cur, "_metadata")  # metadata writers take turns (global option sets are shared)
            if not self._metadata_ready:
                self._create_metadata_tables(cur)
            cur.execute(sql.SQL('SELECT "VersionNumber" FROM {} WHERE "EntityName" = %s').format(state), [rows.entity])
            found = cur.fetchone()
            if found is not None and found[0] >= rows.version:
                return False
            for t in METADATA_TABLES:
                table = self.ident(self.layout.metadata_table(t.name))
                keys = [rows.entity] if t.scope == "EntityName" else list(rows.global_option_sets)
                if keys:
                    cur.execute(
                        sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(table, sql.Identifier(t.scope)), [keys]
                    )
                data = rows.rows.get(t.name, ())
                if data:
                    names = t.insert_columns
                    cur.executemany(
                        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                            table,
                            sql.SQL(", ").join(map(sql.Identifier, names)),
                            sql.SQL(", ").join(sql.Placeholder() * len(names)),
                        ),
                        data,
                    )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} VALUES (%s, %s, %s, %s) ON CONFLICT (\"EntityName\") DO UPDATE SET "
                    '"VersionNumber" = EXCLUDED."VersionNumber", "Columns" = EXCLUDED."Columns", '
                    '"SinkModifiedOn" = EXCLUDED."SinkModifiedOn"'
                ).format(state),
                [rows.entity, rows.version, rows.columns, rows.now],
            )
        self._metadata_ready = True
        return True


_META_SQL: dict[MetaKind, str] = {
    "name": "character varying(128)",
    "text": "text",
    "int": "integer",
    "bigint": "bigint",
    "bool": "boolean",
    "datetime": "timestamp with time zone",
    "guid": "uuid",
    "identity": "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
}
