"""Environmental destination errors (here: a read-only PostgreSQL database, SQLSTATE 25006) park the
batch and are retried with a growing interval beyond the retry count: never failure-logged. Once
the database can write again, every record arrives. Real PostgreSQL, real Azurite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from shared.config import DestinationConfig
from shared.destinations import Layout
from shared.destinations.postgres.dialect import PostgresDestination
from shared.handlers import handle_notifications
from shared.retry.attempt import Status, process_retry_blob
from shared.retry.policy import RetryPolicy
from shared.root import Root, single_destination_root
from shared.storage.account import Storage
from tests.support.metrics import RecordedMetrics, note, rid
from tests.support.postgres import Switch, switchable_database

pytestmark = pytest.mark.integration


@pytest.fixture
def switch() -> Iterator[Switch]:
    with switchable_database("des_env") as sw:
        yield sw


def read_only(switch: Switch, on: bool) -> None:
    with psycopg.connect(switch.admin, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")  # this session may still write
        database = conn.info.dbname
        setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
        conn.execute(sql.SQL("ALTER DATABASE {} " + setting).format(sql.Identifier(database)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [switch.role])


def test_a_read_only_database_parks_the_batch_past_the_retry_count_and_never_logs_a_failure(
    switch: Switch, storage: Storage
) -> None:
    read_only(switch, True)
    metrics = RecordedMetrics()
    dest = PostgresDestination(switch.dsn, Layout())
    app: Root = single_destination_root(
        DestinationConfig(destination_dsn=switch.dsn, write_attempts=2),
        destination=dest, storage=storage, metrics=metrics, retry_policy=RetryPolicy(count=1, interval_seconds=0),
        profile_id="pg",
    )  # fmt: skip
    app.router.engine.backoff_seconds = 0.01
    bodies = [json.dumps(note(i, 1, "create", name=f"v{i}")) for i in range(1, 6)]
    result = handle_notifications(bodies, app).final()
    assert result.failed == 0  # parked, pending: nothing final yet
    [state] = list(storage.retries.states())
    later = datetime.now(UTC)
    for attempt in (1, 2, 3):  # a count of 1 would have given up at the first retry
        later += timedelta(hours=2)
        outcome = process_retry_blob(state.name, app.retries, now=later)
        assert (outcome.status, outcome.attempt) == (Status.RESCHEDULED, attempt)
        assert outcome.not_before is not None
        assert outcome.not_before - later >= timedelta(seconds=2**attempt)  # growing, not the profile's 0 s
    assert list(storage.failure_log.rows("pg")) == []
    read_only(switch, False)
    outcome = process_retry_blob(state.name, app.retries, now=later + timedelta(hours=2))
    assert outcome.status is Status.RESOLVED
    assert set(switch.rows()) == {rid(i) for i in range(1, 6)}
    assert metrics.conserved()
    assert metrics.totals.failed == 0
    dest.close()
