"""A configuration mistake never dead-letters healthy messages (issue 10; docs/deploy.md).

At the handler level, on a real Azurite and real PostgreSQL admin stores:

* the admin store unreachable when the process starts (a closed port: the root cannot be built) and
  unreachable later (its login refused mid-run): the Service Bus batch is held whole in
  ``retry/held-for-routing/`` and the function returns, so the messages complete and no delivery
  attempt is spent; a redelivery holds into the same blob; the retry trigger defers to the sweeper
  while the store is down, and a held batch is retried with a growing interval, never given up on;
  once the store answers the batch is routed through the fan-out and counted;
* a profile's parked batch whose retries meet an unreachable store waits past its retry count
  instead of landing in the failure log.

Settings mistakes that need no I/O to find fail the app's indexing
(tests/unit/test_function_bindings.py, ``test_a_settings_mistake_found_without_io_fails_indexing``).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import AppConfig, ProfilesConfig
from shared.handlers import handle_notifications, handle_retry_event, handle_service_bus
from shared.profiles.fanout import UNROUTED_FOLDER
from shared.profiles.model import ProfileCreate
from shared.retry.attempt import Status, process_retry_blob
from shared.retry.park import HELD_FOLDER
from shared.root import Holding, ProfileRuntime, Root, build_root, build_runtime, profiles_root
from shared.storage.account import Storage
from shared.storage.blobs import RETRY, UNPROCESSABLE
from shared.store.base import StoreUnavailable
from tests.support.postgres import Switch, fresh_database, switchable_database

pytestmark = pytest.mark.integration

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def rid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def note(i: int, version: int = 1) -> str:
    return json.dumps({
        "schemaVersion": 1, "organizationId": ORG, "entity": "account", "recordId": rid(i),
        "changeType": "update", "version": version, "changedOn": "2026-11-21T10:00:00Z",
        "attributes": {"name": f"account {i} v{version}"},
    })  # fmt: skip


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def held(storage: Storage) -> list[Any]:
    return list(storage.retries.states(HELD_FOLDER))


def create_profile(rt: ProfileRuntime, destination: str, **extra: Any) -> str:
    body = {"name": "to sqlite", "organizationId": ORG, "destination": destination, "entities": ["account"], **extra}
    return rt.service.activate(rt.service.create(ProfileCreate.model_validate(body)).id).id


def sqlite_rows(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return {r[0]: r[1] for r in conn.execute('SELECT "Id", name FROM "account"').fetchall()}


def metrics_of(rt: ProfileRuntime, pid: str) -> tuple[int, int, int]:
    m = rt.store.metrics(pid)
    entries = [e for e in m.entities if e.entity == "account"]
    return sum(e.total for e in entries), sum(e.success for e in entries), m.pending_retry


def resolve_once_the_store_answers(c: Root, storage: Storage, name: str, within: float = 120.0) -> None:
    """Retry ``name`` (as the sweeper would, at its due time) until it resolves: the store's
    connection pool reconnects with its own backoff after the login is allowed again."""
    deadline = time.monotonic() + within
    while True:
        outcome = process_retry_blob(name, c.retries, now=storage.retries.state(name).not_before)
        if outcome.status is Status.RESOLVED:
            return
        assert outcome.status is Status.RESCHEDULED
        assert time.monotonic() < deadline, "the admin store did not come back"
        time.sleep(1)


def test_an_admin_store_unreachable_at_start_holds_the_batch_until_it_answers(tmp_path: Path, storage: Storage) -> None:
    unreachable = AppConfig(profiles=ProfilesConfig(store_dsn=f"postgresql://des:pw@127.0.0.1:{closed_port()}/des"))
    with pytest.raises(StoreUnavailable):
        build_root(unreachable)  # what every invocation meets: before, it raised and spent a delivery

    def no_root() -> Root:
        return build_root(unreachable)

    def holding() -> Holding:
        return Holding(storage, 0)

    bodies = [note(1), note(2), "{broken json"]
    out = handle_service_bus(bodies, no_root, holding)  # returns: the messages complete
    assert (out.received, len(out.unprocessable)) == (3, 1)
    [state] = held(storage)
    assert state.count == 2
    assert "cannot connect to the admin store" in state.last_error
    assert "pw" not in state.last_error  # the DSN's password is redacted
    [kept] = [n for n in storage.stores.names(UNPROCESSABLE) if n.startswith(f"{UNROUTED_FOLDER}/")]
    assert kept
    # At-least-once: the batch delivered again is held into the same blob, never twice.
    handle_service_bus(bodies[:2], no_root, holding)
    assert [s.name for s in held(storage)] == [state.name]
    # The retry trigger while the store is still down: left for the sweeper, nothing spent or given up.
    assert handle_retry_event(f"{RETRY}/{state.name}", no_root) == "deferred"
    assert [s.name for s in held(storage)] == [state.name]

    # The store answers (a real PostgreSQL admin store with one profile): the held batch is routed.
    with fresh_database() as dsn:
        rt = build_runtime(ProfilesConfig(store_dsn=dsn, allow_literal=True), storage=storage)
        dest = tmp_path / "dest.db"
        pid = create_profile(rt, f"sqlite:///{dest}")
        c = profiles_root(rt)
        try:
            assert handle_retry_event(f"{RETRY}/{state.name}", lambda: c) == "resolved"
            assert sqlite_rows(dest) == {rid(1): "account 1 v1", rid(2): "account 2 v1"}
            assert held(storage) == []
            assert metrics_of(rt, pid) == (2, 2, 0)
        finally:
            c.close()
            rt.close()


@pytest.fixture
def store(tmp_path: Path, storage: Storage) -> Iterator[tuple[Switch, ProfileRuntime, Root, str, Path]]:
    """A profile-mode root whose admin store is a PostgreSQL database whose login can be cut."""
    with switchable_database("des_cm") as sw:
        rt = build_runtime(
            ProfilesConfig(store_dsn=sw.dsn, allow_literal=True, profile_cache_seconds=0), storage=storage
        )
        dest = tmp_path / "dest.db"
        pid = create_profile(rt, f"sqlite:///{dest}", retryCount=2, retryIntervalSeconds=0)
        c = profiles_root(rt)
        try:
            yield sw, rt, c, pid, dest
        finally:
            sw.up()
            c.close()
            rt.close()


def test_an_admin_store_lost_mid_run_holds_batches_and_retries_them_without_giving_up(
    store: tuple[Switch, ProfileRuntime, Root, str, Path], storage: Storage
) -> None:
    sw, rt, c, pid, dest = store
    handle_notifications([note(1)], c)
    assert sqlite_rows(dest) == {rid(1): "account 1 v1"}
    sw.down()  # the store refuses logins and its sessions end: unreachable
    out = handle_notifications([note(2), note(3)], c)  # no exception: the messages complete
    assert out.received == 2
    [state] = held(storage)
    # Still down: each retry reschedules with a growing interval, past any retry count; never exhausted.
    waits = []
    for _ in range(2):
        outcome = process_retry_blob(state.name, c.retries, now=storage.retries.state(state.name).not_before)
        assert outcome.status is Status.RESCHEDULED
        assert outcome.not_before is not None
        waits.append(outcome.not_before)
    assert waits == sorted(waits)
    assert storage.retries.state(state.name).attempt == 2
    sw.up()
    resolve_once_the_store_answers(c, storage, state.name)
    assert sqlite_rows(dest) == {rid(i): f"account {i} v1" for i in (1, 2, 3)}
    assert held(storage) == []
    assert metrics_of(rt, pid) == (3, 3, 0)


def test_a_profiles_parked_batch_waits_for_an_unreachable_store_past_its_retry_count(
    store: tuple[Switch, ProfileRuntime, Root, str, Path], storage: Storage
) -> None:
    sw, _, c, pid, dest = store
    dest.write_bytes(b"not a database")  # the destination fails: the profile's batch is parked
    handle_notifications([note(5)], c)
    [parked] = list(storage.retries.states(pid))
    dest.unlink()
    sw.down()
    for _ in range(2):  # retry count 2: a destination error would have exhausted it at the second
        now = storage.retries.state(parked.name).not_before
        assert process_retry_blob(parked.name, c.retries, now=now).status is Status.RESCHEDULED
    assert list(storage.failure_log.rows(pid)) == []
    assert storage.retries.state(parked.name).attempt == 2
    sw.up()
    resolve_once_the_store_answers(c, storage, parked.name)
    assert sqlite_rows(dest) == {rid(5): "account 5 v1"}


def test_health_says_the_admin_store_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import azure.functions as func

    import function_app
    from shared.root import reset_root
    from tests.support.functions import FakeContext

    monkeypatch.setenv("DES_ADMIN_STORE", f"postgresql://des:pw@127.0.0.1:{closed_port()}/des")
    reset_root(None)  # the function app's root is built from these settings on first use
    try:
        req = func.HttpRequest(method="GET", url="http://localhost/health", headers={}, body=b"")
        resp = asyncio.run(function_app.health(req, FakeContext(function_name="health")))  # type: ignore[arg-type]
    finally:
        reset_root(None)
    assert resp.status_code == 503
    assert json.loads(resp.get_body()) == {"status": "unavailable", "store": "unavailable"}
