"""The function app indexes with the intended bindings and its Service Bus function applies batches."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import function_app
from shared.config import DestinationConfig
from shared.destinations import Layout, TransientDestinationError
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.rejects import RejectFiles
from shared.root import reset_root, single_destination_root
from tests.support.functions import FakeContext

pytestmark = pytest.mark.unit

ORG = "11111111-1111-1111-1111-111111111111"


def note(rid: str, version: int, change: str = "update", **attrs: object) -> dict[str, object]:
    n: dict[str, object] = {
        "schemaVersion": 1,
        "organizationId": ORG,
        "entity": "account",
        "recordId": rid,
        "changeType": change,
        "version": version,
        "changedOn": "2026-11-21T10:00:00Z",
    }
    if change != "delete":
        n["attributes"] = attrs
    return n


def rid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


@pytest.fixture
def app_on_sqlite(tmp_path: Path) -> Iterator[Path]:
    db = tmp_path / "dest.db"
    settings = DestinationConfig(destination_dsn=f"sqlite:///{db}", rejects_dir=str(tmp_path / "rejects"))
    reset_root(single_destination_root(settings))
    yield db
    reset_root(None)


@functools.cache
def indexed() -> dict[str, Any]:
    """The functions as the host indexes them. get_functions() registers names on the app and refuses
    a second call in one process: reset around ours (as test_retry_poison does)."""
    function_app.app.functions_bindings = {}
    try:
        return {f.get_function_name(): f for f in function_app.app.get_functions()}
    finally:
        function_app.app.functions_bindings = {}


def test_function_indexes_with_service_bus_batch_binding() -> None:
    functions = indexed()
    binding = functions["sync_notifications"].get_bindings_dict()["bindings"][0]
    assert binding["type"] == "serviceBusTrigger"
    assert binding["queueName"] == "%ServiceBusQueueName%"
    assert binding["connection"] == "ServiceBusConnection"
    assert str(binding["cardinality"].value) == "many"
    assert binding["direction"].name == "IN"


def test_service_bus_function_applies_messages(app_on_sqlite: Path, tmp_path: Path) -> None:
    bodies = [
        json.dumps(note(rid(1), 1, "create", name="Contoso", revenue=10.5)),
        json.dumps([note(rid(1), 3, name="Contoso 3"), note(rid(2), 2, "create", name="Fabrikam")]),
        json.dumps(note(rid(1), 2, name="stale")),
        "{broken json",
    ]
    messages = [func.ServiceBusMessage(body=b.encode()) for b in bodies]
    function_app.sync_notifications(messages, FakeContext())
    with sqlite3.connect(app_on_sqlite) as conn:
        rows = dict(conn.execute('SELECT "Id", name FROM account').fetchall())
    assert rows == {rid(1): "Contoso 3", rid(2): "Fabrikam"}
    kept = (tmp_path / "rejects" / "unprocessable.jsonl").read_text().splitlines()
    assert [json.loads(line)["body"] for line in kept] == ["{broken json"]


def test_transient_destination_error_makes_the_function_raise(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    dest = SqliteDestination(str(db), Layout(), busy_timeout=0.05)  # fail fast instead of waiting a minute
    settings = DestinationConfig(destination_dsn=f"sqlite:///{db}", rejects_dir=str(tmp_path / "r"), write_attempts=2)
    c = single_destination_root(settings, destination=dest, rejects=RejectFiles(tmp_path / "r"))
    c.router.engine.backoff_seconds = 0.01
    reset_root(c)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database: a real lock
    try:
        msg = func.ServiceBusMessage(body=json.dumps(note(rid(9), 1, "create", name="x")).encode())
        with pytest.raises(TransientDestinationError):
            function_app.sync_notifications([msg], FakeContext())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        reset_root(None)


def test_source_functions_bind_the_page_queue_and_the_poll_timer() -> None:
    functions = indexed()
    pages = functions["source_pages"].get_bindings_dict()["bindings"]
    assert len(pages) == 1
    assert pages[0]["type"] == "queueTrigger"
    assert pages[0]["queueName"] == "%DES_SOURCE_QUEUE_NAME%"
    assert pages[0]["connection"] == "AzureWebJobsStorage"
    assert pages[0]["direction"].name == "IN"
    poll = functions["source_poll"].get_bindings_dict()["bindings"]
    assert len(poll) == 1
    assert poll[0]["type"] == "timerTrigger"
    assert poll[0]["schedule"] == "%DES_SOURCE_POLL_SCHEDULE%"


class _Timer(func.TimerRequest):
    @property
    def past_due(self) -> bool:
        return False


def test_source_functions_call_the_root_source(app_on_sqlite: Path) -> None:
    # single-destination mode runs no Dataverse source: the unit is logged and ignored, the poll does nothing
    msg = func.QueueMessage(body=b'{"profileId":"5b0b8f3e-2d7f-4c55-9a57-3f3c1f0e9a11","entity":"account"}')
    function_app.source_pages(msg, FakeContext())
    function_app.source_poll(_Timer(), FakeContext())
    from shared.handlers import handle_source_page, handle_source_poll
    from shared.root import root

    assert handle_source_page(msg.get_body(), root()) == "ignored"
    assert handle_source_poll(root()) == 0
