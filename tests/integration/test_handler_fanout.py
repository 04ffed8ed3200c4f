"""The Service Bus handler in profile mode: fan-out to two profiles with real destinations (a SQLite
file and a PostgreSQL database whose login is really revoked), on a real Azurite and a real
profile store (SQLite).

Proved here, through ``handle_notifications`` (and ``function_app.sync_notifications`` with
``azure.functions.ServiceBusMessage`` objects):

* both profiles apply; what no profile exports is skipped under the unrouted key; unprocessable
  bodies are kept once, under ``unprocessablemessages/unrouted/``;
* one profile's destination down: only its notifications are parked (a retry blob under that
  profile, counted as pending), the other profile applies them once and is not touched by the
  retry; the retry (with the profile's own policy) then succeeds and the store's metrics conserve
  (received = applied + stale + failed + unprocessable; pending retry back to 0);
* a profile with retry count 0 logs its notifications as failed at once; an exhausted profile's
  notifications land in its failure log;
* a deactivated profile counts skipped (at fan-out and for parked notifications at retry time); a
  profile deleted while its notifications were parked leaves them under ``unrouted/`` as
  unprocessable, with the reason;
* a claim-check payload blob is deleted only after both profiles committed or parked (a crash
  before that keeps it; the redelivery neither loses nor double-counts anything);
* entity metadata notifications fan out and are parked and retried like records;
* without Blob storage a failing profile makes the handler raise (Service Bus redelivers) after
  the committed profile's outcomes were recorded;
* the function app's container picks single-destination mode when ``DES_DESTINATION_DSN`` is set,
  profile mode otherwise.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import azure.functions as func
import psycopg
import pytest

import function_app
from shared import config as S
from shared.config import ProfilesConfig
from shared.contract.parse import parse_bodies
from shared.destinations import ConnectionFailed, Layout, TransientDestinationError, open_destination
from shared.destinations.inspect import table_rows
from shared.engine.outcomes import BatchResult
from shared.handlers import handle_notifications, handle_retry_blob, handle_retry_sweep
from shared.profiles.fanout import UNROUTED_FOLDER, FanOutResult
from shared.profiles.model import ProfileCreate
from shared.publisher import InMemorySender, NotificationPublisher
from shared.retry.attempt import Status, process_retry_blob
from shared.root import ProfileRuntime, Root, build_root, build_runtime, profiles_root, reset_root
from shared.storage.account import Storage
from shared.storage.blobs import DATA, FAILURELOG, RETRY, UNPROCESSABLE
from shared.store.base import UNROUTED
from tests.support.functions import FakeContext
from tests.support.metadata_scenarios import attr, metadata
from tests.support.postgres import Switch, switchable_database

pytestmark = pytest.mark.integration

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
OTHER_ORG = "9a2504e0-4f89-11d3-9a0c-0305e82c3302"
SPILL_LIMIT = 16 * 1024


def rid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def note(entity: str, i: int, version: int, change: str = "update", org: str = ORG, **attrs: Any) -> dict[str, Any]:
    n: dict[str, Any] = {
        "schemaVersion": 1,
        "organizationId": org,
        "entity": entity,
        "recordId": rid(i),
        "changeType": change,
        "version": version,
        "changedOn": "2026-11-21T10:00:00Z",
    }
    if change != "delete":
        n["attributes"] = {"name": f"{entity} {i} v{version}", **attrs}
    return n


def body(*notes: dict[str, Any]) -> str:
    return json.dumps(notes[0] if len(notes) == 1 else list(notes))


@pytest.fixture
def switch() -> Iterator[Switch]:
    with switchable_database("des_hf") as sw:
        yield sw


def create_profile(rt: ProfileRuntime, name: str, destination: str, entities: list[str], **extra: Any) -> str:
    body = {"name": name, "organizationId": ORG, "destination": destination, "entities": entities, **extra}
    p = rt.service.create(ProfileCreate.model_validate(body))
    return rt.service.activate(p.id).id


@dataclass
class World:
    rt: ProfileRuntime
    c: Root
    storage: Storage
    admin_db: Path
    sqlite_path: Path
    pg: Switch
    lite: str  # profile id: SQLite destination, account + contact, retry count 3, interval 0
    pgid: str  # profile id: PostgreSQL destination (prefix crm), account only, retry count 3, interval 0

    def send(self, *bodies: str) -> FanOutResult:
        out = handle_notifications(list(bodies), self.c)
        assert isinstance(out, FanOutResult)
        return out

    def sqlite_rows(self, table: str) -> dict[str, tuple[int, str | None]]:
        with sqlite3.connect(self.sqlite_path) as conn:
            rows = conn.execute(f'SELECT "Id", "versionnumber", name FROM "{table}"').fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def counts(self, pid: str) -> dict[str, int]:
        """The store's counters of a profile summed over its entities, and its raw pending gauge."""
        with sqlite3.connect(self.admin_db) as conn:
            rows = conn.execute(
                "SELECT entity, total, success, failure, stale, unprocessable, skipped, pending_retry "
                "FROM des_metrics WHERE profile_id = ?",
                (pid,),
            ).fetchall()
        names = ("received", "applied", "failed", "stale", "unprocessable", "skipped")
        out = {n: sum(int(r[i + 1]) for r in rows if r[0] != "") for i, n in enumerate(names)}
        out["pending"] = sum(int(r[7]) for r in rows)
        out["rows"] = len(rows)
        return out

    def retry_states(self, pid: str | None = None) -> list[Any]:
        return list(self.storage.retries.states(pid))


