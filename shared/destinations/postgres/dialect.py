"""PostgreSQL destination (psycopg 3): COPY into a staging table, one guarded upsert per entity.

Statement text and type mapping live in :mod:`shared.destinations.postgres.sqltext` (``PgSql``);
this module orchestrates them.

Staging: one temporary table per connection and shape of write set (columns and their staged
types), named by a digest of the shape, ``ON COMMIT DELETE ROWS``, and reused by every later batch
(a CREATE and DROP per batch cost catalog writes). Each write runs ``CREATE TEMP TABLE IF NOT
EXISTS`` in its own transaction, so a stage that is gone (rolled back with a savepoint or the
transaction, ``DISCARD TEMP``, a lost session, a transaction-mode pooler's other server session)
is there again; a second write through it in one transaction empties it first. When every
column's catalog type has a binary form the engine's values dump to (``sqltext.binary_stage_type``),
the COPY is binary (ids and uuid columns staged as text and cast by the upsert); otherwise it is
text, into a stage of the catalog types. The write statements are rendered once per connection
(``PostgresDestination.statement``).

Round trips per entity and batch: the control statements (``BEGIN``, ``SAVEPOINT``, ``RELEASE``) go
with the next statement without parameters (``PostgresTransaction``), so a batch of one entity is
the lock, the catalog read, the stage, the COPY (two), the upsert, the deletes (when any took
effect), the tombstone check (when the upsert created rows) and the ``COMMIT``. Id lists are bound
as array literals (``sqltext.array``).

Concurrency: several workers write the same tables under READ COMMITTED. Every change of a batch,
upsert or delete, first goes through one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE newer``
ordered by id, so the entity table's primary key is the per-record lock and all workers take those
locks in the same order. A delete writes a placeholder row (taking the lock), then removes it and
records a tombstone (one statement, with the delete log); when a tombstone at least as new exists
(committed meanwhile, or before), the delete is stale (not counted, not logged). The upsert reads no
tombstone: a live row is newer than its record's tombstone, so the version guard refuses what the
tombstone would, and the rows it created (it returns which) are then checked against the
tombstones by key in a new statement, which sees those committed meanwhile: a row a tombstone at
least as new supersedes (a stale upsert of a deleted record, or one that raced a newer delete: the
delete removed the row, so our write of it became an insert) is removed again, stale. The result
equals applying every notification in version order (tests/integration/test_concurrency.py forces
each of these interleavings).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.sql import Composable

from shared.destinations.postgres import errors
from shared.destinations.postgres.sqltext import (
    DEFAULT_SCHEMA,
    PgSql,
    array,
    binary_stage_type,
    column_type,
    sql_type,
)
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.ports import (
    METADATA_TABLES,
    SYSTEM_COLUMNS,
    Applied,
    ConnectionFailed,
    EntityRefused,
    ErrorClass,
    Layout,
    LayoutError,
    MetadataRows,
    TransientDestinationError,
    WriteSet,
    adoption_problem,
)

__all__ = ["PostgresDestination", "PostgresTransaction", "column_type", "sql_type"]

log = logging.getLogger(__name__)

MAX_STAGES = 16  # staging tables kept per connection (one per shape of write set)


def stage_name(shape: tuple[tuple[str, str], ...]) -> str:
    """The staging table of a shape ((column, staged type), ...): the same name for the same shape
    in every session, another for any other shape (a digest: column names may be long)."""
    return "_des_stage_" + hashlib.sha256(repr(shape).encode()).hexdigest()[:24]


_BEGIN = b"BEGIN"
_SAVEPOINT = b'SAVEPOINT "des_write"'
_RELEASE = b'RELEASE SAVEPOINT "des_write"'
_ROLLBACK_TO = b'ROLLBACK TO SAVEPOINT "des_write"; RELEASE SAVEPOINT "des_write"'
_IN_TRANSACTION = (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR)


class PostgresTransaction:
    """One write transaction (:meth:`PostgresDestination.transaction`).

    Its control statements do not take a round trip of their own: ``BEGIN``, ``SAVEPOINT`` and
    ``RELEASE SAVEPOINT`` wait for the next statement without parameters (the table lock of
    :meth:`columns`, the stage's ``CREATE TEMP TABLE IF NOT EXISTS``) and go with it, in one
    simple-protocol query; a savepoint whose scope sent nothing is never sent, and the last release
    goes with the ``COMMIT``. A body that raises after its savepoint was sent is rolled back to it
    at once. The transaction ends with ``COMMIT`` (when ``BEGIN`` was sent) or ``ROLLBACK``."""

    isolates_records = False  # set-based writes: the engine's savepoint and bisection

    def __init__(self, dest: PostgresDestination) -> None:
        self.dest = dest
        self.conn = dest.conn
        self._written: set[str] = set()  # stages holding this transaction's rows of an earlier write
        self._pending: list[bytes] = [_BEGIN]  # control statements not sent yet, in order
        self._begun = False  # BEGIN was sent
        self._savepoint: bool | None = None  # in a savepoint: whether it was sent

    def _run(self, cur: psycopg.Cursor[Any], text: bytes) -> None:
        """Execute ``text`` (statements without parameters) after the pending control statements,
        in one round trip; the cursor is left on the last statement's result."""
        if self._pending:
            text = b"; ".join([*self._pending, text])
            self._sent()
        cur.execute(text)
        while cur.nextset():
            pass

    def _flush(self, cur: psycopg.Cursor[Any]) -> None:
        """Send the pending control statements (before a statement with parameters)."""
        if self._pending:
            text = b"; ".join(self._pending)
            self._sent()
            cur.execute(text)

    def _sent(self) -> None:
        if self._pending[0] is _BEGIN:
            self._begun = True
        if self._savepoint is False:
            self._savepoint = True
        self._pending.clear()

    def columns(self, table: str) -> dict[str, ColumnType] | None:
        with self.conn.cursor() as cur:
            d = self.dest
            self._run(cur, d.statement(("lock", table), d.sql.lock_for_writes, table))
            # With parameters, so psycopg prepares it: planning this catalog query costs ~0.4 ms.
            return d.read_columns(cur, table)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        if self._savepoint is not None:
            raise RuntimeError("PostgresTransaction.savepoint() does not nest")
        self._pending.append(_SAVEPOINT)
        self._savepoint = False
        try:
            yield
        except BaseException as exc:
            sent, self._savepoint = self._savepoint, None
            if sent:
                self._rollback_to_savepoint(exc)
            else:
                self._pending.pop()  # nothing was sent in the scope: nothing to undo
            raise
        sent, self._savepoint = self._savepoint, None
        if sent:
            self._pending.append(_RELEASE)
        else:
            self._pending.pop()

    def _rollback_to_savepoint(self, exc: BaseException) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(_ROLLBACK_TO)
        except psycopg.Error as failed:
            # The transaction cannot go on (its writes after this would all fail): the whole batch
            # is retried, never bisected into per-record failures.
            raise TransientDestinationError(f"cannot roll back to the write's savepoint: {failed}") from exc

    def commit(self) -> None:
        if not self._begun:
            return  # nothing was sent
        with self.conn.cursor() as cur:
            cur.execute(b"COMMIT")  # releases the savepoint whose release is still pending
            status = cur.statusmessage
        if status != "COMMIT":  # a transaction in error "commits" as ROLLBACK
            raise TransientDestinationError(f"the write transaction ended in {status}, not COMMIT")

    def rollback(self) -> None:
        if self.conn.closed or self.conn.info.transaction_status not in _IN_TRANSACTION:
            return
        try:
            self.conn.execute(b"ROLLBACK")
        except psycopg.Error as exc:  # the connection is going: the server ends the transaction
            log.warning("rollback failed: %s", exc)

    def _stage(self, cur: psycopg.Cursor[Any], shape: tuple[tuple[str, str], ...]) -> str:
        """The session's staging table for this shape, emptied when this transaction already wrote
        through it (a second entity of the same shape, a bisected half).

        Its name is a digest of the shape, and every write runs ``CREATE TEMP TABLE IF NOT EXISTS``
        (a catalog lookup when it exists) in its own transaction: so the stage is there whatever
        happened to the session since the last batch (a savepoint or transaction that rolled back,
        ``DISCARD TEMP``, a transaction-mode pooler such as PgBouncer handing us another server
        session), and a table of that name is always of this shape. One round trip, with the
        pending control statements."""
        d = self.dest
        stage = d.stages.get(shape)
        text = b""
        if stage is None:
            if len(d.stages) >= MAX_STAGES:  # shapes of tables since widened: drop the oldest
                old = d.stages.pop(next(iter(d.stages)))
                text = d.sql.drop(old).as_bytes(self.conn) + b"; "
            stage = d.stages[shape] = stage_name(shape)
        text += d.statement(("create_stage", stage), d.sql.create_stage, stage, shape)
        if stage in self._written:
            text += b"; " + d.statement(("clear_stage", stage), d.sql.clear_stage, stage)
        self._run(cur, text)
        return stage

    def write(self, ws: WriteSet) -> Applied:
        d = self.dest
        sql = d.sql
        types = d.catalog_sql_types(ws.table)
        catalog = [types[c] for c in ws.columns]
        staged = [binary_stage_type(t) for t in catalog]
        wire = [t for t in staged if t is not None]
        binary = len(wire) == len(staged)
        shape = tuple(zip(ws.columns, wire if binary else catalog, strict=True))
        uuids = [c for c, t in zip(ws.columns, catalog, strict=True) if t == "uuid"] if binary else []
        with self.conn.cursor() as cur:
            stage = self._stage(cur, shape)
            self._written.add(stage)
            copy = d.statement(("copy", stage, str(binary), *ws.columns), sql.copy_stage, stage, ws.columns, binary)
            with cur.copy(copy) as cp:
                if binary:
                    cp.set_types(["text", "bigint", *wire])
                write_row = cp.write_row
                for row in ws.upserts:
                    write_row(row)
                if ws.deletes:
                    pad = (None,) * len(ws.columns)
                    for rid, version in ws.deletes:
                        write_row((rid, version, *pad))
            return self._apply(cur, ws, stage, uuids)

    def _apply(self, cur: psycopg.Cursor[Any], ws: WriteSet, stage: str, uuids: list[str]) -> Applied:
        d = self.dest
        sql = d.sql
        # One ordered, guarded upsert locks every record of the write set (deletes included).
        key = ("upsert", ws.table, stage, *ws.columns, "", *uuids)
        upsert = d.statement(key, sql.upsert, ws.table, stage, ws.columns, uuids)
        deletes = array([rid for rid, _ in ws.deletes])
        self._flush(cur)
        cur.execute(upsert, {"now": ws.now, "deletes": deletes})
        rows = cur.fetchall()
        won = {r[0] for r in rows}
        deleted = [(rid, v) for rid, v in ws.deletes if rid in won]
        upserted = won
        if deleted:
            upserted = won.difference([rid for rid, _ in deleted])
            # Remove the placeholder rows, write the tombstones (and the delete log): one statement.
            # A newer delete that committed while we waited for the record's lock left a newer
            # tombstone: ours is stale (the row, our placeholder, is gone either way).
            params = {
                "entity": ws.entity,
                "now": ws.now,
                "ids": array([rid for rid, _ in deleted]),
                "versions": array([v for _, v in deleted]),
            }
            cur.execute(d.statement(("delete_applied", ws.table), sql.delete_applied, ws.table), params)
            stoned = {r[0] for r in cur.fetchall()}
            if len(stoned) < len(deleted):
                deleted = [(rid, v) for rid, v in deleted if rid in stoned]
        fresh = [r[0] for r in rows if r[1] and r[0] in upserted]
        if fresh:
            # The rows the upsert created: one whose record has a tombstone at least as new (a stale
            # upsert of a deleted record, or one that raced a newer delete) goes again, stale.
            superseded = d.statement(("superseded", ws.table), sql.delete_superseded, ws.table)
            cur.execute(superseded, {"entity": ws.entity, "ids": array(fresh)})
            upserted.difference_update(r[0] for r in cur.fetchall())
        return Applied(frozenset(upserted), frozenset(rid for rid, _ in deleted))


class PostgresDestination:
    dialect = "postgresql"
    max_identifier_length = 63  # NAMEDATALEN - 1: longer names would be truncated silently
    max_columns = 1600  # MaxHeapAttributeNumber

    def __init__(self, conninfo: str, layout: Layout | None = None) -> None:
        self.layout = layout or Layout()
        self.schema = self.layout.schema or DEFAULT_SCHEMA
        if len(self.schema) > self.max_identifier_length:
            # PostgreSQL would silently truncate it and write into another schema.
            raise LayoutError(
                f"schema {self.schema!r} is longer than PostgreSQL's {self.max_identifier_length}-character limit"
            )
        self.sql = PgSql(self.schema, self.layout)
        self.conninfo = conninfo
        self.conn = self._connect()
        self._support_ready = False
        self._types: dict[str, dict[str, str]] = {}
        self._ours: set[str] = set()  # existing tables checked to be entity tables
        self._unwritable: dict[str, set[str]] = {}  # table -> generated, identity and others' columns
        self._registered: dict[str, set[str]] = {}  # table -> its columns that are ours (registry cache)
        # Staging tables this session has used, by shape ((column, staged type), ...), oldest first:
        # what MAX_STAGES counts (each write creates its stage if it is not there: _stage).
        self.stages: dict[tuple[tuple[str, str], ...], str] = {}
        self._statements: dict[tuple[str, ...], bytes] = {}

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10, application_name="des-sync")
        except psycopg.Error as exc:
            raise ConnectionFailed(f"cannot connect to PostgreSQL: {exc}") from exc

    # ------------------------------------------------------------------------------ catalog/DDL
    def read_columns(self, cur: psycopg.Cursor[Any], table: str) -> dict[str, ColumnType] | None:
        cur.execute(PgSql.COLUMNS, [self.schema, table])
        rows = cur.fetchall()
        if not rows:
            return None
        self._types[table] = {name: formatted for name, formatted, _ in rows}
        # Generated and identity columns, and columns others added, are never written nor added.
        writable = {
            name: column_type(formatted)
            for name, formatted, can_write in rows
            if can_write and name not in SYSTEM_COLUMNS
        }
        ours = self._our_columns(cur, table, set(writable))
        self._unwritable[table] = {name for name, _, _ in rows if name not in SYSTEM_COLUMNS} - ours
        return {c: t for c, t in writable.items() if c in ours}

    def _our_columns(self, cur: psycopg.Cursor[Any], table: str, present: set[str]) -> set[str]:
        known = self._registered.get(table)
        if known is None or not present <= known:  # another worker may have added some
            cur.execute(self.sql.registered_columns(), [table])
            known = self._registered[table] = {str(r[0]) for r in cur.fetchall()}
        return known

    def _register(self, cur: psycopg.Cursor[Any], table: str, columns: Iterable[str]) -> None:
        cur.execute(self.sql.register_columns(), [table, list(columns)])
        self._registered.pop(table, None)

    def statement(self, key: tuple[str, ...], build: Callable[..., Composable], *args: Any) -> bytes:
        """A write-path statement's text, rendered once per connection (composing and quoting
        one of ~100 identifiers costs more than PostgreSQL spends parsing it)."""
        text = self._statements.get(key)
        if text is None:
            if len(self._statements) >= 256:
                self._statements.clear()
            text = self._statements[key] = build(*args).as_bytes(self.conn)
        return text

    def catalog_sql_types(self, table: str) -> dict[str, str]:
        return self._types[table]

    def _lock(self, cur: psycopg.Cursor[Any], what: str) -> None:
        cur.execute(PgSql.ADVISORY_LOCK, [self.sql.lock_name(what)])

    def _ensure_support(self, cur: psycopg.Cursor[Any]) -> None:
        if self._support_ready:
            return
        self._lock(cur, "_support")
        cur.execute(PgSql.SCHEMA_EXISTS, [self.schema])
        if cur.fetchone() is None:
            cur.execute(self.sql.create_schema())
        cur.execute(self.sql.create_tombstones())
        cur.execute(self.sql.create_columns_registry())
        if self.layout.write_delete_log:
            cur.execute(self.sql.create_delete_log())
        self._support_ready = True

    def ensure_table(self, table: str, wanted: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
        support_ready = self._support_ready
        try:
            return self._ensure_table(table, wanted)
        except BaseException:
            self._support_ready = support_ready  # the support tables may have been created in what rolled back
            raise

    def _ensure_table(self, table: str, wanted: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
        sql = self.sql
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._ensure_support(cur)
            self._lock(cur, table)
            current = self.read_columns(cur, table)
            if current is None:
                cur.execute(sql.create_table(table, wanted))
                self._register(cur, table, wanted)
            else:
                if self._adopt(cur, table):
                    current = self.read_columns(cur, table) or {}
                for c, t in wanted.items():
                    cur_t = current.get(c)
                    if cur_t is None:
                        if c not in self._unwritable.get(table, ()):  # generated, identity or someone else's
                            cur.execute(sql.add_column(table, c, t))
                            self._register(cur, table, [c])
                    elif cur_t != t and coltypes.join(cur_t, t) == t and self.can_widen(cur_t, t):
                        cur.execute(PgSql.FLOAT_DIGITS)
                        cur.execute(sql.alter_type(table, c, cur_t, t))
                        log.info("widened %s.%s from %s to %s", table, c, cur_t, t)
            result = self.read_columns(cur, table)
        assert result is not None
        return result

    def existing_columns(self, table: str) -> dict[str, ColumnType] | None:
        if not self._support_ready:
            with self.conn.transaction(), self.conn.cursor() as cur:
                self._ensure_support(cur)
        with self.conn.transaction(), self.conn.cursor() as cur:
            columns = self.read_columns(cur, table)
            if columns is not None and self._adopt(cur, table):
                columns = self.read_columns(cur, table)
        return columns

    def _adopt(self, cur: psycopg.Cursor[Any], table: str) -> bool:
        """An existing table is written only if it is an entity table (ours, or DES's). At first
        sight (no columns registered: DES's table, or ours from before the registry) its attribute
        columns as they are now become ours; True then (the caller reads them again)."""
        if table in self._ours:
            return False
        cur.execute(PgSql.PRIMARY_KEY, [self.schema, table])
        key = [str(r[0]) for r in cur.fetchall()]
        problem = adoption_problem(table, list(self._types[table]), key, self.name_key)
        if problem is not None:
            raise EntityRefused(problem)
        self._ours.add(table)
        cur.execute(self.sql.registered_columns(), [table])
        if cur.fetchone() is None:
            cur.execute(PgSql.COLUMNS, [self.schema, table])
            self._register(cur, table, [r[0] for r in cur.fetchall() if r[2] and r[0] not in SYSTEM_COLUMNS])
            return True
        return False

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
        tx = PostgresTransaction(self)
        try:
            yield tx
        except BaseException:
            tx.rollback()
            raise
        tx.commit()

    def classify(self, exc: BaseException) -> ErrorClass:
        return errors.classify(exc, connection_closed=self.conn.closed)

    def name_key(self, name: str) -> str:
        return name  # every name is quoted: compared exactly

    def reserved(self, table: str) -> str | None:
        return None

    def is_transient(self, exc: BaseException) -> bool:
        return self.classify(exc) is ErrorClass.TRANSIENT

    def reset(self) -> None:
        try:
            self.conn.close()
        finally:
            self.stages.clear()  # temporary tables end with the session
            self._statements.clear()
            self.conn = self._connect()
            self._support_ready = False

    # ------------------------------------------------------------------------------ keyed reads
    def _catalog(self, cur: psycopg.Cursor[Any], table: str) -> set[str]:
        cur.execute(PgSql.COLUMNS, [self.schema, table])
        return {str(r[0]) for r in cur.fetchall()}

    def held_versions(self, table: str, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        with self.conn.cursor() as cur:
            if not self._catalog(cur, table):
                return {}
            cur.execute(self.sql.held_versions(table), [[i.lower() for i in ids]])
            return {str(rid).lower(): int(v) for rid, v in cur.fetchall()}

    def rows_with(self, table: str, values: Mapping[str, str]) -> list[tuple[str, int]]:
        if not values:
            return []
        with self.conn.cursor() as cur:
            present = self._catalog(cur, table)
            if not present or not set(values) <= present:
                return []
            cur.execute(self.sql.rows_with(table, list(values)), [v.lower() for v in values.values()])
            return [(str(rid).lower(), int(v)) for rid, v in cur.fetchall()]

    def id_versions_after(self, table: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        """At most ``limit`` rows (id, version) of ``table`` after the id ``after``, in key order."""
        params: list[object] = [limit] if after is None else [after, limit]
        with self.conn.cursor() as cur:
            cur.execute(self.sql.id_versions_after(table, after is None), params)
            return [(str(r[0]).lower(), int(r[1])) for r in cur.fetchall()]

    def table_rows(self, table: str) -> Iterator[dict[str, object]]:
        with self.conn.cursor() as cur:
            cur.execute(self.sql.select_all(table))
            names = [d.name for d in cur.description or []]
            for row in cur.fetchall():
                yield dict(zip(names, row, strict=True))

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------ entity metadata: DES's tables (engine/metadata.py)
    _metadata_ready = False

    def metadata_state(self, entity: str) -> tuple[int, str] | None:
        with self.conn.cursor() as cur:
            if not self._metadata_ready:
                cur.execute(PgSql.REGCLASS, [self.sql.table(self.layout.metadata_state_table).as_string(self.conn)])
                row = cur.fetchone()
                if row is None or row[0] is None:
                    return None
            cur.execute(self.sql.select_metadata_state(), [entity])
            found = cur.fetchone()
        return None if found is None else (int(found[0]), str(found[1]))

    def replace_metadata(self, rows: MetadataRows) -> bool:
        sql = self.sql
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._ensure_support(cur)  # the schema, when metadata comes before any record
            self._lock(cur, "_metadata")  # metadata writers take turns (global option sets are shared)
            if not self._metadata_ready:
                for statement in sql.create_metadata_tables():
                    cur.execute(statement)
            cur.execute(sql.select_metadata_state(), [rows.entity])
            found = cur.fetchone()
            if found is not None and found[0] >= rows.version:
                return False
            for t in METADATA_TABLES:
                keys = [rows.entity] if t.scope == "EntityName" else list(rows.global_option_sets)
                if keys:
                    cur.execute(sql.delete_metadata(t), [keys])
                data = rows.rows.get(t.name, ())
                if data:
                    cur.executemany(sql.insert_metadata(t), data)
            cur.execute(sql.upsert_metadata_state(), [rows.entity, rows.version, rows.columns, rows.now])
        self._metadata_ready = True
        return True
