"""The Dataverse source as the app runs it: a profile with a source, validated and activated, its
initial sync as page units on the work queue (Azurite's queue, or the in-process one), live changes
in the simulator polled and applied, converged with the simulator's own data on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import config as S
from shared.destinations import Layout, open_destination
from shared.profiles.model import ProfileCreate, ProfileState
from shared.profiles.service import Invalid
from shared.pull.queue import InMemoryWorkQueue, StorageWorkQueue
from shared.pull.worker import LocalWorker
from shared.root import Root, api_root
from shared.source.dataverse.cursors import InitialSyncState
from shared.tools.dataverse_check import compare
from shared.tools.dataverse_sim import RunningSimulator, run_simulator
from tests.support.azurite import Azurite

pytestmark = pytest.mark.integration

TABLES = ("account", "contact", "opportunity")
RELATIONSHIPS = ("des_account_contact",)


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with run_simulator(records=14, seed=4) as running:
        yield running


def app_env(tmp_path: Path, running: RunningSimulator, **extra: str) -> dict[str, str]:
    return {
        S.ADMIN_STORE: f"sqlite:///{tmp_path / 'admin.db'}", S.ALLOW_LITERAL_DESTINATIONS: "true",
        S.DATAVERSE_TOKEN: running.token, "DES_DATAVERSE_PAGE_SIZE": "5", "DES_SOURCE_POLL_INTERVAL_SECONDS": "1",
        S.REJECTS_DIR: str(tmp_path / "rejects"), **extra,
    }  # fmt: skip


def profile_body(running: RunningSimulator, dsn: str, **kw: Any) -> ProfileCreate:
    doc: dict[str, Any] = {
        "name": f"dv {uuid.uuid4().hex[:6]}", "organizationId": running.sim.state.organization.organization_id,
        "destination": dsn, "entities": list(TABLES), "relationships": list(RELATIONSHIPS), "writeDeleteLog": True,
        "source": {"environmentUrl": running.environment_url, "auth": {"kind": "developmentToken"}}, **kw,
    }  # fmt: skip
    return ProfileCreate.model_validate(doc)


def run_until(worker: LocalWorker, done: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the source did not get there in time"
        if worker.run_once() == 0:
            time.sleep(0.05)


def converged(dsn: str, running: RunningSimulator, tables: tuple[str, ...]) -> list[str]:
    dest = open_destination(dsn, Layout(write_delete_log=True))
    try:
        out: list[str] = []
        for t in tables:
            out += compare(dest, running.sim, t).problems()
        return out
    finally:
        dest.close()


def completed(root: Root, pid: str, tables: tuple[str, ...]) -> bool:
    assert root.source is not None
    states = {c.entity: c.initial_sync_state for c in root.source.cursors.list(pid)}
    return all(states.get(t) is InitialSyncState.COMPLETED for t in tables)


def story(root: Root, running: RunningSimulator, dsn: str, worker: LocalWorker) -> str:
    """Validate, create, activate (units enqueued, nothing synced in the call), sync, change, converge."""
    rt = root.runtime
    assert rt is not None
    body = profile_body(running, dsn)
    report = rt.service.validate(body)
    assert report.ok, list(report.failed())
    names = [c.name for c in report.checks]
    for step in ("source token", "source reachable", "source organization", "account: exists",
                 "account: change tracking", "account: organization-level read",
                 "des_account_contact: change tracking"):  # fmt: skip
        assert step in names
    p = rt.service.create(body)
    activated = rt.service.activate(p.id)
    assert activated.state is ProfileState.ACTIVE
    tables = (*TABLES, *RELATIONSHIPS)
    assert not completed(root, p.id, tables)  # the request only enqueued the initial sync
    assert {s.initial_sync_state for s in rt.service.source_status(p.id)[1]} == {"NotStarted"}
    run_until(worker, lambda: completed(root, p.id, tables))
    assert converged(dsn, running, tables) == []
    status = {s.entity: s for s in rt.service.source_status(p.id)[1]}
    assert status["account"].rows_read >= len(running.sim.truth("account"))
    assert status["account"].pages >= 3  # page size 5: one unit per page
    assert status["account"].next_poll is not None
    # live changes: creates, updates, deletes, links; the poll follows the delta links
    running.sim.random_changes(40, seed=9)
    run_until(worker, lambda: converged(dsn, running, tables) == [])
    return p.id


def test_activation_initial_sync_and_live_changes_in_process_queue(
    tmp_path: Path, dsn: str, sim: RunningSimulator
) -> None:
    root = api_root(S.AppConfig.from_env(app_env(tmp_path, sim)))
    try:
        assert root.source is not None
        assert isinstance(root.source.queue, InMemoryWorkQueue)
        story(root, sim, dsn, LocalWorker(root.source, poll_seconds=0.5))
    finally:
        root.close()


def test_activation_initial_sync_and_live_changes_on_azurite(
    tmp_path: Path, sim: RunningSimulator, azurite: Azurite
) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = app_env(tmp_path, sim, AzureWebJobsStorage=azurite.connection_string, DES_BLOB_KEY=f"local-aes:k1:{key}",
                  DES_SOURCE_QUEUE_NAME=f"src-{uuid.uuid4().hex[:10]}")  # fmt: skip
    root = api_root(S.AppConfig.from_env(env))
    try:
        assert root.source is not None
        assert isinstance(root.source.queue, StorageWorkQueue)
        dsn = f"sqlite:///{tmp_path / 'dest.db'}"
        pid = story(root, sim, dsn, LocalWorker(root.source, poll_seconds=0.5))
        # deleting the profile drops its cursors (never the destination's tables)
        root.runtime.service.delete(pid)  # type: ignore[union-attr]
        assert root.source.cursors.list(pid) == []
    finally:
        root.close()


def test_activation_refused_with_named_reasons(tmp_path: Path, sim: RunningSimulator) -> None:
    root = api_root(S.AppConfig.from_env(app_env(tmp_path, sim)))
    try:
        rt = root.runtime
        assert rt is not None
        dsn = f"sqlite:///{tmp_path / 'dest.db'}"
        sim.sim.set_read_depth("contact", "Deep")
        p = rt.service.create(profile_body(sim, dsn, entities=["account", "contact", "systemuser", "nosuchtable"]))
        with pytest.raises(Invalid) as caught:
            rt.service.activate(p.id)
        failed = {c.name: c.detail for c in caught.value.report.failed()}  # type: ignore[union-attr]
        assert set(failed) == {"contact: organization-level read", "systemuser: change tracking",
                               "nosuchtable: exists"}  # fmt: skip
        assert "Deep" in failed["contact: organization-level read"]
        assert "Track changes" in failed["systemuser: change tracking"]
        assert rt.service.get(p.id).state is ProfileState.DRAFT
        assert len(root.source.queue) == 0  # type: ignore[union-attr,arg-type]  # nothing enqueued
        # a refused token, and a token the app does not have
        sim.sim.expire_tokens()
        report = rt.service.test(p.id)
        assert [c.name for c in report.failed()] == ["source reachable"]
        assert "refused the token (HTTP 401)" in report.failed()[0].detail
        other = api_root(S.AppConfig.from_env({**app_env(tmp_path, sim), S.DATAVERSE_TOKEN: ""}))
        try:
            report = other.runtime.service.test(p.id)  # type: ignore[union-attr]
            assert [c.name for c in report.failed()] == ["source token"]
            assert "DES_DATAVERSE_TOKEN" in report.failed()[0].detail
        finally:
            other.close()
    finally:
        root.close()


def refuse_in_destination(dsn: str, table: str, column: str, value: str) -> None:
    """Make the destination refuse rows whose ``column`` is ``value`` (a CHECK constraint, a trigger on
    SQLite): a record-level failure the engine logs, as a database of the admin's could."""
    if dsn.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(dsn.removeprefix("sqlite:///"))
        try:
            for event in ("INSERT", "UPDATE"):
                trigger = f'CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON "{table}" '
                conn.execute(trigger + f"WHEN NEW.\"{column}\" = '{value}' BEGIN SELECT RAISE(ABORT, 'refused'); END")
            conn.commit()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT refuse CHECK ("{column}" IS DISTINCT FROM \'{value}\')')


