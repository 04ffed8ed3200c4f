"""The blob-triggered retry function and poison handling on Azurite: a retry blob that makes the
function fail repeatedly ends in the failure log or the unprocessable store, never in limbo."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import function_app
from shared.config import DestinationConfig
from shared.contract.parse import parse_bodies
from shared.destinations import Layout
from shared.destinations.inspect import table_rows
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.handlers import handle_blob_poison, handle_retry_blob, handle_retry_sweep
from shared.retry.park import park_batch
from shared.retry.poison import StoragePoisonQueue
from shared.retry.policy import RetryPolicy
from shared.retry.sweep import POISON_THRESHOLD
from shared.root import Root, single_destination_root
from shared.storage.account import Storage
from shared.storage.blobs import M_FIRST_SEEN, RETRY, UNPROCESSABLE, BlobDecryptionError, iso, utcnow
from shared.storage.claimcheck import Resolution
from shared.storage.crypto import KeyRing, LocalAesKek
from shared.tools.azurite import Azurite
from tests.support.functions import FakeContext
from tests.support.metrics import RecordedMetrics, note, rid

pytestmark = pytest.mark.integration


def app_on(tmp_path: Path, storage: Storage, metrics: RecordedMetrics) -> Root:
    db = tmp_path / "dest.db"
    return single_destination_root(
        DestinationConfig(destination_dsn=f"sqlite:///{db}", rejects_dir=str(tmp_path / "r")),
        destination=SqliteDestination(str(db), Layout()),
        storage=storage, metrics=metrics, retry_policy=RetryPolicy(count=3, interval_seconds=0), profile_id="px",
    )


@pytest.fixture
def app(tmp_path: Path, storage: Storage) -> Iterator[Root]:
    c = app_on(tmp_path, storage, RecordedMetrics())
    yield c
    c.router.engine.destination.close()


def park(c: Root, n: int = 3) -> str:
    """A batch parked as after a transient error (the real parking path)."""
    bodies = [json.dumps(note(i, 1, "create", name=f"r{i}")) for i in range(1, n + 1)]
    park_batch(c.retries, parse_bodies(bodies), Resolution(), ConnectionError("connection refused"))
    [name] = [s.name for s in c.storage.retries.states()] if c.storage else []
    return name


def lost_key(azurite: Azurite) -> Storage:
    """The same account with a key ring that lacks the key the blobs were written with."""
    ring = KeyRing(LocalAesKek("new", secrets.token_bytes(32)))
    return Storage.from_connection_string(azurite.connection_string, ring)


def receipt(name: str, container: str = RETRY, function: str = "retry_blobs") -> str:
    """The message the Functions host puts on webjobs-blobtrigger-poison for a blob that kept failing."""
    return json.dumps({
        "Type": "BlobTrigger", "FunctionId": f"Host.Functions.{function}", "BlobType": "BlockBlob",
        "ContainerName": container, "BlobName": name, "ETag": '"0x8DC0000000000"',
    })


@pytest.fixture
def poison(azurite: Azurite) -> Iterator[Any]:
    """webjobs-blobtrigger-poison on Azurite, empty: the raw QueueClient the host (and others) write with."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    with contextlib.suppress(ResourceNotFoundError):
        client.delete_queue()
    client.create_queue()
    yield client
    client.close()


def host_puts(poison: Any, text: str) -> str:
    """Put a message as the Functions host does (base64, the queues extension's encoding); its id."""
    return str(poison.send_message(base64.b64encode(text.encode()).decode()).id)


def on_queue(poison: Any) -> dict[str, tuple[str, int]]:
    """Every message on the poison queue, by id: (content as stored, dequeue count)."""
    return {m.id: (m.content, m.dequeue_count) for m in poison.peek_messages(max_messages=32)}


def scanning(c: Root, azurite: Azurite) -> Root:
    c.poison = StoragePoisonQueue.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    return c


