"""The source's units of work on fakes: activation enqueues, one page per unit, the cursor advanced
after the page was delivered, duplicates and busy cursors dropped, transient faults sent again, the
poll sending only what is due or interrupted. The Web API is the test double (httpx MockTransport),
the admin store a real SQLite file, the queue the in-process one, the sink a fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from shared.config import ProfilesConfig
from shared.profiles.model import Profile, ProfileCreate
from shared.pull.queue import BadMessage, InMemoryWorkQueue, PageMessage
from shared.pull.work import Outcome, SourceWork
from shared.root import ProfileRuntime, build_runtime
from shared.source.dataverse.cursors import CursorStore, InitialSyncState, Phase
from shared.source.dataverse.settings import DataverseSettings
from shared.store.sql import SqlStore
from tests.support.dataverse_double import ORG_ID, ORG_URL, DataverseDouble
from tests.support.dataverse_sync import Clock
from tests.support.fakes import FakeSourceSink

pytestmark = pytest.mark.unit

SETTINGS = DataverseSettings(page_size=3, max_attempts=2, poll_interval_seconds=60, lease_seconds=60,
                             token="t0ken")  # fmt: skip


class QueueClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    rt: ProfileRuntime
    work: SourceWork
    queue: InMemoryWorkQueue
    qclock: QueueClock
    sink: FakeSourceSink
    dv: DataverseDouble
    clock: Clock
    profile: Profile

    def drain(self, limit: int = 200) -> list[Outcome]:
        out = []
        while True:
            got = self.queue.receive(1, 30)
            if not got:
                return out
            out.append(self.work.handle_page(got[0].text))
            self.queue.delete(got[0])
            assert len(out) < limit


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    dv = DataverseDouble()
    for i in range(7):
        dv.upsert("account", name=f"Account {i}", revenue=Decimal("10.5000"))
    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True))
    assert isinstance(rt.store, SqlStore)
    clock = Clock()
    cursors = CursorStore(rt.store, clock=clock)
    qclock = QueueClock()
    queue = InMemoryWorkQueue(clock=qclock)
    sink = FakeSourceSink(observe=lambda entity: cursors.get(profile.id, entity))
    work = SourceWork(profiles=rt.service, cursors=cursors, queue=queue, sink_for=lambda _p: sink, settings=SETTINGS,
                      secrets=rt.resolver, transport=dv.transport(), owner="unit-a", clock=clock)  # fmt: skip
    rt.service.source = work
    body = ProfileCreate.model_validate({
        "name": "p", "organizationId": ORG_ID, "destination": f"sqlite:///{tmp_path / 'd.db'}",
        "entities": ["account"],
        "source": {"environmentUrl": ORG_URL, "auth": {"kind": "developmentToken"}},
    })  # fmt: skip
    profile = rt.service.create(body)
    rt.service.activate(profile.id, check=False)
    profile = rt.service.get(profile.id)
    try:
        yield Setup(rt, work, queue, qclock, sink, dv, clock, profile)
    finally:
        work.close()
        rt.close()


def test_activation_enqueues_and_each_unit_reads_one_page_then_sends_the_next(setup: Setup) -> None:
    s = setup
    assert len(s.queue) == 1  # one unit per table, nothing read inside the call
    first = PageMessage.decode(s.queue.receive(1, 0)[0].text)
    assert (first.profile_id, first.entity, first.revision) == (s.profile.id, "account", 0)
    outcomes = s.drain()
    # metadata, 3 pages of 3 (7 rows + page boundary), reconcile: one unit each, then the pass is done
    assert outcomes == [Outcome.NEXT] * 4 + [Outcome.DONE]
    pages = [p for p in s.sink.published if any(b'"changeType":"create"' in b for b in p[1])]
    assert [len(p[1]) for p in pages] == [3, 3, 1]
    # each page was delivered while the cursor still pointed at it: advanced only afterwards
    links = [p[2].link for p in pages]
    assert links[0] is None
    assert links[1] is not None
    assert "skiptoken" in links[1].lower() or links[1] != links[2]
    cursor = s.work.cursors.get(s.profile.id, "account")
    assert cursor is not None
    assert cursor.phase is Phase.DELTA
    assert cursor.initial_sync_state is InitialSyncState.COMPLETED
    assert cursor.rows_read == 7
    assert len(s.queue) == 0  # the timer takes over


def test_a_duplicate_unit_is_dropped_and_one_chain_goes_on(setup: Setup) -> None:
    s = setup
    s.work.send(s.profile.id, "account", 0)  # the timer sent the same unit again
    outcomes = s.drain()
    assert outcomes.count(Outcome.DUPLICATE) == 1
    assert outcomes.count(Outcome.DONE) == 1
    assert len(s.sink.published) == 4  # metadata and three pages (the reconcile found nothing): nothing twice


def test_a_cursor_held_by_another_instance_is_left_alone(setup: Setup) -> None:
    s = setup
    s.work.cursors.claim(s.profile.id, "account", "unit-b", 60)
    assert s.drain() == [Outcome.BUSY]
    assert s.sink.published == []


def test_a_transient_fault_keeps_the_cursor_and_sends_the_unit_later(setup: Setup) -> None:
    s = setup
    got = s.queue.receive(1, 30)[0]
    assert s.work.handle_page(got.text) is Outcome.NEXT  # metadata
    s.queue.delete(got)
    before = s.work.cursors.get(s.profile.id, "account")
    s.sink.fail_next = 1
    got = s.queue.receive(1, 30)[0]
    assert s.work.handle_page(got.text) is Outcome.RETRY
    s.queue.delete(got)
    after = s.work.cursors.get(s.profile.id, "account")
    assert before is not None
    assert after is not None
    assert (after.phase, after.link, after.pages, after.rows_read) == (before.phase, before.link, 0, 0)
    assert after.lease_owner is None  # released
    assert s.queue.receive(1, 30) == []  # sent again with a delay
    s.qclock.now += s.work.retry_seconds
    assert s.drain()[-1] is Outcome.DONE
    assert s.work.cursors.get(s.profile.id, "account").rows_read == 7  # type: ignore[union-attr]


def test_the_poll_sends_due_and_interrupted_tables_only(setup: Setup) -> None:
    s = setup
    s.drain()
    assert s.work.poll() == 0  # at rest, next poll a minute away
    s.clock.now += timedelta(seconds=61)
    s.dv.upsert("account", name="new")
    assert s.work.poll() == 1
    assert s.drain() == [Outcome.DONE]  # one delta page
    assert s.sink.published[-1][0] == "account"
    assert b"new" in s.sink.published[-1][1][0]
    # a unit lost mid-pass (the message was dropped): the poll sends it again at the cursor's revision
    s.work.cursors.reset(s.profile.id, "account")
    s.work.cursors.ensure(s.profile.id, "account")
    assert s.work.poll() == 1
    s.queue.receive(1, 30)  # lost: never deleted, invisible for 30 s
    assert s.work.poll() == 1  # not at rest: sent again
    outcomes = s.drain()
    assert outcomes[-1] is Outcome.DONE


def test_messages_that_are_not_units_or_not_ours(setup: Setup) -> None:
    s = setup
    assert s.work.handle_page("{not json") is Outcome.BAD
    assert s.work.handle_page(json.dumps({"profileId": "x", "entity": "account"})) is Outcome.BAD
    other = PageMessage("5b0b8f3e-2d7f-4c55-9a57-3f3c1f0e9a11", "account", None).encode()
    assert s.work.handle_page(other) is Outcome.SKIPPED  # no such profile
    assert s.work.handle_page(PageMessage(s.profile.id, "contact", None).encode()) is Outcome.SKIPPED
    s.rt.service.deactivate(s.profile.id)
    assert s.drain() == [Outcome.SKIPPED]
    assert s.work.poll() == 0


@pytest.mark.parametrize("doc", [
    {"profileId": "5B0B8F3E-2D7F-4C55-9A57-3F3C1F0E9A11", "entity": "account", "revision": True},
    {"profileId": "5b0b8f3e-2d7f-4c55-9a57-3f3c1f0e9a11", "entity": "Account; DROP", "revision": 1},
    {"profileId": "5b0b8f3e-2d7f-4c55-9a57-3f3c1f0e9a11", "entity": "account", "revision": -1},
    [1, 2],
])  # fmt: skip
def test_page_message_rejects_what_it_cannot_use(doc: object) -> None:
    with pytest.raises(BadMessage):
        PageMessage.decode(json.dumps(doc))


def test_page_message_round_trip() -> None:
    m = PageMessage("5b0b8f3e-2d7f-4c55-9a57-3f3c1f0e9a11", "des_account_contact", 12)
    assert PageMessage.decode(m.encode()) == m