def test_failed_records_resync_from_the_source_by_id(tmp_path: Path, dsn: str, sim: RunningSimulator) -> None:
    """Re-sync of the failure log re-reads each failed record's current state from the source by id
    (through the admin API, as ``des failures resync`` calls it): a record fixed since is applied as it
    is now, a record deleted since is deleted (its delete versioned above the row the destination
    holds; the delete log has it), without a delta pass; the table then equals the simulator's."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from shared.api import build_app

    root = api_root(S.AppConfig.from_env(app_env(tmp_path, sim, DES_ADMIN_API_KEY="k-4711")))
    try:
        rt = root.runtime
        assert rt is not None
        assert root.source is not None
        worker = LocalWorker(root.source, poll_seconds=0.5)
        p = rt.service.create(profile_body(sim, dsn, entities=["account"], relationships=[]))
        rt.service.activate(p.id)
        run_until(worker, lambda: completed(root, p.id, ("account",)))
        fixed, gone = sorted(sim.sim.truth("account"))[:2]
        refuse_in_destination(dsn, "account", "accountnumber", "REFUSED")
        for rid in (fixed, gone):  # the destination refuses these rows (a record-level error)
            sim.sim.state.update("account", rid, {"accountnumber": "REFUSED"})
        with TestClient(build_app(lambda: root)) as client:
            client.headers["x-functions-key"] = "k-4711"

            def failures() -> list[dict[str, Any]]:
                got = client.get(f"/profiles/{p.id}/failures")
                assert got.status_code == 200, got.text
                return list(got.json())

            run_until(worker, lambda: len(failures()) == 2)
            assert {f["RecordId"] for f in failures()} == {fixed, gone}
            assert converged(dsn, sim, ("account",)) != []  # the two rows are behind
            # the source moves on; no delta pass runs before the re-sync
            sim.sim.state.update("account", fixed, {"accountnumber": "A-1", "name": "fixed since"})
            sim.sim.state.delete("account", gone)
            out = client.post(f"/profiles/{p.id}/failures/resync", json={})
            assert out.status_code == 200, out.text
            body = out.json()
            assert (body["selected"], body["fromSource"], body["missing"]) == (2, 2, 0), body
            assert body["counts"]["applied"] == 2, body
            assert body["counts"]["failed"] == 0, body
            assert converged(dsn, sim, ("account",)) == []
            dest = open_destination(dsn, Layout(write_delete_log=True))
            try:
                logged = [r for r in dest.table_rows("DeleteLog") if str(r["RecordId"]).lower() == gone]  # type: ignore[attr-defined]
            finally:
                dest.close()
            assert len(logged) == 1
            # a selection of one record re-reads only that one (its current state: applied again, stale)
            again = client.post(f"/profiles/{p.id}/failures/resync", json={"recordIds": [fixed]})
            assert again.status_code == 200, again.text
            assert again.json()["fromSource"] == 1, again.text
            assert again.json()["counts"]["stale"] == 1, again.text
            # and a re-created record with the deleted id comes back with the next pass (newer than the delete)
            sim.sim.state.create("account", {"name": "back again"}, record_id=gone)
            run_until(worker, lambda: converged(dsn, sim, ("account",)) == [])
    finally:
        root.close()
