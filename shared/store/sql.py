"""One :class:`~shared.store.base.Store` implementation over DB-API drivers; dialects own the SQL.

The profile statements are portable (``?`` markers, converted per driver). The metrics upsert is
per dialect: ``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL, ``MERGE`` on SQL
Server; all rows of a batch go in one statement (chunked only past the driver's parameter limit).
The per-minute history gets the same kind of upsert in the same transaction.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.engine.outcomes import BatchResult
from shared.store import migrations as mig
from shared.store.base import (
    HISTORY_RETENTION,
    PROFILE_LEVEL,
    DuplicateName,
    EntityDelta,
    EntityMetrics,
    ExportStatus,
    HistoryBucket,
    MetricsEntry,
    ProfileExists,
    ProfileMetrics,
    ProfileNotFound,
    RevisionConflict,
    StoredProfile,
    StoreError,
    StoreUnavailable,
    utcnow,
)

log = logging.getLogger(__name__)

PROFILES = "des_profiles"
METRICS = "des_metrics"
VERSIONS = "des_store_version"
SOURCE_CURSORS = "des_source_cursors"  # shared/source/dataverse/cursors.py
SOURCE_SEEN = "des_source_seen"
HISTORY = "des_metrics_history"

METRIC_COLUMNS = (
    "profile_id", "entity", "total", "success", "failure", "stale", "unprocessable", "skipped",
    "pending_retry", "last_export_date", "last_export_status", "last_changed_on",
)  # fmt: skip
COUNTERS = ("total", "success", "failure", "stale", "unprocessable", "skipped", "pending_retry")
HISTORY_COLUMNS = (
    "profile_id", "entity", "minute", "total", "success", "failure", "stale", "unprocessable", "skipped", "lag_ms",
)  # fmt: skip
HISTORY_COUNTERS = ("total", "success", "failure", "stale", "unprocessable", "skipped")
_PROFILE_COLUMNS = "id, name, organization_id, state, definition, revision, created_at, updated_at"


class Cursor(ABC):
    """The DB-API cursor subset the store uses (sqlite3, psycopg and pyodbc cursors all fit)."""

    rowcount: int

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    @abstractmethod
    def fetchone(self) -> Any: ...

    @abstractmethod
    def fetchall(self) -> Any: ...


class StoreDialect(ABC):
    """Connections, names, types and the few statements that differ per database."""

    name: str
    max_params: int  # per statement, with margin

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """A cursor inside one transaction: committed when the block ends, rolled back on error."""

    @abstractmethod
    def reader(self) -> AbstractContextManager[Any]:
        """A cursor for reads (autocommit)."""

    @abstractmethod
    def table(self, name: str) -> str:
        """The quoted, schema-qualified name of one of the store's tables."""

    @abstractmethod
    def lock_migrations(self, cur: Any) -> None:
        """Inside the migration transaction: serialize concurrent migrators."""

    @abstractmethod
    def create_version_table(self, cur: Any) -> None: ...

    @abstractmethod
    def metrics_upsert(self, rows: int) -> str:
        """One statement adding ``rows`` rows of :data:`METRIC_COLUMNS` to the counters."""

    @abstractmethod
    def history_upsert(self, rows: int) -> str:
        """One statement adding ``rows`` rows of :data:`HISTORY_COLUMNS` to the per-minute buckets
        (counters added, ``lag_ms`` the larger)."""

    def sql(self, text: str) -> str:
        """Parameter markers: the store writes ``?``."""
        return text

    def ts_in(self, value: datetime | None) -> Any:
        return value

    def ts_out(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.fromisoformat(str(value)).astimezone(UTC)

    @abstractmethod
    def is_unique_violation(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def is_unavailable(self, exc: BaseException) -> bool: ...

    def migration_names(self) -> dict[str, str]:
        return {
            "profiles": self.table(PROFILES),
            "profiles_bare": self.table(PROFILES),
            "metrics": self.table(METRICS),
            "profiles_org_index": self.quote("des_profiles_org"),
            "profiles_pk": self.quote("des_profiles_pk"),
            "profiles_name_uq": self.quote("des_profiles_name_uq"),
            "metrics_pk": self.quote("des_metrics_pk"),
            "source_cursors": self.table(SOURCE_CURSORS),
            "source_cursors_pk": self.quote("des_source_cursors_pk"),
            "source_seen": self.table(SOURCE_SEEN),
            "source_seen_pk": self.quote("des_source_seen_pk"),
            "history": self.table(HISTORY),
            "history_pk": self.quote("des_metrics_history_pk"),
            "history_minute_index": self.quote("des_metrics_history_minute"),
        }

    @abstractmethod
    def quote(self, identifier: str) -> str: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, without secrets (for logs and /health)."""

    @abstractmethod
    def close(self) -> None: ...


class SqlStore:
    """Profiles and metrics in three tables of one database (see :mod:`shared.store.base`)."""

    def __init__(
        self,
        dialect: StoreDialect,
        *,
        migrations: Sequence[mig.Migration] = mig.MIGRATIONS,
        migrate: bool = True,
        history_retention: timedelta = HISTORY_RETENTION,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        mig.check_sequence(migrations)
        self.history_retention = history_retention
        self.clock = clock
        self._pruned_minute: datetime | None = None  # the last minute this instance pruned the history in
        self.d = dialect
        self.dialect = dialect.name
        self.migrations = tuple(migrations)
        self._p = dialect.table(PROFILES)
        self._m = dialect.table(METRICS)
        self._v = dialect.table(VERSIONS)
        self._h = dialect.table(HISTORY)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                dialect.close()
                raise

    def __repr__(self) -> str:
        return f"SqlStore({self.d.describe()})"

    # ------------------------------------------------------------------------------ plumbing
    def _run(self, what: str, work: Any) -> Any:
        try:
            return work()
        except StoreError:
            raise
        except Exception as exc:
            if self.d.is_unavailable(exc):
                raise StoreUnavailable(f"admin store ({self.d.describe()}) unavailable during {what}: {exc}") from exc
            raise

    # ----------------------------------------------------------------------------- migrations
    def migrate(self) -> int:
        def work() -> int:
            with self.d.transaction() as cur:
                self.d.lock_migrations(cur)
                self.d.create_version_table(cur)
                cur.execute(self.d.sql(f"SELECT MAX(version) FROM {self._v}"))
                row = cur.fetchone()
                current = int(row[0]) if row and row[0] is not None else 0
                known = mig.latest(self.migrations)
                if current > known:
                    raise StoreError(
                        f"the admin store's schema is at version {current}, newer than this build knows "
                        f"({known}); deploy the newer build or restore a matching database"
                    )
                names = self.d.migration_names()
                for m in self.migrations:
                    if m.version <= current:
                        continue
                    statements = m.statements.get(self.d.name)
                    if statements is None:
                        raise StoreError(f"migration {m.version} has no statements for {self.d.name}")
                    for statement in statements:
                        cur.execute(statement.format(**names))
                    cur.execute(
                        self.d.sql(f"INSERT INTO {self._v} (version, name, applied_at) VALUES (?, ?, ?)"),
                        (m.version, m.name, self.d.ts_in(utcnow())),
                    )
                    log.info("admin store: applied migration %s (%s)", m.version, m.name)
                return max(current, known)

        return int(self._run("migration", work))

    def schema_version(self) -> int:
        def work() -> int:
            with self.d.reader() as cur:
                cur.execute(self.d.sql(f"SELECT MAX(version) FROM {self._v}"))
                row = cur.fetchone()
                return int(row[0]) if row and row[0] is not None else 0

        return int(self._run("schema_version", work))

    def ping(self) -> None:
        def work() -> None:
            with self.d.reader() as cur:
                cur.execute(self.d.sql(f"SELECT COUNT(*) FROM {self._v}"))
                cur.fetchone()

        try:
            self._run("ping", work)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"admin store ({self.d.describe()}) did not answer: {exc}") from exc

    # ------------------------------------------------------------------------------- profiles
    def _row_to_profile(self, row: Sequence[Any]) -> StoredProfile:
        created, updated = self.d.ts_out(row[6]), self.d.ts_out(row[7])
        assert created is not None
        assert updated is not None
        return StoredProfile(
            id=str(row[0]),
            name=str(row[1]),
            organization_id=str(row[2]),
            state=str(row[3]),
            definition=json.loads(row[4]),
            revision=int(row[5]),
            created_at=created,
            updated_at=updated,
        )

    def create_profile(self, profile: StoredProfile) -> StoredProfile:
        p = profile

        def work() -> StoredProfile:
            try:
                with self.d.transaction() as cur:
                    self._check_unique(cur, p.id, p.name_key, existing=False)
                    cur.execute(
                        self.d.sql(
                            f"INSERT INTO {self._p} (id, name, name_key, organization_id, state, definition, "
                            "revision, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        ),
                        (
                            p.id,
                            p.name,
                            p.name_key,
                            p.organization_id,
                            p.state,
                            _dump(p.definition),
                            1,
                            self.d.ts_in(p.created_at),
                            self.d.ts_in(p.updated_at),
                        ),
                    )
            except Exception as exc:
                if self.d.is_unique_violation(exc):  # a concurrent create won the race
                    with self.d.reader() as cur:
                        self._check_unique(cur, p.id, p.name_key, existing=False)
                    raise DuplicateName(f"a profile named {p.name!r} already exists") from exc
                raise
            return StoredProfile(p.id, p.name, p.organization_id, p.state, p.definition, 1, p.created_at, p.updated_at)

        return self._run("create_profile", work)  # type: ignore[no-any-return]

    def _check_unique(self, cur: Any, profile_id: str, name_key: str, *, existing: bool) -> None:
        if not existing:
            cur.execute(self.d.sql(f"SELECT 1 FROM {self._p} WHERE id = ?"), (profile_id,))
            if cur.fetchone() is not None:
                raise ProfileExists(f"a profile with id {profile_id} already exists")
        cur.execute(self.d.sql(f"SELECT id FROM {self._p} WHERE name_key = ? AND id <> ?"), (name_key, profile_id))
        if cur.fetchone() is not None:
            raise DuplicateName("another profile already has this name (names are unique, ignoring case)")

    def get_profile(self, profile_id: str) -> StoredProfile | None:
        def work() -> StoredProfile | None:
            with self.d.reader() as cur:
                cur.execute(self.d.sql(f"SELECT {_PROFILE_COLUMNS} FROM {self._p} WHERE id = ?"), (profile_id.lower(),))
                row = cur.fetchone()
            return None if row is None else self._row_to_profile(row)

        return self._run("get_profile", work)  # type: ignore[no-any-return]

    def list_profiles(
        self, *, organization_id: str | None = None, states: Sequence[str] | None = None
    ) -> list[StoredProfile]:
        where: list[str] = []
        params: list[Any] = []
        if organization_id is not None:
            where.append("organization_id = ?")
            params.append(organization_id.lower())
        if states is not None:
            if not states:
                return []
            where.append("state IN (" + ", ".join("?" for _ in states) + ")")
            params.extend(states)
        clause = (" WHERE " + " AND ".join(where)) if where else ""

        def work() -> list[StoredProfile]:
            with self.d.reader() as cur:
                cur.execute(self.d.sql(f"SELECT {_PROFILE_COLUMNS} FROM {self._p}{clause} ORDER BY name_key"), params)
                rows = cur.fetchall()
            return [self._row_to_profile(r) for r in rows]

        return self._run("list_profiles", work)  # type: ignore[no-any-return]

    def update_profile(self, profile: StoredProfile, *, expected_revision: int | None = None) -> StoredProfile:
        p = profile
        now = utcnow()

        def work() -> StoredProfile:
            try:
                with self.d.transaction() as cur:
                    cur.execute(self.d.sql(f"SELECT revision, created_at FROM {self._p} WHERE id = ?"), (p.id,))
                    row = cur.fetchone()
                    if row is None:
                        raise ProfileNotFound(f"no profile with id {p.id}")
                    revision, created = int(row[0]), self.d.ts_out(row[1])
                    if expected_revision is not None and revision != expected_revision:
                        raise RevisionConflict(
                            f"profile {p.id} is at revision {revision}, not {expected_revision}: read it again"
                        )
                    self._check_unique(cur, p.id, p.name_key, existing=True)
                    cur.execute(
                        self.d.sql(
                            f"UPDATE {self._p} SET name = ?, name_key = ?, organization_id = ?, state = ?, "
                            "definition = ?, revision = ?, updated_at = ? WHERE id = ? AND revision = ?"
                        ),
                        (
                            p.name,
                            p.name_key,
                            p.organization_id,
                            p.state,
                            _dump(p.definition),
                            revision + 1,
                            self.d.ts_in(now),
                            p.id,
                            revision,
                        ),
                    )
                    if cur.rowcount != 1:
                        raise RevisionConflict(f"profile {p.id} changed concurrently: read it again")
            except Exception as exc:
                if self.d.is_unique_violation(exc):
                    raise DuplicateName(
                        "another profile already has this name (names are unique, ignoring case)"
                    ) from exc
                raise
            assert created is not None
            return StoredProfile(p.id, p.name, p.organization_id, p.state, p.definition, revision + 1, created, now)

        return self._run("update_profile", work)  # type: ignore[no-any-return]

    def delete_profile(self, profile_id: str) -> bool:
        pid = profile_id.lower()

        def work() -> bool:
            with self.d.transaction() as cur:
                cur.execute(self.d.sql(f"DELETE FROM {self._m} WHERE profile_id = ?"), (pid,))
                cur.execute(self.d.sql(f"DELETE FROM {self._h} WHERE profile_id = ?"), (pid,))
                cur.execute(self.d.sql(f"DELETE FROM {self._p} WHERE id = ?"), (pid,))
                return bool(cur.rowcount == 1)

        return bool(self._run("delete_profile", work))

    # -------------------------------------------------------------------------------- metrics
    def record(self, profile_id: str, result: BatchResult, *, pending_retry: int = 0) -> None:
        self.record_batch([MetricsEntry.from_result(profile_id, result, pending_retry=pending_retry)])

    def record_batch(self, entries: Sequence[MetricsEntry]) -> None:
        at = self.clock()
        now = self.d.ts_in(at)
        merged: dict[tuple[str, str], EntityDelta] = {}
        for entry in entries:
            for entity, delta in entry.entities.items():
                if delta.empty():
                    continue
                cur = merged.get((entry.profile_id, entity))
                merged[(entry.profile_id, entity)] = delta if cur is None else _add(cur, delta)
        if not merged:
            return
        rows: list[tuple[Any, ...]] = []
        # Sorted keys: concurrent batches lock rows in the same order (no deadlock between them).
        for (pid, entity), d in sorted(merged.items()):
            touched = d.status is not None or entity == PROFILE_LEVEL
            rows.append(
                (
                    pid,
                    entity,
                    d.received,
                    d.applied,
                    d.failed,
                    d.stale,
                    d.unprocessable,
                    d.skipped,
                    d.pending_retry,
                    now if touched else None,
                    d.status.value if d.status else None,
                    self.d.ts_in(d.last_changed_on),
                )
            )
        minute = at.replace(second=0, microsecond=0)
        history = _history_rows(merged, at, self.d.ts_in(minute))
        per_statement = max(1, self.d.max_params // len(METRIC_COLUMNS))
        per_history = max(1, self.d.max_params // len(HISTORY_COLUMNS))
        prune = self._pruned_minute != minute
        cutoff = self.d.ts_in(minute - self.history_retention)

        def work() -> None:
            with self.d.transaction() as cur:
                for i in range(0, len(rows), per_statement):
                    chunk = rows[i : i + per_statement]
                    cur.execute(self.d.metrics_upsert(len(chunk)), [v for row in chunk for v in row])
                for i in range(0, len(history), per_history):
                    chunk = history[i : i + per_history]
                    cur.execute(self.d.history_upsert(len(chunk)), [v for row in chunk for v in row])
                if prune:  # once per minute per instance: drop what is past the retention
                    cur.execute(self.d.sql(f"DELETE FROM {self._h} WHERE minute < ?"), (cutoff,))

        self._run("record_batch", work)
        if prune:
            self._pruned_minute = minute

    def metrics_history(
        self, profile_id: str, start: datetime, end: datetime, *, entity: str | None = None
    ) -> list[HistoryBucket]:
        pid = profile_id.lower()
        cols = ", ".join(HISTORY_COLUMNS[1:])
        where = "profile_id = ? AND minute >= ? AND minute < ?"
        params: list[Any] = [pid, self.d.ts_in(start), self.d.ts_in(end)]
        if entity is not None:
            where += " AND entity = ?"
            params.append(entity)

        def work() -> list[HistoryBucket]:
            with self.d.reader() as cur:
                cur.execute(self.d.sql(f"SELECT {cols} FROM {self._h} WHERE {where} ORDER BY entity, minute"), params)
                rows = cur.fetchall()
            out: list[HistoryBucket] = []
            for r in rows:
                when = self.d.ts_out(r[1])
                assert when is not None
                out.append(
                    HistoryBucket(
                        entity=str(r[0]), minute=when, total=int(r[2]), success=int(r[3]), failure=int(r[4]),
                        stale=int(r[5]), unprocessable=int(r[6]), skipped=int(r[7]),
                        lag_seconds=None if r[8] is None else int(r[8]) / 1000.0,
                    )
                )  # fmt: skip
            return out

        return self._run("metrics_history", work)  # type: ignore[no-any-return]

    def metrics(self, profile_id: str) -> ProfileMetrics:
        pid = profile_id.lower()
        cols = ", ".join(METRIC_COLUMNS[1:]) + ", initial_sync_state"

        def work() -> ProfileMetrics:
            with self.d.reader() as cur:
                cur.execute(self.d.sql(f"SELECT {cols} FROM {self._m} WHERE profile_id = ? ORDER BY entity"), (pid,))
                rows = cur.fetchall()
            entities: list[EntityMetrics] = []
            pending, last_batch = 0, None
            for r in rows:
                if r[0] == PROFILE_LEVEL:
                    pending, last_batch = int(r[7]), self.d.ts_out(r[8])
                    continue
                entities.append(
                    EntityMetrics(
                        entity=str(r[0]),
                        total=int(r[1]),
                        success=int(r[2]),
                        failure=int(r[3]),
                        stale=int(r[4]),
                        unprocessable=int(r[5]),
                        skipped=int(r[6]),
                        pending_retry=int(r[7]),
                        last_export_date=self.d.ts_out(r[8]),
                        last_export_status=r[9],
                        last_changed_on=self.d.ts_out(r[10]),
                        initial_sync_state=str(r[11]),
                    )
                )
            dates = [e.last_export_date for e in entities if e.last_export_date] + ([last_batch] if last_batch else [])
            return ProfileMetrics(pid, entities, max(0, pending), max(dates) if dates else None)

        return self._run("metrics", work)  # type: ignore[no-any-return]

    def set_initial_sync_state(self, profile_id: str, entity: str, state: str) -> None:
        pid = profile_id.lower()

        def work() -> None:
            with self.d.transaction() as cur:
                cur.execute(
                    self.d.sql(f"UPDATE {self._m} SET initial_sync_state = ? WHERE profile_id = ? AND entity = ?"),
                    (state, pid, entity),
                )
                if cur.rowcount == 0:
                    cur.execute(
                        self.d.sql(f"INSERT INTO {self._m} (profile_id, entity, initial_sync_state) VALUES (?, ?, ?)"),
                        (pid, entity, state),
                    )

        self._run("set_initial_sync_state", work)

    def close(self) -> None:
        self.d.close()


def _dump(definition: Any) -> str:
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))


def _add(a: EntityDelta, b: EntityDelta) -> EntityDelta:
    newest = max((t for t in (a.last_changed_on, b.last_changed_on) if t is not None), default=None)
    status = b.status or a.status
    if a.status and b.status and a.status != b.status:
        status = ExportStatus.PARTIAL
    return EntityDelta(
        received=a.received + b.received,
        applied=a.applied + b.applied,
        failed=a.failed + b.failed,
        stale=a.stale + b.stale,
        unprocessable=a.unprocessable + b.unprocessable,
        skipped=a.skipped + b.skipped,
        pending_retry=a.pending_retry + b.pending_retry,
        last_changed_on=newest,
        status=status,
    )


def _history_rows(merged: dict[tuple[str, str], EntityDelta], at: datetime, minute_in: Any) -> list[tuple[Any, ...]]:
    """The batch's rows of the per-minute history (the profile-level pending gauge is not history)."""
    rows: list[tuple[Any, ...]] = []
    for (pid, entity), d in sorted(merged.items()):
        if entity == PROFILE_LEVEL:
            continue
        counters = (d.received, d.applied, d.failed, d.stale, d.unprocessable, d.skipped)
        lag = None
        if d.last_changed_on is not None and d.applied:
            lag = max(0, round((at - d.last_changed_on).total_seconds() * 1000))
        if not any(counters) and lag is None:
            continue
        rows.append((pid, entity, minute_in, *counters, lag))
    return rows


def history_upsert_on_conflict(table: str, rows: int, marker: str) -> str:
    """SQLite and PostgreSQL: one multi-row INSERT ... ON CONFLICT adding to the minute's buckets."""
    cols = ", ".join(HISTORY_COLUMNS)
    one = "(" + ", ".join(marker for _ in HISTORY_COLUMNS) + ")"
    sets = [f"{c} = h.{c} + excluded.{c}" for c in HISTORY_COUNTERS]
    sets.append(
        "lag_ms = CASE WHEN h.lag_ms IS NULL OR excluded.lag_ms > h.lag_ms "
        "THEN COALESCE(excluded.lag_ms, h.lag_ms) ELSE h.lag_ms END"
    )
    return (
        f"INSERT INTO {table} AS h ({cols}) VALUES " + ", ".join(one for _ in range(rows))
        + " ON CONFLICT (profile_id, entity, minute) DO UPDATE SET " + ", ".join(sets)
    )  # fmt: skip


def upsert_on_conflict(table: str, rows: int, marker: str) -> str:
    """SQLite and PostgreSQL: one multi-row INSERT ... ON CONFLICT adding to the counters."""
    cols = ", ".join(METRIC_COLUMNS)
    one = "(" + ", ".join(marker for _ in METRIC_COLUMNS) + ")"
    sets = [f"{c} = m.{c} + excluded.{c}" for c in COUNTERS]
    sets += [
        "last_export_date = COALESCE(excluded.last_export_date, m.last_export_date)",
        "last_export_status = COALESCE(excluded.last_export_status, m.last_export_status)",
        "last_changed_on = CASE WHEN m.last_changed_on IS NULL OR excluded.last_changed_on > m.last_changed_on "
        "THEN COALESCE(excluded.last_changed_on, m.last_changed_on) ELSE m.last_changed_on END",
    ]
    return (
        f"INSERT INTO {table} AS m ({cols}) VALUES " + ", ".join(one for _ in range(rows))
        + " ON CONFLICT (profile_id, entity) DO UPDATE SET " + ", ".join(sets)
    )  # fmt: skip
