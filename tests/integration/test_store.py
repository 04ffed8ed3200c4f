"""The admin store on real SQLite files and real PostgreSQL databases: profiles, metrics that add
up across batches, threads and restarts, one statement per batch, and versioned migrations."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.engine.outcomes import BatchResult
from shared.store import (
    DuplicateName,
    MetricsEntry,
    ProfileExists,
    ProfileNotFound,
    RevisionConflict,
    SqlStore,
    StoredProfile,
    StoreError,
    open_store,
)
from shared.store.base import PROFILE_LEVEL, UNROUTED
from shared.store.migrations import MIGRATIONS, Migration
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def profile(name: str = "Sales", **kw: Any) -> StoredProfile:
    return StoredProfile(
        kw.pop("id", str(uuid.uuid4())),
        name,
        ORG,
        kw.pop("state", "draft"),
        kw.pop("definition", {"entities": ["account"]}),
    )


def result(
    entity: str = "account", *, applied: int = 0, stale: int = 0, failed: int = 0, changed: datetime | None = None
) -> BatchResult:
    r = BatchResult(received=applied + stale + failed, applied=applied, stale=stale, failed=failed)
    c = r.entity(entity)
    c.received, c.applied, c.stale, c.failed, c.last_changed_on = (
        applied + stale + failed,
        applied,
        stale,
        failed,
        changed,
    )
    return r


# --------------------------------------------------------------------------------- profiles
def test_profile_crud_and_constraints(opened: Callable[..., SqlStore]) -> None:
    s = opened()
    p = s.create_profile(profile("Sales"))
    assert s.get_profile(p.id.upper()) == p
    with pytest.raises(DuplicateName):
        s.create_profile(profile("SALES"))
    with pytest.raises(ProfileExists):
        s.create_profile(profile("Other", id=p.id))
    q = s.create_profile(profile("Marketing", state="active"))
    assert [x.name for x in s.list_profiles()] == ["Marketing", "Sales"]
    assert [x.id for x in s.list_profiles(states=["active"])] == [q.id]
    assert s.list_profiles(organization_id=str(uuid.uuid4())) == []
    upd = s.update_profile(
        StoredProfile(p.id, "Sales EU", ORG, "active", {"entities": ["account", "contact"]}), expected_revision=1
    )
    assert upd.revision == 2
    assert upd.created_at == p.created_at
    with pytest.raises(RevisionConflict):
        s.update_profile(StoredProfile(p.id, "x", ORG, "active", {}), expected_revision=1)
    with pytest.raises(DuplicateName):
        s.update_profile(StoredProfile(p.id, "marketing", ORG, "active", {}))
    with pytest.raises(ProfileNotFound):
        s.update_profile(StoredProfile(str(uuid.uuid4()), "y", ORG, "active", {}))
    assert s.get_profile(p.id).definition == {"entities": ["account", "contact"]}  # type: ignore[union-attr]
    assert s.delete_profile(p.id)
    assert not s.delete_profile(p.id)
    assert s.get_profile(p.id) is None


def test_concurrent_updates_keep_one_winner(opened: Callable[..., SqlStore]) -> None:
    s = opened()
    p = s.create_profile(profile())
    outcomes: list[str] = []

    def update(i: int) -> None:
        try:
            s.update_profile(StoredProfile(p.id, f"n{i}", ORG, "draft", {}), expected_revision=1)
            outcomes.append("ok")
        except RevisionConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=update, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
    assert s.get_profile(p.id).revision == 2  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- metrics
def test_metrics_add_up_and_survive_a_restart(store_dsn: str, opened: Callable[..., SqlStore]) -> None:
    s = opened()
    pid = s.create_profile(profile()).id
    s.record(pid, result(applied=3, failed=1, changed=T0), pending_retry=5)
    s.record(pid, result(applied=2, stale=4, changed=T0 - timedelta(hours=1)), pending_retry=-5)
    s.record(pid, result("contact", failed=2))
    s.record_batch([MetricsEntry.skipped(pid, {"account": 7})])
    s.close()
    again = opened()  # a new process, say
    m = again.metrics(pid)
    by = {e.entity: e for e in m.entities}
    acc = by["account"]
    assert (acc.total, acc.success, acc.failure, acc.stale, acc.skipped) == (17, 5, 1, 4, 7)
    assert acc.last_changed_on == T0  # the newest, not the last written
    assert acc.last_export_status == "Success"  # the last batch that exported account
    assert by["contact"].last_export_status == "Failure"
    assert by["contact"].initial_sync_state == "NotStarted"
    assert m.pending_retry == 0
    assert m.last_batch_at is not None
    assert PROFILE_LEVEL not in by


def test_one_statement_per_batch_for_many_profiles(opened: Callable[..., SqlStore]) -> None:
    s = opened()
    ids = [s.create_profile(profile(f"p{i}")).id for i in range(5)]
    sent: list[str] = []
    real = s.d.transaction

    class Counting:
        def __init__(self, cur: Any) -> None:
            self.cur = cur

        def execute(self, sql: str, params: Any = ()) -> Any:
            sent.append(sql)
            return self.cur.execute(sql, params)

    from contextlib import contextmanager

    @contextmanager
    def counting() -> Iterator[Any]:
        with real() as cur:
            yield Counting(cur)

    s.d.transaction = counting  # type: ignore[method-assign]
    s.clock = lambda: T0  # one minute: the history is pruned on its first batch only
    entries = [MetricsEntry.from_result(pid, result(applied=i + 1), pending_retry=1) for i, pid in enumerate(ids)]
    entries.append(MetricsEntry.unrouted({"lead": 3, "task": 1}))
    s.record_batch(entries)
    assert [q.split()[0:3] for q in sent] == [
        ["INSERT", "INTO", s.d.table("des_metrics")],
        ["INSERT", "INTO", s.d.table("des_metrics_history")],
        ["DELETE", "FROM", s.d.table("des_metrics_history")],
    ]
    sent.clear()
    s.record_batch(entries)
    s.d.transaction = real  # type: ignore[method-assign]
    assert len(sent) == 2, sent  # counters and history: one statement each
    assert [s.metrics(pid).entities[0].success for pid in ids] == [2, 4, 6, 8, 10]
    assert {e.entity: e.skipped for e in s.metrics(UNROUTED).entities} == {"lead": 6, "task": 2}


def test_concurrent_batches_lose_no_count(opened: Callable[..., SqlStore]) -> None:
    s = opened()
    pids = [s.create_profile(profile(f"c{i}")).id for i in range(3)]
    other = opened()  # a second pool/connection, as another instance would have

    def worker(store: SqlStore) -> None:
        for _ in range(15):
            store.record_batch([MetricsEntry.from_result(pid, result(applied=1, stale=1)) for pid in pids])

    threads = [threading.Thread(target=worker, args=(st,)) for st in (s, other, s, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for pid in pids:
        e = s.metrics(pid).entities[0]
        assert (e.total, e.success, e.stale) == (120, 60, 60)


def test_delete_removes_metrics_and_initial_sync_state(opened: Callable[..., SqlStore]) -> None:
    s = opened()
    pid = s.create_profile(profile()).id
    s.set_initial_sync_state(pid, "account", "Completed")
    s.record(pid, result(applied=1))
    assert s.metrics(pid).entities[0].initial_sync_state == "Completed"
    s.delete_profile(pid)
    assert s.metrics(pid).entities == []


# ------------------------------------------------------------------------------- migrations
def test_migrations_are_applied_once_and_versioned(store_dsn: str, opened: Callable[..., SqlStore]) -> None:
    s = opened()
    assert s.schema_version() == len(MIGRATIONS)
    assert s.migrate() == len(MIGRATIONS)  # idempotent
    pid = s.create_profile(profile()).id
    extra = Migration(
        len(MIGRATIONS) + 1,
        "a later migration",
        {d: ["CREATE TABLE des_test_extra (id integer PRIMARY KEY)"] for d in ("sqlite", "postgresql", "mssql")},
    )
    upgraded = SqlStore(type(s.d)(*_dialect_args(store_dsn)), migrations=[*MIGRATIONS, extra])
    try:
        assert upgraded.schema_version() == len(MIGRATIONS) + 1
        assert upgraded.get_profile(pid) is not None  # data kept
    finally:
        upgraded.close()
    with pytest.raises(StoreError, match="newer than this build"):
        opened()  # the old build refuses the newer schema


def _dialect_args(dsn: str) -> tuple[Any, ...]:
    return (dsn[len("sqlite:///") :],) if dsn.startswith("sqlite") else (dsn,)


def test_concurrent_starts_migrate_once(store_dsn: str) -> None:
    stores: list[SqlStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(open_store(store_dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert {st.schema_version() for st in stores} == {len(MIGRATIONS)}
    finally:
        for st in stores:
            st.close()


def test_postgres_store_in_its_own_schema() -> None:
    with fresh_database() as dsn:
        s = open_store(dsn, schema="desadmin")
        try:
            s.create_profile(profile())
            import psycopg

            with psycopg.connect(dsn) as conn:
                tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'desadmin'")}
            assert {"des_profiles", "des_metrics", "des_store_version"} <= tables
        finally:
            s.close()


def test_bad_dsns_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported admin store"):
        open_store("mysql://u:secretpw@h/db")
    with pytest.raises(StoreError, match="no schemas"):
        open_store(f"sqlite:///{tmp_path / 'x.db'}", schema="abc")
    with pytest.raises(StoreError, match="alphanumeric"):
        open_store("postgresql://u@h/db", schema="a;b")