def result_of(out: FanOutResult, pid: str) -> BatchResult:
    """What a profile committed in a fan-out (it must have)."""
    o = out.outcomes[pid]
    assert o.error is None
    assert o.result is not None
    return o.result


def conserved(counts: dict[str, int]) -> bool:
    final = counts["applied"] + counts["stale"] + counts["failed"] + counts["unprocessable"] + counts["skipped"]
    return counts["received"] == final


@pytest.fixture
def world(tmp_path: Path, storage: Storage, switch: Switch) -> Iterator[World]:
    admin_db = tmp_path / "admin.db"
    rt = build_runtime(
        ProfilesConfig(store_dsn=f"sqlite:///{admin_db}", allow_literal=True, profile_cache_seconds=60,
                        write_attempts=2),
        storage=storage,
    )  # fmt: skip
    sqlite_path = tmp_path / "dest.db"
    lite = create_profile(rt, "to sqlite", f"sqlite:///{sqlite_path}", ["account", "contact"],
                          retryCount=3, retryIntervalSeconds=0)  # fmt: skip
    pgid = create_profile(rt, "to postgres", switch.dsn, ["account"], prefix="crm", retryCount=3,
                          retryIntervalSeconds=0)  # fmt: skip
    c = profiles_root(rt)
    try:
        yield World(rt, c, storage, admin_db, sqlite_path, switch, lite, pgid)
    finally:
        switch.up()
        c.close()
        rt.close()


# ------------------------------------------------------------------------------------ fan-out
def test_both_profiles_apply_and_unprocessables_land_once_under_unrouted(world: World) -> None:
    w = world
    out = w.send(
        body(note("account", 1, 1, "create"), note("account", 2, 1, "create"), note("contact", 7, 1, "create")),
        body(note("lead", 9, 1, "create"), note("account", 3, 1, "create", org=OTHER_ORG)),
        "{broken json",
        body({**note("account", 4, 1, "create"), "schemaVersion": 2}),
    )
    assert set(out.outcomes) == {w.lite, w.pgid}
    assert all(o.error is None for o in out.outcomes.values())
    assert out.unrouted == {"lead": 1, "account": 1}
    assert w.sqlite_rows("account") == {rid(1): (1, "account 1 v1"), rid(2): (1, "account 2 v1")}
    assert w.sqlite_rows("contact") == {rid(7): (1, "contact 7 v1")}
    assert w.pg.rows("crm_account") == w.sqlite_rows("account")

    # Unprocessable bodies: once for the batch, under unrouted/, not once per profile.
    kept = sorted(w.storage.stores.names(UNPROCESSABLE))
    assert len(kept) == 1
    assert kept[0].startswith(f"{UNROUTED_FOLDER}/")
    entries = list(w.storage.unprocessable.entries(UNROUTED_FOLDER))
    reasons = sorted(e["reason"].split(":")[0] for e in entries)
    assert reasons == ["malformed JSON", "unsupported schemaVersion 2; this service reads 1"]
    assert {e["body"] for e in entries} >= {"{broken json"}

    # The store: each profile's outcomes, the unrouted bucket's skipped and unprocessable.
    lite, pg, unrouted = w.counts(w.lite), w.counts(w.pgid), w.counts(UNROUTED)
    assert (lite["received"], lite["applied"], lite["pending"]) == (3, 3, 0)
    assert (pg["received"], pg["applied"], pg["pending"]) == (2, 2, 0)
    assert (unrouted["skipped"], unrouted["unprocessable"]) == (2, 2)
    assert conserved(lite)
    assert conserved(pg)
    assert conserved(unrouted)


