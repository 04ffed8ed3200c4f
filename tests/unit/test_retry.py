"""The retry logic (shared/retry/) on in-memory fakes of the blob stores (tests/support/fakes.py)
and a real SQLite destination: parking, attempts, rescheduling, giving up, the sweeper, poison.
The same paths run on Azurite in tests/integration/test_retry_*.py."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.contract.parse import parse_bodies
from shared.destinations import ConnectionFailed, Layout, TransientDestinationError
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.engine.engine import SyncEngine
from shared.retry.attempt import Status, process_retry_blob, run_retry_blob
from shared.retry.batch import M_COUNTED
from shared.retry.park import park_batch
from shared.retry.poison import Receipt, handle_receipt, is_ours, parse_receipt
from shared.retry.policy import RetryPolicy
from shared.retry.ports import RetryDeps
from shared.retry.sweep import POISON_THRESHOLD, sweep_retries
from shared.routing import FixedRouter
from shared.storage.blobs import M_ATTEMPT, M_NOT_BEFORE, RETRY, parse_iso
from shared.storage.claimcheck import Resolution
from tests.support.fakes import FakeClock, FakePayloads, FakeRejects, FakeRetryBlobs, FakeUnprocessableKeeper
from tests.support.metrics import RecordedMetrics, note, rid


@dataclass
class Parts:
    db: Path
    deps: RetryDeps
    blobs: FakeRetryBlobs
    clock: FakeClock
    rejects: FakeRejects
    metrics: RecordedMetrics
    keeper: FakeUnprocessableKeeper

    def rows(self) -> dict[str, str]:
        with sqlite3.connect(self.db) as conn:
            try:
                return dict(conn.execute('SELECT "Id", name FROM account').fetchall())
            except sqlite3.OperationalError:
                return {}

    def park(self, *notes: dict[str, object]) -> str:
        bodies = [json.dumps(n) for n in notes]
        park_batch(self.deps, parse_bodies(bodies), Resolution(), ConnectionError("connection refused"))
        [state] = list(self.blobs.states())
        return state.name


def parts_of(tmp_path: Path, policy: RetryPolicy) -> Parts:
    db = tmp_path / "dest.db"
    engine = SyncEngine(SqliteDestination(str(db), Layout(), busy_timeout=0.05), attempts=1)
    engine.backoff_seconds = 0.0
    rejects, metrics, clock = FakeRejects(), RecordedMetrics(), FakeClock()
    router = FixedRouter("px", engine, policy, rejects, metrics)
    blobs, keeper = FakeRetryBlobs(clock), FakeUnprocessableKeeper()
    return Parts(db, RetryDeps(blobs, FakePayloads(), keeper, router, clock), blobs, clock, rejects, metrics, keeper)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    p = parts_of(tmp_path, RetryPolicy(count=3, interval_seconds=10, inline_wait_seconds=0))
    yield p
    assert isinstance(p.deps.router, FixedRouter)
    p.deps.router.close()


@pytest.fixture
def locked(parts: Parts) -> Iterator[None]:
    """Another writer holds the destination database: a real lock, a transient error."""
    with sqlite3.connect(parts.db) as conn:
        conn.execute('CREATE TABLE IF NOT EXISTS "hold" (x)')
    holder = sqlite3.connect(parts.db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_parked_batch_is_counted_once_and_resolves_when_due(parts: Parts) -> None:
    name = parts.park(note(1, 1, "create", name="a"), note(2, 1, "create", name="b"))
    assert parts.park(note(1, 1, "create", name="a"), note(2, 1, "create", name="b")) == name  # redelivery
    assert parts.metrics.pending == 2  # the redelivery did not count it again
    assert parts.blobs.state(name).raw[M_COUNTED] == "1"
    assert process_retry_blob(name, parts.deps).status is Status.NOT_DUE
    parts.clock.advance(10)
    outcome = process_retry_blob(name, parts.deps)
    assert (outcome.status, outcome.attempt) == (Status.RESOLVED, 1)
    assert parts.rows() == {rid(1): "a", rid(2): "b"}
    assert list(parts.blobs.states()) == []
    assert (parts.metrics.pending, parts.metrics.totals.applied) == (0, 2)
    assert parts.metrics.conserved()
    assert process_retry_blob(name, parts.deps).status is Status.GONE


def test_a_leased_blob_is_left_to_its_worker(parts: Parts) -> None:
    name = parts.park(note(1, 1, "create", name="a"))
    parts.clock.advance(10)
    lease = parts.blobs.lease(name)
    assert lease is not None
    assert process_retry_blob(name, parts.deps).status is Status.BUSY
    parts.clock.advance(61)  # the lease expired (the worker died): the next attempt takes it
    assert process_retry_blob(name, parts.deps).status is Status.RESOLVED


def test_an_unavailable_destination_reschedules_then_fails_every_notification(parts: Parts, locked: None) -> None:
    name = parts.park(note(1, 1, "create", name="a"), note(2, 1, "create", name="b"))
    for attempt in (1, 2):
        parts.clock.advance(10)
        outcome = process_retry_blob(name, parts.deps)
        assert (outcome.status, outcome.attempt) == (Status.RESCHEDULED, attempt)
        state = parts.blobs.state(name)
        assert state.raw[M_ATTEMPT] == str(attempt)
        assert parse_iso(state.raw[M_NOT_BEFORE]) == parts.clock() + timedelta(seconds=10)
        assert parts.blobs.blobs[name].lease_id is None  # released for the next attempt
    parts.clock.advance(10)
    outcome = process_retry_blob(name, parts.deps)
    assert (outcome.status, outcome.attempt) == (Status.EXHAUSTED, 3)
    assert [f.record_id for f in parts.rejects.failed] == [rid(1), rid(2)]
    assert all(f.reason.startswith("destination unavailable after 3 retries") for f in parts.rejects.failed)
    assert list(parts.blobs.states()) == []
    assert (parts.metrics.pending, parts.metrics.totals.failed) == (0, 2)
    assert parts.metrics.conserved()


def test_retry_count_zero_fails_at_once(tmp_path: Path) -> None:
    p = parts_of(tmp_path, RetryPolicy(count=0))
    parsed = parse_bodies([json.dumps(note(1, 1, "create", name="a")), "{broken"])
    result = park_batch(p.deps, parsed, Resolution(), TimeoutError("down"))
    assert (result.received, result.failed, result.unprocessable) == (2, 1, 1)
    assert list(p.blobs.states()) == []
    assert [f.record_id for f in p.rejects.failed] == [rid(1)]
    assert [u.body for u in p.rejects.kept] == ["{broken"]
    assert (p.metrics.pending, p.metrics.totals.received) == (0, 2)


def test_the_blob_trigger_waits_only_within_its_inline_budget(tmp_path: Path) -> None:
    p = parts_of(tmp_path, RetryPolicy(count=3, interval_seconds=2, inline_wait_seconds=5))
    name = p.park(note(1, 1, "create", name="a"))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        p.clock.advance(seconds)

    outcome = run_retry_blob(name, p.deps, sleep=sleep, monotonic=lambda: p.clock().timestamp())
    assert outcome.status is Status.RESOLVED
    assert slept == [2.0]


def test_the_sweeper_gives_up_on_a_blob_that_keeps_crashing(parts: Parts) -> None:
    name = parts.park(note(1, 1, "create", name="a"), note(2, 1, "create", name="b"))
    parts.blobs.make_unreadable(name)
    parts.clock.advance(10)
    for _ in range(POISON_THRESHOLD - 1):
        report = sweep_retries(parts.deps)
        assert (report.seen, report.crashed, report.given_up) == (1, 1, 0)
    report = sweep_retries(parts.deps)
    assert (report.crashed, report.given_up) == (1, 1)
    [(profile, container, source, reason)] = parts.keeper.kept
    assert (profile, container, source) == ("px", RETRY, name)
    assert f"processing raised {POISON_THRESHOLD} times" in reason
    assert list(parts.blobs.states()) == []
    assert (parts.metrics.pending, parts.metrics.totals.unprocessable) == (0, 2)
    assert parts.metrics.conserved()


def test_a_poison_receipt_puts_a_readable_blob_in_the_failure_log(parts: Parts) -> None:
    name = parts.park(note(1, 1, "create", name="a"))
    receipt = parse_receipt(json.dumps({"ContainerName": RETRY, "BlobName": name}))
    assert receipt is not None
    assert is_ours(receipt)
    assert handle_receipt(receipt, parts.deps) == "failed"
    assert [f.record_id for f in parts.rejects.failed] == [rid(1)]
    assert "poison queue" in parts.rejects.failed[0].reason
    assert handle_receipt(receipt, parts.deps) == "gone"
    assert (parts.metrics.pending, parts.metrics.totals.failed) == (0, 1)


def test_which_poison_receipts_are_ours() -> None:
    host = base64.b64encode(json.dumps({
        "Type": "BlobTrigger", "FunctionId": "Host.Functions.retry_blobs", "ContainerName": RETRY,
        "BlobName": "p/k.json",
    }).encode()).decode()  # fmt: skip
    assert parse_receipt(host) == Receipt(RETRY, "p/k.json", "Host.Functions.retry_blobs")  # base64, as the host writes
    assert is_ours(parse_receipt(host))
    assert not is_ours(parse_receipt(json.dumps({"ContainerName": "data", "BlobName": "x"})))
    assert not is_ours(Receipt(RETRY, "x", "Host.Functions.archive"))  # another function on a 'retry' container
    assert parse_receipt("not json") is None
    assert parse_receipt(json.dumps(["ContainerName"])) is None
    assert not is_ours(None)


def test_a_committed_batch_goes_through_the_router_and_counts_once(parts: Parts) -> None:
    router = parts.deps.router
    assert isinstance(router, FixedRouter)
    bodies = [json.dumps(note(1, 1, "create", name="a")), json.dumps(note(1, 2, name="a2")), "{broken"]
    out = router.apply_batch(parse_bodies(bodies), Resolution(), parts.deps)
    result = out.final()
    assert (out.received, result.received, result.applied, result.stale, result.unprocessable) == (3, 3, 1, 1, 1)
    assert list(out.outcomes) == ["px"]
    assert parts.rows() == {rid(1): "a2"}
    assert [u.body for u in parts.rejects.kept] == ["{broken"]
    assert parts.metrics.calls == 1
    assert list(parts.blobs.states()) == []


def test_a_transient_error_parks_the_targets_notifications(parts: Parts, locked: None) -> None:
    """The fixed target parks like a profile of the fan-out: its notifications in a retry blob, the
    unprocessable body kept once (final), the same result type as profile mode."""
    router = parts.deps.router
    assert isinstance(router, FixedRouter)
    bodies = [json.dumps(note(1, 1, "create", name="a")), "{broken"]
    out = router.apply_batch(parse_bodies(bodies), Resolution(), parts.deps)
    result = out.final()
    assert (out.received, result.received, result.unprocessable) == (2, 1, 1)  # the parked one is pending
    assert (out.outcomes["px"].routed, out.outcomes["px"].pending) == (1, 1)
    assert isinstance(out.errors["px"], (TransientDestinationError, ConnectionFailed))
    [state] = list(parts.blobs.states())
    assert (state.profile_id, state.count) == ("px", 1)
    assert state.raw.get(M_COUNTED) == "1"
    assert [u.body for u in parts.rejects.kept] == ["{broken"]
    assert (parts.metrics.pending, parts.metrics.totals.unprocessable, parts.metrics.calls) == (1, 1, 1)


def test_without_blob_storage_a_transient_error_propagates(parts: Parts, locked: None) -> None:
    router = parts.deps.router
    assert isinstance(router, FixedRouter)
    with pytest.raises((TransientDestinationError, ConnectionFailed)):
        router.apply_batch(parse_bodies([json.dumps(note(1, 1, "create", name="a"))]), Resolution(), None)
    assert parts.metrics.calls == 0


# ------------------------------------------------------------------------------ lease renewal
def test_a_long_apply_keeps_its_lease(parts: Parts) -> None:
    """Fake time runs past the 60 s lease twice during one apply; the keeper renews it, so a second
    worker finds the blob busy instead of applying it again."""
    import time

    name = parts.park(note(1, 1, "create", name="A"))
    parts.clock.advance(60)
    router = parts.deps.router
    assert isinstance(router, FixedRouter)
    real_apply = router.apply
    second_worker: list[object] = []

    def slow_apply(target: object, parsed: object) -> object:
        for _ in range(2):
            parts.clock.advance(50)
            time.sleep(0.2)  # the keeper (every 0.02 s here) renews meanwhile
        second_worker.append(parts.blobs.lease(name))
        return real_apply(target, parsed)  # type: ignore[arg-type]

    router.apply = slow_apply  # type: ignore[method-assign]
    outcome = process_retry_blob(name, parts.deps, renew_every=0.02)
    assert outcome.status is Status.RESOLVED
    assert second_worker == [None]  # busy: still leased after 100 s of (fake) time
    assert parts.rows() == {rid(1): "A"}


def test_a_lost_lease_stops_the_keeper_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    import time

    from shared.retry.attempt import LeaseKeeper

    class LostLease:
        def renew(self) -> None:
            raise RuntimeError("LeaseIdMismatchWithLeaseOperation")

        def release(self) -> None:
            pass

    with LeaseKeeper(LostLease(), "px/abc.json", every=0.01) as keeper:
        time.sleep(0.1)
    assert isinstance(keeper.lost, RuntimeError)
    assert keeper.renewals == 0
    assert "lease on px/abc.json could not be renewed" in caplog.text


# ------------------------------------------------------------- retry blobs are authenticated (issue 12)
def test_malformed_metadata_goes_to_the_unprocessable_store_and_nothing_sticks(parts: Parts) -> None:
    name = parts.park(note(1, 1, "create", name="a"), note(2, 1, "create", name="b"))
    parts.blobs.blobs[name].meta[M_ATTEMPT] = "abc"
    [state] = list(parts.blobs.states())  # listed, not skipped: the pending figure counts it
    assert (state.count, state.problem is not None) == (2, True)
    report = sweep_retries(parts.deps)  # due at once, whatever its not-before time says
    assert report.processed == {"unprocessable": 1}
    assert list(parts.blobs.states()) == []
    [(profile, container, source, reason)] = parts.keeper.kept
    assert (profile, container, source) == ("px", RETRY, name)
    assert "desattempt='abc' is not a number" in reason
    assert parts.rows() == {}
    assert (parts.metrics.pending, parts.metrics.totals.unprocessable) == (0, 2)
    assert parts.metrics.conserved()


def test_a_blob_whose_content_is_another_blobs_is_not_applied(parts: Parts) -> None:
    first = parts.park(note(1, 1, "create", name="first"))
    parts.blobs.blobs.pop(first)
    parts.metrics.pending = 0
    second = parts.park(note(2, 1, "create", name="second"))
    parts.blobs.blobs[first] = _copy_of(parts.blobs, second)  # second's content (and metadata) under first's name
    parts.clock.advance(10)
    outcome = process_retry_blob(first, parts.deps)
    assert outcome.status is Status.UNPROCESSABLE
    [(_, _, source, reason)] = parts.keeper.kept
    assert source == first
    assert "not the ones its name was made from" in reason
    assert parts.rows() == {}  # nothing applied under a name it was not parked with
    assert process_retry_blob(second, parts.deps).status is Status.RESOLVED  # the original is intact
    assert parts.rows() == {rid(2): "second"}


def test_a_blob_moved_to_another_profiles_folder_is_not_applied(parts: Parts) -> None:
    name = parts.park(note(1, 1, "create", name="a"))
    moved = name.replace("px/", "other/", 1)
    parts.blobs.blobs[moved] = _copy_of(parts.blobs, name)
    parts.blobs.blobs[moved].meta.pop("desprofile")
    parts.clock.advance(10)
    assert process_retry_blob(moved, parts.deps).status is Status.UNPROCESSABLE
    assert "names profile 'px'" in parts.keeper.kept[0][3]
    assert parts.keeper.kept[0][0] == "other"  # kept under the folder it was found in


def test_content_that_is_not_a_retry_batch_is_unprocessable_at_once(parts: Parts) -> None:
    name = parts.park(note(1, 1, "create", name="a"))
    parts.blobs.blobs[name].data = b'{"format": "des-retry/1", "notifications": 3}'
    parts.clock.advance(10)
    assert process_retry_blob(name, parts.deps).status is Status.UNPROCESSABLE
    assert "its notifications are not a list" in parts.keeper.kept[0][3]
    assert list(parts.blobs.states()) == []
    assert (parts.metrics.pending, parts.metrics.totals.unprocessable) == (0, 1)


def test_the_poison_queue_takes_a_blob_with_malformed_metadata(parts: Parts) -> None:
    name = parts.park(note(1, 1, "create", name="a"))
    parts.blobs.blobs[name].meta["descount"] = "-4"
    assert handle_receipt(Receipt(RETRY, name), parts.deps) == "unprocessable"
    assert "descount=-4 is negative" in parts.keeper.kept[0][3]
    assert list(parts.blobs.states()) == []


def _copy_of(blobs: FakeRetryBlobs, name: str) -> Any:
    src = blobs.blobs[name]
    return type(src)(src.data, dict(src.meta))
