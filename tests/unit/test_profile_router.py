"""The profile router (shared/routing.py) with the retry code, on in-memory fakes of the admin store
and the blob stores (tests/support/fakes.py), real SQLite destinations and the real Key Vault
client against its HTTP double: a fan-out parks only the failing profile; a parked batch goes to
its profile as it is now (active, deactivated, deleted, store unreachable)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from shared.contract.parse import parse_bodies
from shared.profiles.fanout import UNROUTED_FOLDER, FanOutResult
from shared.profiles.model import ProfileCreate
from shared.retry.attempt import Status, process_retry_blob
from shared.retry.policy import RetryPolicy
from shared.retry.ports import RetryDeps
from shared.root import ProfileRuntime, build_runtime
from shared.routing import ProfileRouter
from shared.storage.claimcheck import Resolution
from shared.store.base import UNROUTED
from tests.support.admin import KeyVaultDouble, secret_uri, vault_resolver
from tests.support.fakes import (
    FakeAdminStore,
    FakeClock,
    FakePayloads,
    FakeRejects,
    FakeRetryBlobs,
    FakeUnprocessableKeeper,
)
from tests.support.metrics import ORG, note, rid


@dataclass
class World:
    rt: ProfileRuntime
    store: FakeAdminStore
    vault: KeyVaultDouble
    router: ProfileRouter
    deps: RetryDeps
    blobs: FakeRetryBlobs
    clock: FakeClock
    rejects: dict[str, FakeRejects]

    def profile(self, name: str, secret: str, **kw: object) -> str:
        body = ProfileCreate.model_validate(
            {"name": name, "organizationId": ORG, "destination": secret_uri(secret), "state": "active",
             "entities": ["account"], "retryCount": 2, "retryIntervalSeconds": 30, **kw}
        )  # fmt: skip
        return self.rt.service.create(body, check=False).id

    def send(self, *notes: dict[str, object]) -> FanOutResult:
        out = self.router.apply_batch(parse_bodies([json.dumps(n) for n in notes]), Resolution(), self.deps)
        assert isinstance(out, FanOutResult)
        return out

    def counts(self, pid: str) -> dict[str, int]:
        m = self.store.metrics(pid)
        return {
            "received": sum(e.total for e in m.entities), "applied": sum(e.success for e in m.entities),
            "failed": sum(e.failure for e in m.entities), "skipped": sum(e.skipped for e in m.entities),
            "unprocessable": sum(e.unprocessable for e in m.entities), "pending": m.pending_retry,
        }  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    vault = KeyVaultDouble({"up": f"sqlite:///{tmp_path / 'up.db'}", "down": f"sqlite:///{tmp_path / 'down.db'}"})
    store = FakeAdminStore()
    rt = build_runtime(store=store, resolver=vault_resolver(vault, ttl=0))
    rejects: dict[str, FakeRejects] = {}

    def rejects_for(pid: str) -> FakeRejects:
        return rejects.setdefault(pid, FakeRejects())

    clock = FakeClock()
    router = ProfileRouter(rt, rejects_for, RetryPolicy(count=5, interval_seconds=1, inline_wait_seconds=0))
    blobs = FakeRetryBlobs(clock)
    deps = RetryDeps(blobs, FakePayloads(), FakeUnprocessableKeeper(), router, clock)
    yield World(rt, store, vault, router, deps, blobs, clock, rejects)
    rt.close()



def test_a_fan_out_parks_only_the_failing_profile(world: World) -> None:
    w = world
    up, down = w.profile("up", "up"), w.profile("down", "down")
    w.send(note(1, 1, "create", name="a"))  # both engines open
    w.vault.status = 503
    w.rt.engines.discard(down)  # the next batch resolves its secret again: the vault is down
    out = w.send(note(2, 1, "create", name="b"), note(3, 1, "create", name="c"))
    assert out.errors.keys() == {down}
    [state] = list(w.blobs.states())
    assert (state.profile_id, state.count) == (down, 2)
    assert (w.counts(up)["applied"], w.counts(down)["applied"], w.counts(down)["pending"]) == (3, 1, 2)
    w.vault.status = None
    w.clock.advance(30)  # the profile's own interval
    outcome = process_retry_blob(state.name, w.deps)
    assert outcome.status is Status.RESOLVED
    assert (w.counts(down)["applied"], w.counts(down)["pending"]) == (3, 0)


def test_a_parked_batch_of_a_deactivated_profile_is_skipped(world: World) -> None:
    w = world
    pid = w.profile("down", "down")
    name, _ = w.blobs.park(pid, [note(1, 1, "create", name="a")], reason="down", now=w.clock(), not_before=w.clock())
    w.rt.service.deactivate(pid)
    assert process_retry_blob(name, w.deps).status is Status.SKIPPED
    assert w.counts(pid)["skipped"] == 1
    assert list(w.blobs.states()) == []


def test_a_parked_batch_of_a_deleted_profile_is_kept_as_unprocessable(world: World) -> None:
    w = world
    pid = w.profile("gone", "down")
    name, _ = w.blobs.park(pid, [note(1, 1, "create", name="a")], reason="down", now=w.clock(), not_before=w.clock())
    w.rt.service.delete(pid)
    assert process_retry_blob(name, w.deps).status is Status.ORPHANED
    [kept] = w.rejects[UNROUTED_FOLDER].kept
    assert kept.record_id == rid(1)
    assert f"profile {pid} was deleted" in kept.reason
    assert w.counts(UNROUTED)["unprocessable"] == 1


def test_an_unreachable_store_reschedules_with_the_settings_policy(world: World) -> None:
    w = world
    pid = w.profile("up", "up")
    name, _ = w.blobs.park(pid, [note(1, 1, "create", name="a")], reason="down", now=w.clock(), not_before=w.clock())
    w.store.down = True
    outcome = process_retry_blob(name, w.deps)
    assert (outcome.status, outcome.attempt) == (Status.RESCHEDULED, 1)
    # The settings' policy (the profile cannot be read), with the environmental backoff: an
    # unreachable store is never the records' fault, so the retry count does not apply (issue 10).
    assert outcome.not_before == w.clock() + timedelta(seconds=2)  # interval 1 s, doubled for attempt 1
    w.store.down = False
    w.clock.advance(2)
    assert process_retry_blob(name, w.deps).status is Status.RESOLVED
    assert w.router.policy_for(pid) == RetryPolicy(2, 30.0, 0)  # readable again: the profile's own