def test_the_blob_trigger_applies_a_parked_batch(app: Root, storage: Storage) -> None:
    name = park(app)
    assert handle_retry_blob(f"{RETRY}/{name}", app) == "resolved"
    assert {str(r["Id"]) for r in table_rows(app.router.engine.destination, "account")} == {rid(1), rid(2), rid(3)}
    assert list(storage.stores.names(RETRY)) == []
    assert handle_retry_blob(f"{RETRY}/{name}", app) == "gone"  # a duplicate event is harmless
    metrics = app.router.metrics
    assert isinstance(metrics, RecordedMetrics)
    assert metrics.conserved()
    assert (metrics.totals.applied, metrics.pending) == (3, 0)


def test_an_undecryptable_retry_blob_goes_to_unprocessable_via_the_poison_queue(
    tmp_path: Path, azurite: Azurite, app: Root, storage: Storage, poison: Any
) -> None:
    name = park(app)
    before, _ = storage.stores.raw(RETRY, name)
    # The key was lost (a new ring without the old key): the function fails, the blob stays.
    (tmp_path / "k").mkdir()
    metrics = RecordedMetrics()
    keyless = app_on(tmp_path / "k", lost_key(azurite), metrics)
    with pytest.raises(BlobDecryptionError, match="not configured"):
        handle_retry_blob(f"{RETRY}/{name}", keyless)
    assert storage.stores.raw(RETRY, name)[0] == before
    # After the host's retries the receipt lands on the poison queue; the poison timer scans it.
    host_puts(poison, receipt(name))
    report = handle_blob_poison(scanning(keyless, azurite))
    assert report is not None
    assert (report.outcomes, report.removed) == ({"unprocessable": 1}, 1)
    assert on_queue(poison) == {}
    assert list(storage.stores.names(RETRY)) == []
    [kept] = list(storage.stores.names(UNPROCESSABLE))
    data, meta = storage.stores.raw(UNPROCESSABLE, kept)
    assert data == before  # byte for byte, still encrypted: the right key can read it later
    assert meta["dessource"] == f"{RETRY}/{name}"
    assert "poison queue" in meta["desreason"]
    assert "not configured" in meta["desreason"]
    assert "encryptiondata" in meta
    assert (metrics.totals.received, metrics.totals.unprocessable) == (3, 3)
    keyless.router.engine.destination.close()


def test_a_readable_blob_that_keeps_failing_goes_to_the_failure_log(
    azurite: Azurite, app: Root, storage: Storage, poison: Any
) -> None:
    name = park(app, 2)
    host_puts(poison, receipt(name))
    report = handle_blob_poison(scanning(app, azurite))
    assert report is not None
    assert (report.outcomes, report.others, report.removed) == ({"failed": 1}, 0, 1)
    rows = list(storage.failure_log.rows("px"))
    assert {r["RecordId"] for r in rows} == {rid(1), rid(2)}
    assert all("retry processing kept failing" in r["FailureReason"] for r in rows)
    assert list(storage.stores.names(RETRY)) == []
    assert on_queue(poison) == {}
    # A duplicate receipt (the host's retries raced): the blob is gone, the receipt removed.
    host_puts(poison, receipt(name))
    report = handle_blob_poison(app)
    assert report is not None
    assert (report.outcomes, report.removed) == ({"gone": 1}, 1)
    metrics = app.router.metrics
    assert isinstance(metrics, RecordedMetrics)
    assert metrics.conserved()
    assert (metrics.totals.failed, metrics.pending) == (2, 0)


def test_other_containers_and_apps_receipts_on_the_shared_poison_queue_are_left_alone(
    azurite: Azurite, app: Root, storage: Storage, poison: Any
) -> None:
    scanning(app, azurite)
    first, second = park(app, 1), park_notes(app, 2)
    # Ours at the front, then another app's blob trigger, another function on a container named like
    # ours, a message that is no receipt at all, and ours again behind them.
    ours_first = host_puts(poison, receipt(first))
    others = {
        host_puts(poison, receipt("2026/11/photo.jpg", container="images", function="resize")),
        host_puts(poison, receipt(second, function="archive")),
        host_puts(poison, "not a receipt"),
    }
    ours_behind = host_puts(poison, receipt(second))
    before = on_queue(poison)
    report = handle_blob_poison(app)
    assert report is not None
    # Both our blobs are out of limbo; only the receipt at the front could be removed without
    # receiving anybody else's message.
    assert (report.outcomes, report.others, report.removed) == ({"failed": 2}, 3, 1)
    assert list(storage.stores.names(RETRY)) == []
    after = on_queue(poison)
    assert ours_first not in after
    assert set(after) == others | {ours_behind}
    assert {i: after[i] for i in others} == {i: before[i] for i in others}  # same bytes, never dequeued
    assert all(count == 0 for _, count in after.values())
    # Once the others' receipts go (their owners consume them), ours is removed; the blob is gone.
    for m in poison.receive_messages(max_messages=3):
        assert m.id in others
        poison.delete_message(m)
    report = handle_blob_poison(app)
    assert report is not None
    assert (report.outcomes, report.others, report.removed) == ({"gone": 1}, 0, 1)
    assert on_queue(poison) == {}


