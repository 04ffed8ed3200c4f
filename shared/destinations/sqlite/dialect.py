"""SQLite destination (standard library driver): the embedded default.

Statement text and type mapping live in :mod:`shared.destinations.sqlite.sqltext`; this module
orchestrates them. Writers serialize on ``BEGIN IMMEDIATE``, so the version guard (in each row's
upsert statement, and the tombstones read inside the write transaction) is exact; several processes
may share one file (WAL mode, busy timeout; replay workers also take turns on a lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from itertools import count
from typing import IO, cast

from shared.destinations.sqlite import errors
from shared.destinations.sqlite.sqltext import SqliteSql, column_type, declared_type, quote
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
    WriteSet,
    adoption_problem,
)
from shared.sqlite_wal import connect_wal

__all__ = ["SqliteDestination", "SqliteTransaction", "column_type", "declared_type", "quote"]

log = logging.getLogger(__name__)

# sqlite3 binds a bool (not exactly an int) through its adaptation protocol, which looks up
# __adapt__/__conform__ and raises and clears an AttributeError per value: ~1,200 instructions for
# every boolean. A registered adapter is found first and binds the same 1 or 0 (issue 14).
sqlite3.register_adapter(bool, int)
# None too: sqlite3 looks for an adapter of every value that is not exactly int, float, str or
# bytearray, and for None it finds none only after PrepareProtocol's missing __adapt__ has raised
# and cleared an AttributeError: ~350 ns per NULL against ~90 for an int. An adapter that returns
# None (dict.get of an empty dict, in C) binds the same NULL in ~180 ns: 300k NULLs in the 200k
# bench stream (issue 14).
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))
# A Decimal is a number a double cannot hold (shared.contract.exactjson.exact_number): bound as its exact
# text, which a DECIMAL(p, s) column (no affinity: sqltext.declared_type) keeps as it is.
sqlite3.register_adapter(Decimal, str)

BUSY_TIMEOUT_S = 60.0
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def sink_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class SqliteTransaction:
    isolates_records = True  # write() is one atomic statement per row (see write)

    def __init__(self, dest: SqliteDestination) -> None:
        self.dest = dest
        self.conn = dest.conn
        self._sp = count()

    def columns(self, table: str) -> dict[str, ColumnType] | None:
        return self.dest.read_columns(table)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        name = f"des_sp_{next(self._sp)}"
        self.conn.execute(SqliteSql.savepoint(name))
        try:
            yield
        except BaseException as exc:
            if not self.conn.in_transaction:
                # SQLite rolled the whole transaction back itself (SQLITE_FULL, SQLITE_IOERR,
                # SQLITE_NOMEM, ...): never go on writing outside it.
                if errors.classify(exc) in (ErrorClass.TRANSIENT, ErrorClass.ENVIRONMENTAL):
                    raise
                raise errors.TransactionLost(
                    f"SQLite rolled the transaction back after an error ({exc}); the batch will be retried"
                ) from exc
            self.conn.execute(SqliteSql.rollback_to(name))
            self.conn.execute(SqliteSql.release(name))
            raise
        self.conn.execute(SqliteSql.release(name))

    def _versions(self, sql: str, head: Sequence[object], ids: Sequence[str]) -> dict[str, int]:
        """id -> version for the given ids: one query, the ids passed as one JSON array parameter."""
        if not ids:
            return {}
        return dict(self.conn.execute(sql, (*head, json.dumps(ids))).fetchall())

    def write(self, ws: WriteSet) -> Applied:
        """One version-guarded statement per row; records SQLite refuses are reported, not raised.

        Raises only when nothing changed (the reads come first, and a statement that fails changes
        nothing), or :class:`errors.TransactionLost` when only the whole transaction can undo it:
        so the engine needs no savepoint around it (``isolates_records``), and SQLite journals no
        page twice.
        """
        sql = self.dest.sql
        now = sink_time(ws.now)
        # Reads first: the tombstones of every id (a small table whose pages stay cached) and the
        # live versions of the deletes; a problem with the table surfaces here, before any change.
        ids = [cast(str, r[0]) for r in ws.upserts] + [d[0] for d in ws.deletes]
        dead = self._versions(sql.tombstone_versions(), (ws.entity,), ids)
        live = self._versions(sql.live_versions(ws.table), (), [d[0] for d in ws.deletes]) if ws.deletes else {}
        rejected: dict[str, str] = {}
        upserted: list[str] = []
        if ws.upserts:
            # No pre-read of the live rows: the statement's guard decides, and its change count
            # says applied (1) or stale (0). A Python loop over execute costs about what
            # executemany does; RETURNING would cost twice that, INSERT ... SELECT a statement
            # journal per row. The sink time is a parameter (row + stamp, one tuple in C), so the
            # statement's text stays the same across batches: a literal made a new prepared
            # statement per batch, and sqlite3's statement cache kept 128 of them (+3 MiB RSS).
            rows = [r for r in ws.upserts if r[1] > dead.get(r[0], -1)] if dead else ws.upserts  # type: ignore[call-overload,operator]
            statement = sql.upsert(ws.table, ws.columns)
            stamp = (now,)
            cur = self.conn.cursor()
            run = cur.execute
            append = upserted.append
            for row in rows:
                try:
                    run(statement, row + stamp)
                except Exception as exc:
                    self._refuse(exc, cast(str, row[0]), rejected, changed=bool(upserted))
                    continue
                if cur.rowcount:
                    append(row[0])  # type: ignore[arg-type]
        # A delete wins a tie with the live row's version (the same as in one batch's reduction).
        gone = [d for d in ws.deletes if d[1] >= live.get(d[0], -1) and d[1] > dead.get(d[0], -1)]
        if gone:
            gone = self._delete(ws, gone, now, rejected, changed=bool(upserted))
        return Applied(frozenset(upserted), frozenset(d[0] for d in gone), rejected)

    def _delete(
        self, ws: WriteSet, gone: list[tuple[str, int]], now: str, rejected: dict[str, str], *, changed: bool
    ) -> list[tuple[str, int]]:
        """Delete the rows and write their tombstones (and delete log), all or nothing per record."""
        try:
            with self.savepoint():
                self._delete_rows(ws, gone, now)
            return gone
        except Exception as exc:
            if errors.classify(exc) is not ErrorClass.RECORD:
                self._refuse(exc, gone[0][0], rejected, changed=changed)
        done: list[tuple[str, int]] = []  # one record refused: find it, one savepoint per delete
        for d in gone:
            try:
                with self.savepoint():
                    self._delete_rows(ws, [d], now)
            except Exception as exc:
                self._refuse(exc, d[0], rejected, changed=changed or bool(done))
                continue
            done.append(d)
        return done

    def _delete_rows(self, ws: WriteSet, gone: list[tuple[str, int]], now: str) -> None:
        sql = self.dest.sql
        self.conn.executemany(sql.delete_older(ws.table), gone)
        stones = [(ws.entity, rid, v, now) for rid, v in gone]
        self.conn.executemany(sql.upsert_tombstones(), stones)
        if self.dest.layout.write_delete_log:
            self.conn.executemany(sql.insert_delete_log(), stones)

    def _refuse(self, exc: Exception, record_id: str, rejected: dict[str, str], *, changed: bool) -> None:
        """A statement of ``write`` failed (and changed nothing): note a refused record, or raise."""
        kind = errors.classify(exc)
        if not self.conn.in_transaction:
            # SQLite rolled the whole transaction back itself (SQLITE_FULL, SQLITE_IOERR, ...).
            if kind in (ErrorClass.TRANSIENT, ErrorClass.ENVIRONMENTAL):
                raise exc
            raise errors.TransactionLost(
                f"SQLite rolled the transaction back after an error ({exc}); the batch will be retried"
            ) from exc
        if kind is ErrorClass.RECORD:
            rejected[record_id] = f"sqlite rejected the record: {exc}"
            return
        if kind is ErrorClass.ENTITY and changed:
            # About the table, after rows of this write took effect: only the transaction can undo them.
            raise errors.TransactionLost(
                f"SQLite refused the table after part of the write ({exc}); the batch will be retried"
            ) from exc
        raise exc


class SqliteDestination:
    dialect = "sqlite"
    max_identifier_length = 1024  # SQLite has no limit of its own; keep names sane
    max_columns = 2000  # SQLITE_MAX_COLUMN's default

    def __init__(self, path: str, layout: Layout | None = None, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.layout = layout or Layout()
        self.busy_timeout = busy_timeout
        if self.layout.schema is not None:
            raise LayoutError("SQLite destinations have no schemas; leave the schema unset")
        self.path = path
        self.sql = SqliteSql(self.layout)
        self.conn = self._connect()
        # Replay workers: a file whose lock each write transaction takes before BEGIN IMMEDIATE.
        # Unlike SQLite's busy handler, which sleeps and polls, a blocked flock wakes the moment the
        # holder releases it; and only the transaction is serialized, not the engine's preparation.
        self.writer_lock: str | None = None
        self._lock_file: IO[str] | None = None
        # Commit groups (des replay, see hold_commits): write transactions left open across batches.
        self._holding = False  # transaction() leaves its transaction open (one commit per group)
        self._group_open = False  # a held transaction is open (and writer_lock held)
        self.group_commits = 0  # held transactions committed so far
        self.group_lost = False  # a held transaction was rolled back (set until the caller clears it)
        self._hold_cache_kib: int | None = None
        self._import_wal_pages: int | None = None  # start_import
        self._import_cache_kib: int | None = None  # start_import
        self._support_ready = False
        self._ours: set[str] = set()  # existing tables checked to be entity tables
        self._unwritable: dict[str, set[str]] = {}  # table -> generated columns and columns not ours
        self._registered: dict[str, set[str]] = {}  # table -> its columns that are ours (registry cache)

    def _connect(self) -> sqlite3.Connection:
        try:
            return connect_wal(self.path, self.busy_timeout, SqliteSql.SESSION)
        except sqlite3.Error as exc:
            raise ConnectionFailed(f"cannot open SQLite database {self.path!r}: {exc}") from exc

    # ------------------------------------------------------------------------------ catalog/DDL
    def read_columns(self, table: str) -> dict[str, ColumnType] | None:
        """The table's attribute columns that are ours; generated columns and columns others added
        are never written (nor added again)."""
        rows = self.conn.execute(SqliteSql.table_xinfo(table)).fetchall()
        if not rows:
            return None
        writable = {r[1]: column_type(r[2]) for r in rows if r[1] not in SYSTEM_COLUMNS and not r[6]}
        ours = self._our_columns(table, set(writable))
        self._unwritable[table] = {r[1] for r in rows if r[6]} | (set(writable) - ours)
        return {c: t for c, t in writable.items() if c in ours}

    def _our_columns(self, table: str, present: set[str]) -> set[str]:
        known = self._registered.get(table)
        if known is None or not present <= known:  # another worker may have added some
            try:
                rows = self.conn.execute(self.sql.registered_columns(), (table,)).fetchall()
            except sqlite3.OperationalError:  # no registry yet: nothing is ours
                rows = []
            known = self._registered[table] = {str(r[0]) for r in rows}
        return known

    def _register(self, table: str, columns: Iterable[str]) -> None:
        self.conn.executemany(self.sql.register_column(), [(table, c) for c in columns])
        self._registered.pop(table, None)

    def _ensure_support(self) -> None:
        if self._support_ready:
            return
        self.conn.execute(self.sql.create_tombstones())
        self.conn.execute(self.sql.create_columns_registry())
        if self.layout.write_delete_log:
            self.conn.execute(self.sql.create_delete_log())
        self._support_ready = True

    @contextmanager
    def _serialized(self) -> Iterator[None]:
        """Hold :attr:`writer_lock` (when set) for the body: one write transaction."""
        self._lock()
        try:
            yield
        finally:
            self._unlock()

    def _lock(self) -> None:
        if self.writer_lock is None:
            return
        if self._lock_file is None:
            self._lock_file = open(self.writer_lock, "a")  # noqa: SIM115 (kept open; closed by close())
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    # ------------------------------------------------------------------------------ commit groups
    def hold_commits(self, cache_kib: int | None = None) -> None:
        """From now on, :meth:`transaction` leaves its transaction open: the writes of several
        batches commit together (:meth:`commit_group`). For a bulk import (``des replay``), whose
        per-batch commits cost WAL frames and checkpoints. A batch's outcomes hold only once its
        group commits; whatever else needs a transaction of its own (DDL, entity metadata, support
        tables) commits the open group first, so a group holds row writes only. A write that fails
        inside a group rolls the whole group back and sets :attr:`group_lost`: the caller redoes its
        batches one transaction each. ``cache_kib``: this connection's page cache while holding
        (a group rewrites the same pages; a per-batch transaction's cache is kept as well)."""
        self._holding = True
        self._hold_cache_kib = cache_kib
        self._hold_settings()

    def _cache_kib(self) -> int | None:
        """The page cache this connection keeps now: a commit group's, else an import's, else None
        (SQLite's default)."""
        if self._holding and self._hold_cache_kib is not None:
            return self._hold_cache_kib
        return self._import_cache_kib

    def _cache_pragma(self) -> str:
        """The statement that sets the page cache of :meth:`_cache_kib` (SQLite's default when none)."""
        cache = self._cache_kib()
        return f"PRAGMA cache_size={SqliteSql.DEFAULT_CACHE_SIZE if cache is None else -int(cache)}"

    def _hold_settings(self) -> None:
        self.conn.execute(self._cache_pragma())
        if self._import_wal_pages is not None:
            self.conn.execute(f"PRAGMA wal_autocheckpoint={int(self._import_wal_pages)}")

    def start_import(self, wal_pages: int, cache_kib: int | None = None) -> None:
        """A bulk import (``des replay``) on this connection: it checkpoints the WAL once it holds
        ``wal_pages`` pages rather than SQLite's 1,000 (fewer, longer checkpoints: BENCHMARKS.md,
        issue 14, third pass). Only this connection's commits checkpoint later; others keep theirs.
        ``cache_kib``: its page cache for the import (a commit group's own, if any, while it holds):
        a batch's transaction touches more pages than SQLite's default 2,000 KiB keep."""
        self._import_wal_pages = wal_pages
        self._import_cache_kib = cache_kib
        self._hold_settings()

    def finish_import(self) -> None:
        """Checkpoint what the import left in the WAL and truncate it, so the WAL file does not stay
        at the import's size. Best effort and without waiting: while other connections read, SQLite
        leaves the rest to the next checkpoint."""
        if self._import_wal_pages is None:
            return
        self._import_wal_pages = None
        if self._import_cache_kib is not None:
            self._import_cache_kib = None
            self._restore_cache()
        try:
            self.conn.execute("PRAGMA wal_autocheckpoint=1000")
            self.conn.execute("PRAGMA busy_timeout=0")
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                self.conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            log.info("final checkpoint after the import left for later: %s", exc)

    def release_commits(self) -> None:
        """Commit the open group, if any, and go back to one commit per transaction."""
        try:
            self.commit_group()
        finally:
            self._holding = False
            if self._hold_cache_kib is not None:
                self._hold_cache_kib = None
                self._restore_cache()

    def _restore_cache(self) -> None:
        """Back to the page cache of :meth:`_cache_kib`, best effort (after a group or an import)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute(self._cache_pragma())

    def commit_group(self) -> None:
        """Commit the open group (its batches' outcomes now hold); nothing when none is open."""
        if not self._group_open:
            return
        try:
            self.conn.execute(SqliteSql.COMMIT)
        except BaseException:
            self.rollback_group()
            raise
        self._group_open = False
        self._unlock()
        self.group_commits += 1

    def rollback_group(self) -> None:
        """Roll the open group back (its batches must be redone) and set :attr:`group_lost`."""
        if not self._group_open:
            return
        self._group_open = False
        self.group_lost = True
        try:
            if self.conn.in_transaction:
                self.conn.execute(SqliteSql.ROLLBACK)
        except sqlite3.Error as exc:  # the connection is unusable: reset() will replace it
            log.warning("rolling a commit group back failed: %s", exc)
        finally:
            self._unlock()
            # Nothing but row writes is in a group; still, forget what was learnt inside it.
            self._support_ready = False
            self._ours.clear()
            self._registered.clear()

    def ensure_table(self, table: str, wanted: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
        self.commit_group()
        with self._serialized():
            return self._ensure_table(table, wanted)

    def _ensure_table(self, table: str, wanted: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
        self.conn.execute(SqliteSql.BEGIN)
        try:
            self._ensure_support()
            if self.conn.execute(SqliteSql.table_info(table)).fetchone() is not None:
                self._adopt(table)
            current = self.read_columns(table)
            if current is None:
                self.conn.execute(SqliteSql.create_table(table, wanted))
                self._register(table, wanted)
            else:
                widen = {}
                for c, t in wanted.items():
                    cur = current.get(c)
                    if cur is None:
                        if c not in self._unwritable.get(table, ()):  # generated, or someone else's
                            self.conn.execute(SqliteSql.add_column(table, c, t))
                            self._register(table, [c])
                    elif cur != t and coltypes.join(cur, t) == t and self.can_widen(cur, t):
                        widen[c] = t
                if widen:
                    self._rebuild(table, widen)
            result = self.read_columns(table)
            self.conn.execute(SqliteSql.COMMIT)
        except BaseException:
            self._support_ready = False  # the support tables may have been created in what rolls back
            if self.conn.in_transaction:
                self.conn.execute(SqliteSql.ROLLBACK)
            raise
        assert result is not None
        return result

    def existing_columns(self, table: str) -> dict[str, ColumnType] | None:
        self.commit_group()  # may create support tables and register columns: never inside a group
        if self.conn.execute(SqliteSql.table_info(table)).fetchone() is None:
            return None
        self._ensure_support()
        self._adopt(table)
        return self.read_columns(table)

    def _adopt(self, table: str) -> None:
        """An existing table is written only if it is an entity table (ours, or DES's)."""
        if table in self._ours:
            return
        info = self.conn.execute(SqliteSql.table_info(table)).fetchall()
        key = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        problem = adoption_problem(table, [r[1] for r in info], key, self.name_key)
        if problem is not None:
            raise EntityRefused(problem)
        if not self.conn.execute(self.sql.registered_columns(), (table,)).fetchone():
            # First sight of an entity table (DES's, or ours from before the registry): its
            # attribute columns as they are now are ours.
            self._register(table, [r[1] for r in info if r[1] not in SYSTEM_COLUMNS])
        self._ours.add(table)

    def _rebuild(self, table: str, widen: Mapping[str, ColumnType]) -> None:
        """SQLite cannot change a column's type in place: copy into a new table and swap."""
        info = self.conn.execute(SqliteSql.table_info(table)).fetchall()
        defs = [
            SqliteSql.column_definition(name, declared_type(widen[name]) if name in widen else decl, notnull, pk)
            for _cid, name, decl, notnull, _default, pk in info
        ]
        for statement in SqliteSql.rebuild(table, defs, [r[1] for r in info]):
            self.conn.execute(statement)
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
        if self._holding:
            yield from self._held_transaction()
            return
        with self._serialized():
            self._ensure_support()
            self.conn.execute(SqliteSql.BEGIN)
            try:
                yield SqliteTransaction(self)
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute(SqliteSql.ROLLBACK)
                raise
            self.conn.execute(SqliteSql.COMMIT)

    def _held_transaction(self) -> Iterator[SqliteTransaction]:
        """One batch's writes inside the open group (opened here when none is)."""
        if not self._group_open:
            self._lock()
            try:
                self._ensure_support()
                self.conn.execute(SqliteSql.BEGIN)
            except BaseException:
                self._unlock()
                raise
            self._group_open = True
        try:
            yield SqliteTransaction(self)
        except BaseException:
            self.rollback_group()
            raise

    def classify(self, exc: BaseException) -> ErrorClass:
        return errors.classify(exc)

    def name_key(self, name: str) -> str:
        return name.translate(_ASCII_LOWER)  # SQLite folds ASCII letters only

    def reserved(self, table: str) -> str | None:
        if table.translate(_ASCII_LOWER).startswith("sqlite_"):
            return f"table name {table!r} starts with 'sqlite_', which SQLite reserves for its own tables"
        return None

    def is_transient(self, exc: BaseException) -> bool:
        return errors.classify(exc) is ErrorClass.TRANSIENT

    def reset(self) -> None:
        self.rollback_group()  # closing the connection would roll it back anyway
        try:
            self.conn.close()
        finally:
            self.conn = self._connect()
        self._hold_settings()

    # ------------------------------------------------------------------------------ keyed reads
    def _catalog(self, table: str) -> set[str]:
        return {str(r[1]) for r in self.conn.execute(SqliteSql.table_info(table)).fetchall()}

    def held_versions(self, table: str, ids: Sequence[str]) -> dict[str, int]:
        if not ids or not self._catalog(table):
            return {}
        rows = self.conn.execute(SqliteSql.live_versions(table), (json.dumps([i.lower() for i in ids]),)).fetchall()
        return {str(rid).lower(): int(v) for rid, v in rows}

    def rows_with(self, table: str, values: Mapping[str, str]) -> list[tuple[str, int]]:
        present = self._catalog(table)
        if not values or not present or not set(values) <= present:
            return []
        cur = self.conn.execute(SqliteSql.rows_with(table, list(values)), [v.lower() for v in values.values()])
        return [(str(rid).lower(), int(v)) for rid, v in cur.fetchall()]

    def id_versions_after(self, table: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        """At most ``limit`` rows (id, version) of ``table`` after the id ``after``, in key order."""
        params: tuple[object, ...] = (limit,) if after is None else (after, limit)
        rows = self.conn.execute(SqliteSql.id_versions_after(table, after is None), params).fetchall()
        return [(str(r[0]).lower(), int(r[1])) for r in rows]

    def table_rows(self, table: str) -> Iterator[dict[str, object]]:
        cur = self.conn.execute(SqliteSql.select_all(table))
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row, strict=True))

    def close(self) -> None:
        self.rollback_group()  # a group not committed by now is not to be kept (release_commits commits)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self.conn.close()

    # ------------------------------------------------ entity metadata: DES's tables (engine/metadata.py)
    _metadata_ready = False

    def metadata_state(self, entity: str) -> tuple[int, str] | None:
        if not self._metadata_ready:
            found = self.conn.execute(SqliteSql.TABLE_EXISTS, (self.layout.metadata_state_table,))
            if found.fetchone() is None:
                return None
        row = self.conn.execute(self.sql.select_metadata_state(), (entity,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def replace_metadata(self, rows: MetadataRows) -> bool:
        self.commit_group()
        with self._serialized():
            return self._replace_metadata(rows)

    def _replace_metadata(self, rows: MetadataRows) -> bool:
        sql = self.sql
        self.conn.execute(SqliteSql.BEGIN)
        try:
            for statement in sql.create_metadata_tables():
                self.conn.execute(statement)
            row = self.conn.execute(sql.select_metadata_state(), (rows.entity,)).fetchone()
            if row is not None and row[0] >= rows.version:
                self.conn.execute(SqliteSql.COMMIT)
                return False
            for t in METADATA_TABLES:
                keys = [(rows.entity,)] if t.scope == "EntityName" else [(n,) for n in rows.global_option_sets]
                self.conn.executemany(sql.delete_metadata(t), keys)
                self.conn.executemany(sql.insert_metadata(t), rows.rows.get(t.name, ()))
            self.conn.execute(
                sql.upsert_metadata_state(), (rows.entity, rows.version, rows.columns, sink_time(rows.now))
            )
            self.conn.execute(SqliteSql.COMMIT)
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute(SqliteSql.ROLLBACK)
            raise
        self._metadata_ready = True
        return True