def test_a_down_destination_parks_only_its_profile_then_the_retry_applies_it(world: World) -> None:
    w = world
    w.send(body(note("account", 1, 1, "create"), note("account", 2, 1, "create")))
    w.pg.down()
    second = body(note("account", 1, 2), note("account", 3, 1, "create"), note("contact", 8, 1, "create"))
    out = w.send(second)
    assert out.outcomes[w.pgid].error is not None
    assert result_of(out, w.lite).applied == 3
    [state] = w.retry_states()
    assert (state.profile_id, state.count, state.attempt) == (w.pgid, 2, 0)  # the PostgreSQL profile's accounts only
    assert w.retry_states(w.lite) == []
    assert w.sqlite_rows("account")[rid(1)] == (2, "account 1 v2")
    assert w.counts(w.pgid)["pending"] == 2

    # Service Bus redelivers the batch (its lock was lost): SQLite sees it stale, the parked blob is
    # the same one (no second copy, the pending gauge not counted twice).
    again = w.send(second)
    assert result_of(again, w.lite).stale == 3
    assert len(w.retry_states()) == 1
    assert w.counts(w.pgid)["pending"] == 2

    # Still down: the retry is rescheduled under the profile's policy.
    outcome = process_retry_blob(state.name, w.c.retries)
    assert (outcome.status, outcome.attempt) == (Status.RESCHEDULED, 1)
    lite_before, sqlite_before = w.counts(w.lite), w.sqlite_rows("account")

    w.pg.up()
    report = handle_retry_sweep(w.c)
    assert report is not None
    assert report.processed == {"resolved": 1}
    assert w.retry_states() == []
    assert w.pg.rows("crm_account") == {
        rid(1): (2, "account 1 v2"), rid(2): (1, "account 2 v1"), rid(3): (1, "account 3 v1"),
    }  # fmt: skip
    # The retry touched only the PostgreSQL profile: SQLite applied the batch once, at delivery.
    assert w.counts(w.lite) == lite_before
    assert w.sqlite_rows("account") == sqlite_before
    pg = w.counts(w.pgid)
    assert conserved(pg)
    assert (pg["received"], pg["applied"], pg["pending"]) == (4, 4, 0)
    lite = w.counts(w.lite)
    assert conserved(lite)
    assert (lite["received"], lite["applied"], lite["stale"]) == (8, 5, 3)


def test_the_retry_policy_is_the_profiles_own(world: World) -> None:
    w = world
    now = create_profile(w.rt, "pg at once", w.pg.dsn, ["account"], prefix="now", retryCount=0)
    once = create_profile(w.rt, "pg once", w.pg.dsn, ["account"], prefix="once", retryCount=1, retryIntervalSeconds=0)
    w.pg.down()
    out = w.send(body(note("account", 5, 1, "create")))
    assert {pid for pid, o in out.outcomes.items() if o.error is not None} == {w.pgid, now, once}
    # Retry count 0: failed at once, in the failure log, nothing parked.
    assert w.retry_states(now) == []
    [line] = list(w.storage.failure_log.rows(now))
    assert line["RecordId"] == rid(5)
    assert line["FailureReason"].startswith("destination unavailable (retry count 0)")
    assert (w.counts(now)["failed"], w.counts(now)["pending"]) == (1, 0)
    # Retry count 1: the first retry that fails is the last; the record goes to that profile's log.
    [state] = w.retry_states(once)
    assert w.c.router.policy_for(once).count == 1
    outcome = process_retry_blob(state.name, w.c.retries)
    assert (outcome.status, outcome.attempt) == (Status.EXHAUSTED, 1)
    [line] = list(w.storage.failure_log.rows(once))
    assert line["FailureReason"].startswith("destination unavailable after 1 retries")
    once_counts = w.counts(once)
    assert conserved(once_counts)
    assert (once_counts["failed"], once_counts["pending"]) == (1, 0)
    # Retry count 3 (the first profile): still waiting.
    [state] = w.retry_states(w.pgid)
    assert process_retry_blob(state.name, w.c.retries).status is Status.RESCHEDULED
    assert list(w.storage.failure_log.rows(w.pgid)) == []


