"""The admin store's initial-sync state under a concurrent first write, on a real PostgreSQL: the
UPDATE finds no row, another writer inserts it and commits, our INSERT hits the unique key; the
write runs again as an UPDATE instead of failing."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from shared.store import open_store

pytestmark = pytest.mark.integration


def test_set_initial_sync_state_survives_a_concurrent_first_insert(pg_dsn: str) -> None:
    store = open_store(pg_dsn)
    pid = str(uuid.uuid4())
    errors: list[BaseException] = []
    with psycopg.connect(pg_dsn) as other:
        # The other writer's row: inserted, not yet committed (our UPDATE cannot see it).
        other.execute(
            "INSERT INTO des_metrics (profile_id, entity, initial_sync_state) VALUES (%s, %s, %s)",
            [pid, "account", "InProgress"],
        )

        def ours() -> None:
            try:
                store.set_initial_sync_state(pid, "account", "Completed")
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=ours)
        writer.start()
        deadline = time.monotonic() + 20
        with psycopg.connect(pg_dsn, autocommit=True) as watch:
            while time.monotonic() < deadline:  # until our INSERT waits for the other's key
                row = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO%%des_metrics%%'"
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("our INSERT never waited for the other writer's row")
        other.commit()
        writer.join(timeout=20)
    assert errors == []
    (state,) = [m.initial_sync_state for m in store.metrics(pid).entities if m.entity == "account"]
    assert state == "Completed"
    store.close()
