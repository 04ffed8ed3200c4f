"""Claim checks end to end on Azurite: the publisher spills what does not fit into an encrypted blob in
data/ and sends a reference; the processor resolves it, applies it, and deletes the blob only after the
destination commit. A missing or mismatching payload is unprocessable with its reason."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import DestinationConfig
from shared.destinations import Layout
from shared.destinations.inspect import table_rows
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.handlers import handle_notifications
from shared.profiles.fanout import UNROUTED_FOLDER
from shared.publisher import NotificationPublisher
from shared.retry.attempt import Status, process_retry_blob
from shared.retry.policy import RetryPolicy
from shared.root import Root, single_destination_root
from shared.storage.account import Storage
from shared.storage.blobs import DATA, RETRY
from tests.support.metrics import RecordedMetrics, note, rid
from tests.unit.test_publisher import RecordingSender

pytestmark = pytest.mark.integration

LIMIT = 16 * 1024


@pytest.fixture
def app(tmp_path: Path, storage: Storage) -> Iterator[Root]:
    db = tmp_path / "dest.db"
    dest = SqliteDestination(str(db), Layout(), busy_timeout=0.05)
    c = single_destination_root(
        DestinationConfig(destination_dsn=f"sqlite:///{db}", rejects_dir=str(tmp_path / "rejects"), write_attempts=1),
        destination=dest, storage=storage, metrics=RecordedMetrics(),
        retry_policy=RetryPolicy(count=3, interval_seconds=0), profile_id="claims",
    )
    yield c
    dest.close()


def rows(c: Root) -> dict[str, dict[str, object]]:
    return {str(r["Id"]): r for r in table_rows(c.router.engine.destination, "account")}


def mixed_stream() -> list[dict[str, object]]:
    small = [note(i, 1, "create", name=f"small {i}") for i in range(1, 60)]
    big = [note(100 + i, 1, "create", name=f"big {i}", description="Ä" * (LIMIT + i)) for i in range(3)]
    return small[:30] + big + small[30:]


def test_large_notifications_travel_by_claim_check(app: Root, storage: Storage) -> None:
    sender = RecordingSender(link_max=LIMIT)
    report = NotificationPublisher(sender, storage.payloads, max_message_bytes=LIMIT).publish(mixed_stream())
    assert report.spilled == 3
    bodies = sender.bodies()
    assert all(len(b) <= LIMIT for b in bodies)
    refs = [n for b in bodies for n in json.loads(b) if "payloadRef" in n]
    assert len(refs) == 3
    assert all("attributes" not in r for r in refs)
    assert all(len(json.dumps(r)) < 600 for r in refs)
    blobs = sorted(r["payloadRef"]["blob"] for r in refs)
    assert sorted(storage.stores.names(DATA)) == blobs

    result = handle_notifications(bodies, app).final()
    assert result.conserved
    assert (result.received, result.applied, result.unprocessable) == (62, 62, 0)
    got = rows(app)
    assert got[rid(101)]["description"] == "Ä" * (LIMIT + 1)
    assert got[rid(5)]["name"] == "small 5"
    assert list(storage.stores.names(DATA)) == []  # deleted after the commit

    # A redelivery after the payloads were deleted: the references are unprocessable with the reason;
    # the plain notifications are stale (already there).
    again = handle_notifications(bodies, app).final()
    assert (again.stale, again.unprocessable) == (59, 3)
    assert all("payload blob is missing" in u.reason for u in again.unprocessables)
    kept = list(storage.unprocessable.entries(UNROUTED_FOLDER))  # the batch's, as in profile mode
    assert len(kept) == 3
    assert all(json.loads(k["body"])["payloadRef"] for k in kept)


def test_a_payload_that_is_not_the_one_referenced_is_unprocessable(app: Root, storage: Storage) -> None:
    sender = RecordingSender(link_max=LIMIT)
    NotificationPublisher(sender, storage.payloads, max_message_bytes=LIMIT).publish(
        [note(1, 1, "create", description="x" * LIMIT), note(2, 1, "create", description="y" * LIMIT)]
    )
    bodies = sender.bodies()
    refs = [n for b in bodies for n in json.loads(b)]
    # Swap: each reference points at the other's blob (right key, wrong content).
    a, b = refs[0]["payloadRef"], refs[1]["payloadRef"]
    refs[0]["payloadRef"], refs[1]["payloadRef"] = {**b}, {**a}
    bodies = [json.dumps(refs[:1]), json.dumps({**refs[1], "payloadRef": {**a, "size": 3}})]
    result = handle_notifications(bodies, app).final()
    assert result.unprocessable == 2
    # One reason each, in either order (both start with a random blob name).
    reasons = [u.reason for u in result.unprocessables]
    assert sum("does not hold the notification its reference names" in r for r in reasons) == 1
    assert sum("the reference says 3" in r for r in reasons) == 1
    assert sorted(storage.stores.names(DATA)) == sorted([a["blob"], b["blob"]])  # kept for inspection


def test_a_parked_claim_check_is_parked_in_full_and_its_payload_deleted(
    app: Root, storage: Storage, tmp_path: Path
) -> None:
    """Single-destination mode parks as profile mode does (one rule): the failing target's
    notifications in full in the encrypted retry blob, so the payload blob (which a fan-out shares
    between profiles) goes once every target committed or parked."""
    sender = RecordingSender(link_max=LIMIT)
    NotificationPublisher(sender, storage.payloads, max_message_bytes=LIMIT).publish(
        [note(1, 1, "create", description="z" * LIMIT), note(2, 1, "create", name="plain")]
    )
    holder = sqlite3.connect(tmp_path / "dest.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database: the destination is unavailable
    try:
        result = handle_notifications(sender.bodies(), app).final()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (result.received, result.applied) == (0, 0)  # nothing final yet: both pending
    [name] = list(storage.stores.names(RETRY))
    assert list(storage.stores.names(DATA)) == []  # parked in full: the payload is no longer needed
    parked = storage.retries.read(name).notifications
    assert [("payloadRef" in n) for n in parked] == [False, False]
    assert parked[0]["attributes"]["description"] == "z" * LIMIT
    outcome = process_retry_blob(name, app.retries)
    assert outcome.status is Status.RESOLVED
    assert outcome.result is not None
    assert outcome.result.applied == 2
    assert rows(app)[rid(1)]["description"] == "z" * LIMIT
    assert list(storage.stores.names(DATA)) == []
    assert list(storage.stores.names(RETRY)) == []
    metrics = app.router.metrics
    assert isinstance(metrics, RecordedMetrics)
    assert metrics.conserved()
    assert metrics.pending == 0
    assert metrics.totals.applied == 2