# ------------------------------------------------------------------- deactivate and delete
def test_a_deactivated_profile_counts_skipped_at_fan_out_and_at_retry(world: World) -> None:
    w = world
    w.send(body(note("account", 1, 1, "create")))
    w.rt.service.deactivate(w.pgid)
    out = w.send(body(note("account", 1, 2), note("account", 2, 1, "create")))
    assert out.outcomes[w.pgid].skipped == {"account": 2}
    assert out.outcomes[w.pgid].notifications == []
    assert w.pg.rows("crm_account") == {rid(1): (1, "account 1 v1")}
    assert w.sqlite_rows("account")[rid(1)] == (2, "account 1 v2")
    pg = w.counts(w.pgid)
    assert (pg["received"], pg["applied"], pg["skipped"]) == (3, 1, 2)
    assert conserved(pg)

    # Parked while active, deactivated before the retry: the parked notifications are skipped too.
    w.rt.service.activate(w.pgid)
    w.pg.down()
    w.send(body(note("account", 1, 3)))
    [state] = w.retry_states(w.pgid)
    w.rt.service.deactivate(w.pgid)
    w.pg.up()
    assert handle_retry_blob(f"{RETRY}/{state.name}", w.c) == Status.SKIPPED.value
    assert w.retry_states() == []
    assert w.pg.rows("crm_account") == {rid(1): (1, "account 1 v1")}
    pg = w.counts(w.pgid)
    assert (pg["skipped"], pg["pending"]) == (3, 0)
    assert conserved(pg)


def test_notifications_parked_for_a_profile_deleted_meanwhile_are_kept_under_unrouted(world: World) -> None:
    w = world
    w.pg.down()
    w.send(body(note("account", 1, 1, "create"), note("account", 2, 1, "create")))
    [state] = w.retry_states(w.pgid)
    # Another instance deleted the profile; its blob cleanup ran before this instance parked.
    assert w.rt.store.delete_profile(w.pgid)
    w.rt.directory.invalidate()
    w.pg.up()
    assert process_retry_blob(state.name, w.c.retries).status is Status.ORPHANED
    assert w.retry_states() == []
    kept = list(w.storage.unprocessable.entries(UNROUTED_FOLDER))
    assert sorted(json.loads(k["body"])["recordId"] for k in kept) == [rid(1), rid(2)]
    assert all(f"profile {w.pgid} was deleted" in k["reason"] for k in kept)
    assert w.counts(w.pgid)["rows"] == 0  # no metrics resurrected for the deleted profile
    unrouted = w.counts(UNROUTED)
    assert (unrouted["received"], unrouted["unprocessable"]) == (2, 2)
    assert list(w.storage.stores.names(FAILURELOG, f"{w.pgid}/")) == []


def test_an_orphaned_long_money_value_is_kept_with_every_digit(world: World) -> None:
    """The kept body of a parked notification whose profile was deleted is replayable exactly."""
    w = world
    money = Decimal("-1234567890123456789012345678901234.5678")  # 38 significant digits
    w.pg.down()
    w.send(body(note("account", 1, 1, "create", revenue="<money>")).replace('"<money>"', str(money)))
    [state] = w.retry_states(w.pgid)
    assert w.rt.store.delete_profile(w.pgid)
    w.rt.directory.invalidate()
    w.pg.up()
    assert process_retry_blob(state.name, w.c.retries).status is Status.ORPHANED
    [kept] = list(w.storage.unprocessable.entries(UNROUTED_FOLDER))
    assert str(money) in kept["body"]
    [n] = parse_bodies([kept["body"]]).notifications  # what a replay of the kept body reads
    assert n.attributes is not None
    assert n.attributes["revenue"] == money


