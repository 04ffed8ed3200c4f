"""Retries through blobs against a real PostgreSQL whose access is really cut, and a real Azurite.

The destination role is made unable to log in and its sessions are terminated (the server keeps
running for everyone else), then restored. Checked: every record arrives, none twice; the counts
conserve across the first delivery, redeliveries and the retry; a crash between parking and
settling does not double-count; an exhausted retry count puts the records in the failure log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from shared.config import DestinationConfig
from shared.destinations import Layout
from shared.destinations.postgres.dialect import PostgresDestination
from shared.handlers import handle_notifications
from shared.retry.attempt import Status, process_retry_blob, run_retry_blob
from shared.retry.policy import RetryPolicy
from shared.retry.sweep import sweep_retries
from shared.root import Root, single_destination_root
from shared.storage.account import Storage
from shared.storage.blobs import RETRY
from tests.support.metrics import RecordedMetrics, note, rid
from tests.support.postgres import Switch, switchable_database

pytestmark = pytest.mark.integration


@pytest.fixture
def switch() -> Iterator[Switch]:
    with switchable_database("des_app") as sw:
        yield sw


def make_app(switch: Switch, storage: Storage, policy: RetryPolicy, metrics: RecordedMetrics) -> Root:
    dest = PostgresDestination(switch.dsn, Layout())
    c = single_destination_root(
        DestinationConfig(destination_dsn=switch.dsn, write_attempts=2),
        destination=dest, storage=storage, metrics=metrics, retry_policy=policy, profile_id="pg",
    )
    c.router.engine.backoff_seconds = 0.01
    return c


def batches() -> list[list[str]]:
    """Two Service Bus batches: creates, updates (some duplicated), a delete, an envelope, one bad body."""
    first = [json.dumps(note(i, 1, "create", name=f"v1 {i}")) for i in range(1, 41)]
    first.append(json.dumps([note(i, 2, "update", name=f"v2 {i}") for i in range(1, 11)]))
    first.append("{not json")
    second = [json.dumps(note(i, 3, "update", name=f"v3 {i}")) for i in range(5, 16)]
    second += [json.dumps(note(7, 3, "update", name="v3 7")), json.dumps(note(40, 4, "delete"))]
    return [first, second]


def expected() -> dict[str, tuple[int, str | None]]:
    want: dict[str, tuple[int, str | None]] = {rid(i): (1, f"v1 {i}") for i in range(1, 40)}
    want.update({rid(i): (2, f"v2 {i}") for i in range(1, 11)})
    want.update({rid(i): (3, f"v3 {i}") for i in range(5, 16)})
    return want


def test_destination_down_then_up_every_record_once_counts_conserve(switch: Switch, storage: Storage) -> None:
    metrics = RecordedMetrics()
    app = make_app(switch, storage, RetryPolicy(count=5, interval_seconds=0), metrics)
    first, second = batches()
    up = handle_notifications(first, app).final()  # up: applied at once (the reduction buffer makes 10 stale)
    assert (up.applied, up.stale, up.unprocessable) == (40, 10, 1)
    switch.down()
    parked = handle_notifications(second, app).final()  # down: parked, the function returns normally
    assert (parked.received, parked.applied, parked.failed) == (0, 0, 0)
    [state] = list(storage.retries.states())
    assert (state.count, state.attempt, state.profile_id) == (13, 0, "pg")
    assert "connect" in state.last_error.lower() or "terminat" in state.last_error.lower()
    assert metrics.pending == 13
    # Still down: a retry is rescheduled, the blob stays.
    outcome = process_retry_blob(state.name, app.retries)
    assert (outcome.status, outcome.attempt) == (Status.RESCHEDULED, 1)
    assert storage.retries.state(state.name).attempt == 1
    switch.up()
    outcome = process_retry_blob(state.name, app.retries)
    assert outcome.status is Status.RESOLVED
    assert outcome.result is not None
    assert outcome.result.conserved
    assert switch.rows() == expected()  # every record, newest version, the deleted one gone
    assert list(storage.stores.names(RETRY)) == []
    t = metrics.totals
    assert metrics.conserved()
    assert metrics.pending == 0
    assert (t.received, t.unprocessable) == (51 + 13, 1)
    assert t.applied + t.stale == 50 + 13  # each notification one outcome, none counted twice
    app.router.close()


def test_crash_between_park_and_settle_does_not_double_count(switch: Switch, storage: Storage) -> None:
    metrics = RecordedMetrics()
    app = make_app(switch, storage, RetryPolicy(count=5, interval_seconds=0), metrics)
    first, _ = batches()
    switch.down()
    metrics.fail_next = 1  # the process dies right after the retry blob was written
    with pytest.raises(RuntimeError, match="process died"):
        handle_notifications(first, app)
    assert storage.retries.pending() == 50
    assert metrics.calls == 0
    # Service Bus redelivers the unsettled batch; the destination is still down: same blob, no second copy.
    handle_notifications(first, app)
    assert storage.retries.pending() == 50
    assert len(list(storage.retries.states())) == 1
    assert metrics.pending == 50
    # And again, now with the destination back: applied from the message itself...
    switch.up()
    redelivered = handle_notifications(first, app).final()
    assert (redelivered.applied, redelivered.stale) == (40, 10)
    # ...then the parked copy resolves as stale: no record twice, the pending gauge back to zero.
    report = sweep_retries(app.retries)
    assert report.processed == {"resolved": 1}
    t = metrics.totals
    assert metrics.conserved()
    assert metrics.pending == 0
    assert t.applied == 40  # not 80
    want = {rid(i): (2, f"v2 {i}") if i <= 10 else (1, f"v1 {i}") for i in range(1, 41)}
    assert switch.rows() == want
    app.router.close()


def test_retry_count_exhausted_records_go_to_the_failure_log(switch: Switch, storage: Storage) -> None:
    metrics = RecordedMetrics()
    app = make_app(switch, storage, RetryPolicy(count=2, interval_seconds=0), metrics)
    _, second = batches()
    switch.down()
    handle_notifications(second, app)
    [state] = list(storage.retries.states())
    assert process_retry_blob(state.name, app.retries).status is Status.RESCHEDULED
    outcome = process_retry_blob(state.name, app.retries)
    assert (outcome.status, outcome.attempt) == (Status.EXHAUSTED, 2)
    assert list(storage.stores.names(RETRY)) == []
    log_rows = list(storage.failure_log.rows("pg"))
    assert len(log_rows) == 13
    assert {r["RecordId"] for r in log_rows} == {rid(i) for i in [*range(5, 16), 7, 40]}
    assert all(r["FailureReason"].startswith("destination unavailable after 2 retries") for r in log_rows)
    assert {r["ChangeType"] for r in log_rows} == {"update", "delete"}
    parked = list(storage.parked.entries("pg"))
    assert len(parked) == 13
    assert parked[0]["notification"]["entity"] == "account"
    assert metrics.conserved()
    assert metrics.pending == 0
    assert metrics.totals.failed == 13
    switch.up()
    app.router.close()


def test_retry_count_zero_logs_at_once(switch: Switch, storage: Storage) -> None:
    metrics = RecordedMetrics()
    app = make_app(switch, storage, RetryPolicy(count=0, interval_seconds=5), metrics)
    switch.down()
    result = handle_notifications([json.dumps(note(1, 1, "create", name="x"))], app).final()
    assert (result.received, result.failed) == (1, 1)
    assert list(storage.stores.names(RETRY)) == []
    assert "retry count 0" in next(iter(storage.failure_log.rows("pg")))["FailureReason"]
    switch.up()
    app.router.close()


def test_long_intervals_are_not_waited_for_in_a_worker(switch: Switch, storage: Storage) -> None:
    metrics = RecordedMetrics()
    app = make_app(switch, storage, RetryPolicy(count=3, interval_seconds=600, inline_wait_seconds=2), metrics)
    switch.down()
    handle_notifications([json.dumps(note(1, 1, "create", name="later"))], app)
    [state] = list(storage.retries.states())
    slept: list[float] = []
    outcome = run_retry_blob(state.name, app.retries, sleep=slept.append)
    assert outcome.status is Status.NOT_DUE  # 10 minutes away: returns at once
    assert slept == []
    assert sweep_retries(app.retries).seen == 0  # not due for the sweeper either
    switch.up()
    due = state.not_before + timedelta(seconds=1)
    assert sweep_retries(app.retries, now=due).processed == {"resolved": 1}
    assert switch.rows() == {rid(1): (1, "later")}
    app.router.close()
