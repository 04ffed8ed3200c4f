"""The blob-triggered retry function and poison handling on Azurite: a retry blob that makes the
function fail repeatedly ends in the failure log or the unprocessable store, never in limbo."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

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
from shared.retry.policy import RetryPolicy
from shared.retry.sweep import POISON_THRESHOLD
from shared.root import Root, single_destination_root
from shared.storage.account import Storage
from shared.storage.blobs import RETRY, UNPROCESSABLE, BlobDecryptionError
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


def receipt(name: str) -> str:
    """The message the Functions host puts on webjobs-blobtrigger-poison for a blob that kept failing."""
    return json.dumps({
        "Type": "BlobTrigger", "FunctionId": "Host.Functions.retry_blobs", "BlobType": "BlockBlob",
        "ContainerName": RETRY, "BlobName": name, "ETag": '"0x8DC0000000000"',
    })


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
    tmp_path: Path, azurite: Azurite, app: Root, storage: Storage
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
    # After the host's retries the receipt lands on the poison queue.
    assert handle_blob_poison(receipt(name), keyless) == "unprocessable"
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


def test_a_readable_blob_that_keeps_failing_goes_to_the_failure_log(app: Root, storage: Storage) -> None:
    name = park(app, 2)
    assert handle_blob_poison(receipt(name), app) == "failed"
    rows = list(storage.failure_log.rows("px"))
    assert {r["RecordId"] for r in rows} == {rid(1), rid(2)}
    assert all("retry processing kept failing" in r["FailureReason"] for r in rows)
    assert list(storage.stores.names(RETRY)) == []
    assert handle_blob_poison(receipt(name), app) == "gone"
    assert handle_blob_poison("not a receipt", app) == "ignored"
    assert handle_blob_poison(json.dumps({"ContainerName": "other", "BlobName": "x"}), app) == "ignored"
    metrics = app.router.metrics
    assert isinstance(metrics, RecordedMetrics)
    assert metrics.conserved()
    assert (metrics.totals.failed, metrics.pending) == (2, 0)


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
    assert (poison["type"], poison["queueName"]) == ("queueTrigger", "webjobs-blobtrigger-poison")
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
