"""The push re-read in the function app (issue 13): the Service Bus function's handler, on the root
the function app builds (profile mode, :func:`shared.root.build_root`), re-reads Dataverse messages
without a full post-image through the Dataverse source of the message's organization's profile.

The Dataverse simulator runs on 127.0.0.1 (uvicorn) and posts its own changes as Dataverse would
(partial Update targets without post-images, a truncated message, Deletes without pre-images,
Associate/Disassociate); the destination is a real SQLite file or PostgreSQL database; the held
versions a verified delete needs are read by key from it. Without a source on the profile the same
messages stay unprocessable with the reason.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared import config as S
from shared.contract.parse import parse_bodies
from shared.destinations import Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.handlers import handle_notifications
from shared.profiles.fanout import FanOutResult
from shared.profiles.model import ProfileCreate, ProfileState
from shared.pull.queue import PageMessage
from shared.pull.work import Outcome
from shared.pull.worker import LocalWorker
from shared.root import Root, build_root
from shared.source.dataverse.cursors import InitialSyncState
from shared.tools.dataverse_check import compare
from shared.tools.dataverse_sim import PushOptions, RunningSimulator, run_simulator
from shared.tools.dataverse_sim.push import PushMessage
from tests.support.metrics import note

pytestmark = pytest.mark.integration

TABLES = ("account", "contact", "opportunity", "des_account_contact")
REL = "des_account_contact"


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    options = PushOptions(post_image="none", delete_pre_image=False)  # every message needs the re-read
    with run_simulator(records=8, seed=5, push=options) as running:
        yield running


def app_root(tmp_path: Path, running: RunningSimulator) -> Root:
    """The function app's root (profile mode) from its settings: the simulator's development token."""
    env = {
        S.ADMIN_STORE: f"sqlite:///{tmp_path / 'admin.db'}", S.ALLOW_LITERAL_DESTINATIONS: "true",
        S.DATAVERSE_TOKEN: running.token, "DES_DATAVERSE_PAGE_SIZE": "5", S.REJECTS_DIR: str(tmp_path / "rejects"),
    }  # fmt: skip
    return build_root(S.AppConfig.from_env(env))


def activate(root: Root, running: RunningSimulator, dsn: str, *, source: bool, prefix: str = "") -> str:
    rt = root.runtime
    assert rt is not None
    doc: dict[str, Any] = {
        "name": f"push {uuid.uuid4().hex[:6]}", "organizationId": running.sim.state.organization.organization_id,
        "destination": dsn, "entities": ["account", "contact", "opportunity"], "relationships": [REL],
        "prefix": prefix,
    }  # fmt: skip
    if source:
        doc["source"] = {"environmentUrl": running.environment_url, "auth": {"kind": "developmentToken"}}
    p = rt.service.create(ProfileCreate.model_validate(doc))
    assert rt.service.activate(p.id).state is ProfileState.ACTIVE
    if source:  # the initial sync (change tracking) first: push runs beside it
        assert root.source is not None
        worker = LocalWorker(root.source, poll_seconds=0.5)
        deadline = time.monotonic() + 60

        def done() -> bool:
            states = {c.entity: c.initial_sync_state for c in root.source.cursors.list(p.id)}  # type: ignore[union-attr]
            return all(states.get(t) is InitialSyncState.COMPLETED for t in TABLES)

        while not done():
            assert time.monotonic() < deadline, "the initial sync did not complete"
            if worker.run_once() == 0:
                time.sleep(0.05)
    return p.id


def deliver(root: Root, messages: list[PushMessage]) -> FanOutResult:
    """What ``sync_notifications`` does with a batch: (body, application properties) per message."""
    return handle_notifications([(mm.body, mm.application_properties) for mm in messages], root)


def problems(dsn: str, running: RunningSimulator, layout: Layout | None = None) -> list[str]:
    dest = open_destination(dsn, layout or Layout())
    try:
        return [p for t in TABLES for p in compare(dest, running.sim, t).problems()]
    finally:
        dest.close()


def rows(dsn: str, entity: str) -> dict[str, dict[str, Any]]:
    dest = open_destination(dsn, Layout())
    try:
        return {str(r["Id"]).lower(): r for r in dest.table_rows(entity)}  # type: ignore[attr-defined]
    finally:
        dest.close()


def test_messages_needing_a_reread_are_read_through_the_profiles_source(
    tmp_path: Path, dsn: str, sim: RunningSimulator
) -> None:
    root = app_root(tmp_path, sim)
    try:
        assert root.rereads is not None
        activate(root, sim, dsn, source=True)
        assert problems(dsn, sim) == []
        state, options = sim.sim.state, sim.sim.push.options
        sim.sim.push.drain()  # the initial records' messages: the initial sync has them
        a = state.create("account", {"name": "pushed", "numberofemployees": 3, "des_channels": [100000001]})
        state.update("account", a, {"name": "renamed"})  # a partial Update Target, no post-image
        options.truncate_rate = 1.0
        state.update("account", a, {"numberofemployees": 42})  # truncated: MessageMaxSizeExceeded
        options.truncate_rate = 0.0
        contact = state.ids("contact")[0]
        state.associate(REL, a, contact)
        gone = state.ids("account")[0]
        held_before = rows(dsn, "account")[gone]["versionnumber"]
        state.delete("account", gone)  # no pre-image: verified at the source, held version read by key
        linked = [(x, c) for x in state.ids("account") for c in state.ids("contact")
                  if state.link_id(state.relationship(REL), x, c) is not None]  # fmt: skip
        x, c = linked[0]
        link_row = state.link_id(state.relationship(REL), x, c)
        state.disassociate(REL, x, c)  # the intersect row held for the pair, read by its two columns
        messages = sim.sim.push.drain()
        assert any(mm.truncated for mm in messages)
        assert {mm.message_name for mm in messages} >= {"Create", "Update", "Delete", "Associate", "Disassociate"}
        result = deliver(root, messages)
        assert result.unprocessable == [], [u.reason for u in result.unprocessable]
        final = result.final()
        assert final.failed == 0, [f.reason for f in final.failures]
        assert problems(dsn, sim) == []
        accounts = rows(dsn, "account")
        assert accounts[a]["name"] == "renamed"
        assert accounts[a]["numberofemployees"] == 42
        assert gone not in accounts
        assert str(link_row).lower() not in rows(dsn, REL)
        assert held_before > 0
        # the same batch again (at-least-once delivery): nothing changes
        again = deliver(root, messages).final()
        assert again.applied == 0, again.counts()
        assert problems(dsn, sim) == []
    finally:
        root.close()


def test_a_phantom_create_is_harmless(tmp_path: Path, dsn: str, sim: RunningSimulator) -> None:
    """A Create whose record is not at the source (a synchronous step rolled back after posting, or
    deleted since) and whose Delete message never comes: skipped without a post-image; with one, a
    synchronous step's message is re-read too, and becomes a delete at ``2v + 1`` (its post-image
    would otherwise have written the row)."""
    root = app_root(tmp_path, sim)
    try:
        activate(root, sim, dsn, source=True)
        state, options = sim.sim.state, sim.sim.push.options
        sim.sim.push.drain()
        phantom = state.create("account", {"name": "rolled back"})
        create = sim.sim.push.drain()
        state.delete("account", phantom)
        sim.sim.push.drain()  # the Delete message is lost (or never posted: a rolled-back step)
        result = deliver(root, create)
        assert result.unprocessable == []
        assert result.final().applied == 0
        assert phantom not in rows(dsn, "account")
        options.post_image, options.synchronous = "all", True
        other = state.create("account", {"name": "rolled back, with a post-image"})
        create = sim.sim.push.drain()
        state.delete("account", other)
        sim.sim.push.drain()
        assert create[0].json()["Mode"] == 0
        result = deliver(root, create)
        assert result.unprocessable == []
        assert result.final().applied == 1  # the delete at 2v + 1 (a tombstone: there is no row)
        assert other not in rows(dsn, "account")
        # a real synchronous step's Create (the record exists) is re-read and applied
        options.post_image = "none"
        real = state.create("account", {"name": "committed"})
        assert deliver(root, sim.sim.push.drain()).final().applied == 1
        assert rows(dsn, "account")[real]["name"] == "committed"
        assert problems(dsn, sim) == []
    finally:
        root.close()


def test_without_a_source_the_messages_stay_unprocessable_with_the_reason(
    tmp_path: Path, sqlite_dsn: str, sim: RunningSimulator
) -> None:
    root = app_root(tmp_path, sim)
    try:
        activate(root, sim, sqlite_dsn, source=False)
        state, options = sim.sim.state, sim.sim.push.options
        sim.sim.push.drain()
        options.post_image = "all"
        a = state.create("account", {"name": "full post-image"})
        options.post_image = "none"
        state.update("account", a, {"name": "partial"})
        result = deliver(root, sim.sim.push.drain())
        [u] = result.unprocessable
        assert "register a post-image on the step" in u.reason
        assert rows(sqlite_dsn, "account")[a]["name"] == "full post-image"  # never applied partially
    finally:
        root.close()



def test_held_versions_come_from_every_profile_of_the_organization(
    tmp_path: Path, sim: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The re-read source of an organization: its profile with a source answers; the versions held
    are the highest over every active profile exporting the entity (read by key); a destination
    that cannot be opened is left out with a warning."""
    root = app_root(tmp_path, sim)
    try:
        org = sim.sim.state.organization.organization_id
        assert root.rereads is not None
        assert root.rereads(org) is None  # no profile yet
        with_source = activate(root, sim, f"sqlite:///{tmp_path / 'a.db'}", source=True)
        other_dsn = f"sqlite:///{tmp_path / 'b.db'}"
        activate(root, sim, other_dsn, source=False)
        (tmp_path / "c").mkdir()
        activate(root, sim, f"sqlite:///{tmp_path / 'c' / 'c.db'}", source=False)
        shutil.rmtree(tmp_path / "c")  # this destination cannot be opened any more
        root.runtime.directory.invalidate()  # type: ignore[union-attr]
        reread = root.rereads(org)
        assert reread is not None
        assert reread is root.rereads(org.upper())  # cached per organization and profile revisions
        assert root.rereads(str(uuid.uuid4())) is None  # another organization: no source
        account = sim.sim.state.ids("account")[0]
        in_a = rows(f"sqlite:///{tmp_path / 'a.db'}", "account")[account]["versionnumber"]
        assert reread.held("account", account) == in_a  # type: ignore[attr-defined]
        # the other profile's destination holds a higher version (e.g. it applied a later message)
        dest = open_destination(other_dsn, Layout())
        try:
            n = {**note(0, in_a + 10, "update", name="later"), "recordId": account, "organizationId": org}
            assert SyncEngine(dest).apply_parsed(parse_bodies([json.dumps(n).encode()])).applied == 1
        finally:
            dest.close()
        with caplog.at_level("WARNING", logger="shared.pull.reread"):
            assert reread.held("account", account) == in_a + 10  # type: ignore[attr-defined]
        assert any("left out" in r.getMessage() for r in caplog.records)
        assert reread.columns("account") is not None
        assert reread.columns("systemuser") is None  # not one of the source's tables
        assert root.source is not None
        assert root.source.cursors.get(with_source, "account") is not None  # its columns: the cursor's
    finally:
        root.close()


