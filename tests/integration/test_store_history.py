"""The admin store's per-minute metrics history on real SQLite files and real PostgreSQL
databases: buckets per (profile, entity, UTC minute) that add up within a minute, across threads
and store instances; the largest lag of the minute; the time window and entity filter; retention
pruning; delete; the upgrade of a version-1 store; and (hypothesis) the history sums to the
counters for any sequence of batches."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.engine.outcomes import BatchResult
from shared.store import MetricsEntry, SqlStore, StoredProfile
from shared.store.base import UNROUTED
from shared.store.migrations import MIGRATIONS

pytestmark = pytest.mark.integration

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def new_profile(s: SqlStore, name: str = "Sales") -> str:
    return s.create_profile(StoredProfile(str(uuid.uuid4()), name, ORG, "active", {"entities": ["account"]})).id


def result(entity: str = "account", *, applied: int = 0, failed: int = 0, stale: int = 0,
           changed: datetime | None = None) -> BatchResult:  # fmt: skip
    r = BatchResult(received=applied + failed + stale, applied=applied, failed=failed, stale=stale)
    c = r.entity(entity)
    c.received, c.applied, c.failed, c.stale = applied + failed + stale, applied, failed, stale
    c.last_changed_on = changed
    return r


def test_buckets_per_minute_add_up_and_keep_the_largest_lag(opened: Callable[..., SqlStore]) -> None:
    s = opened()
    clock = Clock(T0 + timedelta(seconds=10))
    s.clock = clock
    pid = new_profile(s)
    s.record(pid, result(applied=3, changed=T0))  # lag 10 s
    clock.at = T0 + timedelta(seconds=50)
    s.record(pid, result(applied=1, failed=2, changed=T0 + timedelta(seconds=45)))  # lag 5 s: the 10 s stays
    s.record(pid, result("contact", stale=4))  # no applied: no lag
    s.record(pid, BatchResult(), pending_retry=2)  # the pending gauge is not history
    clock.at = T0 + timedelta(minutes=1, seconds=5)
    s.record(pid, result(applied=2, changed=T0 + timedelta(seconds=5)))  # lag 60 s, next minute
    s.record_batch([MetricsEntry.skipped(pid, {"account": 7})])

    rows = s.metrics_history(pid, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    got = [(b.entity, b.minute, b.total, b.success, b.failure, b.stale, b.skipped, b.lag_seconds) for b in rows]
    assert got == [
        ("account", T0, 6, 4, 2, 0, 0, 10.0),
        ("account", T0 + timedelta(minutes=1), 9, 2, 0, 0, 7, 60.0),
        ("contact", T0, 4, 0, 0, 4, 0, None),
    ]
    # the window is [start, end) on the minute; the entity filter
    assert [b.minute for b in s.metrics_history(pid, T0 + timedelta(minutes=1), T0 + timedelta(hours=1))] == [
        T0 + timedelta(minutes=1)
    ]
    assert s.metrics_history(pid, T0 - timedelta(hours=1), T0) == []
    assert {b.entity for b in s.metrics_history(pid, T0, T0 + timedelta(hours=1), entity="contact")} == {"contact"}
    # the history and the counters agree
    m = {e.entity: e for e in s.metrics(pid).entities}
    assert sum(b.total for b in rows if b.entity == "account") == m["account"].total
    assert sum(b.failure for b in rows) == sum(e.failure for e in m.values())
    # another profile and the unrouted bucket have their own rows
    other = new_profile(s, "Other")
    assert s.metrics_history(other, T0, T0 + timedelta(hours=1)) == []
    s.record_batch([MetricsEntry.unrouted({"lead": 2})])
    assert [(b.entity, b.skipped) for b in s.metrics_history(UNROUTED, T0, T0 + timedelta(hours=1))] == [("lead", 2)]


def test_concurrent_batches_in_one_minute_lose_no_count(opened: Callable[..., SqlStore]) -> None:
    a, b = opened(), opened()  # two pools, as two instances would have
    clock = Clock(T0 + timedelta(seconds=1))
    a.clock = b.clock = clock
    pids = [new_profile(a, f"c{i}") for i in range(3)]

    def worker(store: SqlStore) -> None:
        for _ in range(15):
            store.record_batch([MetricsEntry.from_result(pid, result(applied=1, failed=1)) for pid in pids])

    threads = [threading.Thread(target=worker, args=(x,)) for x in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for pid in pids:
        (bucket,) = a.metrics_history(pid, T0, T0 + timedelta(minutes=1))
        assert (bucket.total, bucket.success, bucket.failure) == (120, 60, 60)


def test_old_minutes_are_pruned_and_delete_removes_the_history(opened: Callable[..., SqlStore]) -> None:
    s = opened()
    s.history_retention = timedelta(hours=2)
    clock = Clock(T0)
    s.clock = clock
    pid = new_profile(s)
    s.record(pid, result(applied=1))
    clock.at = T0 + timedelta(hours=1)
    s.record(pid, result(applied=1))
    wide = (T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert len(s.metrics_history(pid, *wide)) == 2
    clock.at = T0 + timedelta(hours=2, minutes=30)  # T0 is now past the retention, T0+1h is not
    s.record(pid, result(applied=1))
    assert [b.minute for b in s.metrics_history(pid, *wide)] == [
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=2, minutes=30),
    ]
    assert s.metrics(pid).entities[0].total == 3  # the counters are not pruned
    s.delete_profile(pid)
    assert s.metrics_history(pid, *wide) == []


def test_a_version_1_store_is_upgraded_with_its_data(store_dsn: str) -> None:
    from shared.store.postgres import PostgresStoreDialect
    from shared.store.sqlite import SqliteStoreDialect

    def dialect() -> Any:
        if store_dsn.startswith("sqlite"):
            return SqliteStoreDialect(store_dsn[len("sqlite:///") :])
        return PostgresStoreDialect(store_dsn)

    old = SqlStore(dialect(), migrations=MIGRATIONS[:1])  # as the previous build left it
    pid = new_profile(old)
    old.set_initial_sync_state(pid, "account", "Completed")
    assert old.schema_version() == 1
    old.close()
    new = SqlStore(dialect(), clock=lambda: T0)
    try:
        assert new.schema_version() == len(MIGRATIONS)  # every later migration applied too
        assert new.metrics(pid).entities[0].initial_sync_state == "Completed"  # kept
        assert new.metrics_history(pid, T0, T0 + timedelta(minutes=1)) == []  # history starts now
        new.record(pid, result(applied=1))
        assert [b.success for b in new.metrics_history(pid, T0, T0 + timedelta(minutes=1))] == [1]
    finally:
        new.close()


batch = st.lists(
    st.tuples(
        st.sampled_from(["account", "contact"]),
        st.integers(0, 5),  # applied
        st.integers(0, 3),  # failed
        st.integers(0, 3),  # stale
        st.integers(0, 4),  # skipped
        st.integers(0, 179),  # seconds after T0
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batch)
def test_the_history_sums_to_the_counters(opened: Callable[..., SqlStore], batches: list[Any]) -> None:
    s = opened()
    pid = new_profile(s, f"h-{uuid.uuid4().hex[:8]}")
    clock = Clock(T0)
    s.clock = clock
    for entity, applied, failed, stale, skipped, offset in sorted(batches, key=lambda x: x[5]):
        clock.at = T0 + timedelta(seconds=offset)
        s.record_batch([
            MetricsEntry.from_result(pid, result(entity, applied=applied, failed=failed, stale=stale)),
            MetricsEntry.skipped(pid, {entity: skipped}),
        ])  # fmt: skip
    history = s.metrics_history(pid, T0, T0 + timedelta(minutes=3))
    assert all(b.minute.second == 0 and T0 <= b.minute < T0 + timedelta(minutes=3) for b in history)
    for e in s.metrics(pid).entities:
        mine = [b for b in history if b.entity == e.entity]
        assert sum(b.total for b in mine) == e.total
        assert sum(b.success for b in mine) == e.success
        assert sum(b.failure for b in mine) == e.failure
        assert sum(b.stale for b in mine) == e.stale
        assert sum(b.skipped for b in mine) == e.skipped
        assert all(b.total == b.success + b.failure + b.stale + b.unprocessable + b.skipped for b in mine)