# ------------------------------------------------------------------------------ claim checks
def test_a_payload_blob_goes_only_after_every_profile_committed_or_parked(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    sender = InMemorySender(SPILL_LIMIT)
    big = note("account", 1, 1, "create", description="Ä" * SPILL_LIMIT)
    NotificationPublisher(sender, w.storage.payloads, max_message_bytes=SPILL_LIMIT).publish(
        [big, note("account", 2, 1, "create")]
    )
    bodies = [b.decode() for b in sender.bodies]
    [payload] = list(w.storage.stores.names(DATA))
    w.pg.down()
    # The process dies after SQLite committed and PostgreSQL's notifications were parked, before
    # the metrics and the payload's deletion: the payload must still be there.
    real = w.rt.store.record_batch
    calls = {"n": 0}

    def dies_once(entries: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the process died here (a crash injected by the test)")
        real(entries)

    monkeypatch.setattr(w.rt.store, "record_batch", dies_once)
    with pytest.raises(RuntimeError, match="process died"):
        w.send(*bodies)
    assert list(w.storage.stores.names(DATA)) == [payload]
    [state] = w.retry_states(w.pgid)
    # Parked in full: the payload blob is shared by the batch's profiles and goes with the batch.
    parked = w.storage.retries.read(state.name).notifications
    assert sorted(("payloadRef" in n, "attributes" in n) for n in parked) == [(False, True), (False, True)]

    # Service Bus redelivers: SQLite stale, the same retry blob, then the payload goes.
    again = w.send(*bodies)
    assert result_of(again, w.lite).stale == 2
    assert list(w.storage.stores.names(DATA)) == []
    assert len(w.retry_states()) == 1
    assert w.counts(w.pgid)["pending"] == 2
    w.pg.up()
    assert process_retry_blob(state.name, w.c.retries).status is Status.RESOLVED
    rows = w.pg.rows("crm_account")
    assert set(rows) == {rid(1), rid(2)}
    with psycopg.connect(w.pg.admin) as conn:
        [(description,)] = conn.execute(
            'SELECT "description" FROM "public"."crm_account" WHERE "Id" = %s', [rid(1)]
        ).fetchall()
    assert description == "Ä" * SPILL_LIMIT
    pg = w.counts(w.pgid)
    assert (pg["received"], pg["applied"], pg["pending"]) == (2, 2, 0)
    assert conserved(pg)
    lite = w.counts(w.lite)
    assert (lite["applied"], lite["stale"]) == (0, 2)  # the first delivery's commit was never counted (crash)
    assert conserved(lite)


# --------------------------------------------------------------------------------- metadata
def test_entity_metadata_fans_out_and_is_parked_and_retried(world: World) -> None:
    w = world
    meta = {**metadata("account", 1, attr("name", "String", maxLength=200)), "organizationId": ORG}
    w.pg.down()
    out = w.send(json.dumps([meta, note("account", 1, 1, "create")]))
    assert result_of(out, w.lite).applied == 2  # the metadata and the record
    [state] = w.retry_states(w.pgid)
    assert state.count == 2
    w.pg.up()
    assert process_retry_blob(state.name, w.c.retries).status is Status.RESOLVED
    for dsn, layout in ((f"sqlite:///{w.sqlite_path}", Layout()), (w.pg.dsn, Layout(prefix="crm"))):
        dest = open_destination(dsn, layout)
        try:
            names = {r["EntityName"] for r in table_rows(dest, layout.metadata_table("AttributeMetadata"))}
        finally:
            dest.close()
        assert names == {"account"}
    pg = w.counts(w.pgid)
    assert (pg["received"], pg["applied"], pg["pending"]) == (2, 2, 0)


# --------------------------------------------------------------------------- without storage
def test_without_blob_storage_a_failing_profile_makes_the_handler_raise(world: World, tmp_path: Path) -> None:
    w = world
    w.send(body(note("account", 2, 1, "create", numberofemployees=5)))  # an integer column
    pg_before = w.counts(w.pgid)
    local = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{w.admin_db}", allow_literal=True, write_attempts=1))
    c = profiles_root(local, rejects_dir=tmp_path / "rejects")
    try:
        assert c.storage is None
        w.pg.down()
        with pytest.raises((ConnectionFailed, TransientDestinationError)):
            handle_notifications(
                [body(note("account", 1, 1, "create")), body(note("account", 3, 1, "create", numberofemployees="many")),
                 "{not json"],
                c,
            )  # fmt: skip
        # SQLite committed and its outcomes are kept and counted; nothing of PostgreSQL's, nothing
        # batch-wide (the redelivery counts those).
        assert set(w.sqlite_rows("account")) == {rid(1), rid(2)}
        lines = (tmp_path / "rejects" / w.lite / "failures.csv").read_text().splitlines()
        assert lines[0].startswith("Entity,RecordId")
        assert rid(3) in lines[1]
        assert (w.counts(w.lite)["applied"], w.counts(w.lite)["failed"]) == (2, 1)
        assert w.counts(w.pgid) == pg_before
        assert w.counts(UNROUTED)["rows"] == 0
        assert w.retry_states() == []
    finally:
        c.close()
        local.close()


# ---------------------------------------------------------------------------- function app
def test_the_service_bus_function_fans_out_in_profile_mode(world: World) -> None:
    w = world
    messages = [
        func.ServiceBusMessage(body=body(note("account", 1, 1, "create"), note("contact", 7, 1, "create")).encode()),
        func.ServiceBusMessage(body=b"{broken json"),
    ]
    reset_root(w.c)
    try:
        function_app.sync_notifications(messages, FakeContext())
        assert w.sqlite_rows("account") == {rid(1): (1, "account 1 v1")}
        assert w.sqlite_rows("contact") == {rid(7): (1, "contact 7 v1")}
        assert w.pg.rows("crm_account") == {rid(1): (1, "account 1 v1")}
        # PostgreSQL down: the function returns normally (Service Bus completes the messages); the
        # profile's notification waits in its retry blob.
        w.pg.down()
        message = func.ServiceBusMessage(body=body(note("account", 1, 2)).encode())
        function_app.sync_notifications([message], FakeContext())
        [state] = w.retry_states(w.pgid)
        assert state.count == 1
        assert w.sqlite_rows("account") == {rid(1): (2, "account 1 v2")}
        w.pg.up()
        stream = func.blob.InputStream(data=b"(encrypted; not read)", name=f"{RETRY}/{state.name}")
        function_app.retry_blobs(stream, FakeContext())
    finally:
        reset_root(None)
    assert w.retry_states() == []
    assert w.pg.rows("crm_account") == {rid(1): (2, "account 1 v2")}
    [kept] = list(w.storage.unprocessable.entries(UNROUTED_FOLDER))
    assert kept["body"] == "{broken json"
    for pid in (w.lite, w.pgid):
        counts = w.counts(pid)
        assert conserved(counts)
        assert counts["pending"] == 0
    assert (w.counts(w.pgid)["received"], w.counts(w.pgid)["applied"]) == (2, 2)


def test_the_function_app_picks_its_mode_from_the_settings(tmp_path: Path) -> None:
    env = {
        S.ADMIN_STORE: f"sqlite:///{tmp_path / 'admin.db'}",
        S.REJECTS_DIR: str(tmp_path / "rejects"),
        S.DESTINATION_DSN: f"sqlite:///{tmp_path / 'single.db'}",
        S.PROFILE_ID: "local",
    }
    single = build_root(S.AppConfig.from_env(env))
    try:
        assert (single.mode, single.runtime, single.router.default_profile_id) == ("single destination", None, "local")
        assert single.storage is None
        result = handle_notifications([body(note("account", 1, 1, "create"))], single)
        assert isinstance(result, FanOutResult)  # one result type in both modes
        assert (list(result.outcomes), result.final().applied) == (["local"], 1)
    finally:
        single.close()

    del env[S.DESTINATION_DSN]
    profiles = build_root(S.AppConfig.from_env(env))
    try:
        assert profiles.mode == "profiles"
        assert profiles.runtime is not None
        assert profiles.runtime.store.list_profiles() == []
        out = handle_notifications([body(note("account", 1, 1, "create"))], profiles)
        assert isinstance(out, FanOutResult)
        assert out.unrouted == {"account": 1}  # no profile yet: skipped
    finally:
        profiles.close()