def test_a_message_received_out_of_order_is_put_back_unchanged(azurite: Azurite, poison: Any) -> None:
    queue = StoragePoisonQueue.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    theirs = host_puts(poison, receipt("a.jpg", container="images", function="resize"))
    ours = host_puts(poison, receipt("px/k.json"))
    before = on_queue(poison)
    # Asked to remove ours, the receive returns theirs (the front): made visible again at once.
    assert queue.remove_leading([ours]) == 0
    after = on_queue(poison)
    assert set(after) == {theirs, ours}
    assert after[theirs] == (before[theirs][0], 1)  # same content; dequeued once, visible now
    queue.close()


def test_a_stale_receipt_leaves_a_batch_parked_again_under_the_same_name(
    azurite: Azurite, app: Root, storage: Storage, poison: Any
) -> None:
    name = park(app, 2)
    host_puts(poison, receipt(name))
    # The same notifications were given up on and parked again later: same name, newer first-seen.
    blob = storage.stores.plain.get_blob_client(RETRY, name)
    meta = dict(blob.get_blob_properties().metadata)
    blob.set_blob_metadata({**meta, M_FIRST_SEEN: iso(utcnow() + timedelta(hours=1))})
    report = handle_blob_poison(scanning(app, azurite))
    assert report is not None
    assert (report.outcomes, report.removed) == ({"stale": 1}, 1)
    assert list(storage.stores.names(RETRY)) == [name]  # left to its own retries
    assert list(storage.failure_log.rows("px")) == []


def test_no_poison_queue_yet_is_an_empty_scan(azurite: Azurite, app: Root) -> None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    name = "webjobs-blobtrigger-poison"
    with contextlib.suppress(ResourceNotFoundError):
        QueueClient.from_connection_string(azurite.connection_string, name).delete_queue()
    report = handle_blob_poison(scanning(app, azurite))
    assert report is not None
    assert (report.outcomes, report.others, report.removed) == ({}, 0, 0)


def test_the_sweeper_counts_crashes_and_gives_up_at_the_threshold(
    tmp_path: Path, azurite: Azurite, app: Root, storage: Storage
) -> None:
    name = park(app)
    (tmp_path / "k").mkdir()
    keyless = app_on(tmp_path / "k", lost_key(azurite), RecordedMetrics())
    for attempt in range(1, POISON_THRESHOLD):
        report = handle_retry_sweep(keyless)
        assert report is not None
        assert report.crashed == 1
        assert storage.retries.state(name).crashes == attempt
    report = handle_retry_sweep(keyless)
    assert report is not None
    assert report.given_up == 1
    assert list(storage.stores.names(RETRY)) == []
    assert len(list(storage.stores.names(UNPROCESSABLE))) == 1
    keyless.router.engine.destination.close()


def test_the_function_app_wires_the_blob_paths() -> None:
    # get_functions() registers names on the app and refuses a second call in one process: reset it
    # around ours so another module's indexing test works in the same worker.
    function_app.app.functions_bindings = {}
    try:
        functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    finally:
        function_app.app.functions_bindings = {}
    retry = functions["retry_blobs"].get_bindings_dict()["bindings"][0]
    assert retry["type"] == "blobTrigger"
    assert retry["path"] == f"{RETRY}/{{name}}"  # a literal: no app setting needed
    assert retry["connection"] == "AzureWebJobsStorage"
    assert str(retry["source"]) in ("EventGrid", "BlobSource.EVENT_GRID")
    sweeper = functions["retry_sweeper"].get_bindings_dict()["bindings"][0]
    assert (sweeper["type"], sweeper["schedule"]) == ("timerTrigger", "0 * * * * *")
    poison = functions["retry_poison"].get_bindings_dict()["bindings"][0]
    assert (poison["type"], poison["schedule"]) == ("timerTrigger", "30 */5 * * * *")  # peeks; no queue trigger
    assert functions["blob_retention"].get_bindings_dict()["bindings"][0]["type"] == "timerTrigger"