def pull_pass(root: Root, profile_id: str) -> None:
    """One change-tracking pass per table, as the page units run it (applied through the router)."""
    assert root.source is not None
    for entity in TABLES:
        for _ in range(200):
            state = root.source.cursors.get(profile_id, entity)
            unit = PageMessage(profile_id, entity, state.revision if state is not None else None).encode()
            if root.source.handle_page(unit) is Outcome.DONE:
                break
        else:
            raise AssertionError(f"no complete pass of {entity}")


@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    changes=st.integers(5, 25),
    post_image=st.sampled_from(["all", "primary_name", "none"]),
    pre_image=st.booleans(),
    duplicate_rate=st.sampled_from([0.0, 0.3]),
    truncate_rate=st.sampled_from([0.0, 0.3]),
    shuffle=st.randoms(use_true_random=False),
    batch=st.integers(1, 10),
    pull_at=st.floats(0.0, 1.0),
)
def test_push_through_the_handler_and_pull_converge(
    dsn: str, seed: int, changes: int, post_image: Any, pre_image: bool, duplicate_rate: float,
    truncate_rate: float, shuffle: random.Random, batch: int, pull_at: float,
) -> None:
    """The simulator's history as push messages (duplicated, truncated, partial, reordered where the
    deletes carry their version) through the Service Bus function's handler, with one change-tracking
    pass of the same profile at a random point: the destination converges to the simulator's data."""
    options = PushOptions(post_image=post_image, delete_pre_image=pre_image, duplicate_rate=duplicate_rate,
                          truncate_rate=truncate_rate, seed=seed)  # fmt: skip
    prefix = f"p{uuid.uuid4().hex[:8]}"  # fresh tables per example on one database
    with tempfile.TemporaryDirectory() as tmp, run_simulator(records=6, seed=seed, push=options) as running:
        root = app_root(Path(tmp), running)
        try:
            pid = activate(root, running, dsn, source=True, prefix=prefix)
            running.sim.push.drain()
            running.sim.random_changes(changes, seed=seed)
            messages = running.sim.push.drain()
            if pre_image:
                shuffle.shuffle(messages)
            split = round(pull_at * len(messages))
            for part in (messages[:split], None, messages[split:]):
                if part is None:
                    pull_pass(root, pid)
                    continue
                for i in range(0, len(part), batch):
                    result = deliver(root, part[i : i + batch])
                    assert result.unprocessable == [], [u.reason for u in result.unprocessable]
                    final = result.final()
                    assert final.failed == 0, [f.reason for f in final.failures]
            assert problems(dsn, running, Layout(prefix=prefix)) == []
        finally:
            root.close()
