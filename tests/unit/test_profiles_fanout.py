"""Fan-out rules on real SQLite destinations and a real SQLite store: routing by organization and
entity (N:N relationships included), drafts never routed, unprocessable and unrouted notifications
counted, a changed profile gets a fresh engine, one profile's broken secret stops only that
profile, and the profile cache's time to live."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import ProfilesConfig
from shared.profiles.model import ProfileCreate, ProfileUpdate
from shared.root import ProfileRuntime, build_runtime
from shared.store.base import UNROUTED
from tests.support.admin import KeyVaultDouble, secret_uri, vault_resolver

pytestmark = pytest.mark.unit

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def note(entity: str, i: int, version: int = 1, org: str = ORG) -> str:
    return json.dumps(
        {
            "schemaVersion": 1,
            "organizationId": org,
            "entity": entity,
            "recordId": f"00000000-0000-0000-0000-{i:012d}",
            "changeType": "create",
            "version": version,
            "changedOn": "2026-11-21T10:00:00Z",
            "attributes": {"name": f"{entity}{i}v{version}"},
        }
    )


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[tuple[ProfileRuntime, KeyVaultDouble, Clock]]:
    vault = KeyVaultDouble({"a": f"sqlite:///{tmp_path / 'a.db'}", "b": f"sqlite:///{tmp_path / 'b.db'}"})
    runtime = build_runtime(
        ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", profile_cache_seconds=10),
        resolver=vault_resolver(vault),
    )
    clock = Clock()
    runtime.directory.clock = clock
    yield runtime, vault, clock
    runtime.close()


def make(rt: ProfileRuntime, name: str, secret: str, state: str = "active", **kw: Any) -> str:
    body = ProfileCreate.model_validate(
        {"name": name, "organizationId": ORG, "destination": secret_uri(secret), "state": state, **kw}
    )
    return rt.service.create(body, check=False).id


def tables(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'") if "_des_" not in r[0]]
        return {n: conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}


def test_routing_rules(rt: tuple[ProfileRuntime, KeyVaultDouble, Clock], tmp_path: Path) -> None:
    runtime, _, _ = rt
    a = make(runtime, "a", "a", entities=["account"], relationships=["accountleads"])
    make(runtime, "draft", "b", state="draft", entities=["contact"])
    out = runtime.fanout.apply_bodies(
        [
            note("account", 1),
            note("accountleads", 2),
            note("contact", 3),
            note("account", 4, org=str(uuid.uuid4())),
            "{bad",
        ]
    )
    assert set(out.outcomes) == {a}
    applied = out.outcomes[a].result
    assert applied is not None
    assert applied.applied == 2
    assert out.unrouted == {"contact": 1, "account": 1}
    assert len(out.unprocessable) == 1
    assert tables(tmp_path / "a.db") == {"account": 1, "accountleads": 1}
    runtime.store.record_batch(out.metrics_entries())
    bucket = {e.entity: (e.skipped, e.unprocessable) for e in runtime.store.metrics(UNROUTED).entities}
    assert bucket == {"?": (0, 1), "account": (1, 0), "contact": (1, 0)}
    assert out.summary()["profiles"][a]["applied"] == 2


def test_a_changed_profile_gets_a_fresh_engine(
    rt: tuple[ProfileRuntime, KeyVaultDouble, Clock], tmp_path: Path
) -> None:
    runtime, _, _ = rt
    a = make(runtime, "a", "a", entities=["account"])
    runtime.fanout.apply_bodies([note("account", 1)])
    runtime.service.update(
        a, ProfileUpdate.model_validate({"name": "a", "organizationId": ORG, "entities": ["account"], "prefix": "v2"})
    )
    runtime.fanout.apply_bodies([note("account", 2)])
    assert tables(tmp_path / "a.db") == {"account": 1, "v2_account": 1}


def test_one_broken_profile_does_not_stop_the_others(
    rt: tuple[ProfileRuntime, KeyVaultDouble, Clock], tmp_path: Path
) -> None:
    runtime, _, _ = rt
    good = make(runtime, "good", "a", entities=["account"])
    broken = make(runtime, "broken", "missing-secret", entities=["account"])
    out = runtime.fanout.apply_bodies([note("account", 1), note("account", 2)])
    assert out.outcomes[good].result is not None
    assert out.outcomes[broken].error is not None
    assert out.outcomes[broken].pending == 2
    assert "does not exist" in str(out.outcomes[broken].error)
    runtime.store.record_batch(out.metrics_entries())
    assert runtime.store.metrics(broken).pending_retry == 2


def test_profile_cache_time_to_live(rt: tuple[ProfileRuntime, KeyVaultDouble, Clock]) -> None:
    runtime, _, clock = rt
    runtime.fanout.apply_bodies([note("account", 1)])
    loads = runtime.directory.loads
    # A profile created elsewhere (another instance) straight in the store: seen after the TTL.
    from shared.profiles.model import definition_of
    from shared.store import StoredProfile

    body = ProfileCreate.model_validate(
        {"name": "x", "organizationId": ORG, "destination": secret_uri("a"), "entities": ["account"]}
    )
    runtime.store.create_profile(StoredProfile(str(uuid.uuid4()), "x", ORG, "active", definition_of(body)))
    assert runtime.fanout.apply_bodies([note("account", 2)]).unrouted == {"account": 1}
    clock.now += 11
    assert runtime.fanout.apply_bodies([note("account", 3)]).unrouted == {}
    assert runtime.directory.loads == loads + 1