def test_the_blob_trigger_function_runs_through_the_container(app: Root, storage: Storage) -> None:
    from shared.root import reset_root

    name = park(app)
    reset_root(app)
    try:
        stream = func.blob.InputStream(data=b"(encrypted; not read)", name=f"{RETRY}/{name}")
        function_app.retry_blobs(stream, FakeContext())
    finally:
        reset_root(None)
    assert list(storage.stores.names(RETRY)) == []


# ------------------------------------------------------------- retry blobs are authenticated (issue 12)
def applied_ids(c: Root) -> set[str]:
    try:
        return {str(r["Id"]) for r in table_rows(c.router.engine.destination, "account")}
    except sqlite3.OperationalError:  # no table: nothing was ever applied
        return set()


def park_notes(c: Root, *ids: int) -> str:
    bodies = [json.dumps(note(i, 1, "create", name=f"r{i}")) for i in ids]
    park_batch(c.retries, parse_bodies(bodies), Resolution(), ConnectionError("connection refused"))
    assert c.storage is not None
    return max(c.storage.retries.states(), key=lambda s: s.first_seen).name


def test_a_retry_blob_with_another_blobs_content_is_kept_not_applied(app: Root, storage: Storage) -> None:
    first = park_notes(app, 1)
    second = park_notes(app, 2)
    data, meta = storage.stores.raw(RETRY, second)  # encrypted bytes and their encryption metadata
    storage.stores.plain.get_blob_client(RETRY, first).upload_blob(data, metadata=meta, overwrite=True)
    assert handle_retry_blob(f"{RETRY}/{first}", app) == "unprocessable"
    assert applied_ids(app) == set()  # nothing applied under the wrong name
    [kept] = list(storage.stores.names(UNPROCESSABLE))
    kept_data, kept_meta = storage.stores.raw(UNPROCESSABLE, kept)
    assert kept_data == data
    assert kept_meta["dessource"] == f"{RETRY}/{first}"
    assert "not the ones its name was made from" in kept_meta["desreason"]
    assert handle_retry_blob(f"{RETRY}/{second}", app) == "resolved"  # the original is intact
    assert applied_ids(app) == {rid(2)}
    metrics = app.router.metrics
    assert isinstance(metrics, RecordedMetrics)
    assert metrics.conserved()
    assert (metrics.totals.applied, metrics.totals.unprocessable, metrics.pending) == (1, 1, 0)


def test_malformed_retry_metadata_is_counted_then_kept_with_the_reason(app: Root, storage: Storage) -> None:
    name = park_notes(app, 1, 2, 3)
    blob = storage.stores.plain.get_blob_client(RETRY, name)
    meta = dict(blob.get_blob_properties().metadata)
    blob.set_blob_metadata({**meta, "desattempt": "abc", "desnotbefore": "2999-01-01T00:00:00Z"})
    assert storage.retries.pending() == 3  # listed and counted, not skipped
    report = handle_retry_sweep(app)
    assert report is not None
    assert report.processed == {"unprocessable": 1}  # due at once: nothing stays stuck
    assert list(storage.stores.names(RETRY)) == []
    [kept] = list(storage.stores.names(UNPROCESSABLE))
    _, kept_meta = storage.stores.raw(UNPROCESSABLE, kept)
    assert "desattempt='abc' is not a number" in kept_meta["desreason"]
    assert applied_ids(app) == set()
    metrics = app.router.metrics
    assert isinstance(metrics, RecordedMetrics)
    assert metrics.conserved()
    assert (metrics.totals.unprocessable, metrics.pending) == (3, 0)
