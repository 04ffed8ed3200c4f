"""Dataverse push against the Dataverse simulator (over HTTP) into real SQLite and PostgreSQL.

The simulator posts its own changes as Dataverse would (reference C: RemoteExecutionContext JSON,
application properties, partial Update targets, truncation, duplicates, reordering); the real
:class:`SourceReread` re-reads through the change-tracking source's client; the engine applies.
"""

from __future__ import annotations

import random
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.destinations import Layout
from shared.source.dataverse.push import EntityRef, PushParsedBatch, parse_messages
from shared.source.dataverse.push_reread import (
    SourceReread,
    cursor_infos,
    exported_columns,
    keyed_held,
    keyed_link_ids,
)
from shared.tools.dataverse_sim import DataverseSimulator, PushOptions, run_simulator
from shared.tools.dataverse_sim.push import PushMessage
from shared.tools.dataverse_sim.values import Ref
from tests.support.dataverse_sync import PROFILE, SETTINGS, Rig, drive, rig

pytestmark = pytest.mark.integration

TOKEN = "t0ken"  # the token tests.support.dataverse_sync's client sends
ENTITIES = ("account", "contact", "opportunity", "des_account_contact")
REL = "des_account_contact"
PAGE = 4  # several pages per full load and per delta
PLAIN = {
    "account": ("name", "numberofemployees", "industrycode", "revenue", "des_channels", "statecode", "des_founded"),
    "contact": ("lastname", "firstname", "gendercode", "annualincome"),
    "opportunity": ("name", "estimatedvalue", "closeprobability"),
    REL: ("accountid", "contactid"),
}
LOOKUPS = {"account": ("parentaccountid", "primarycontactid"), "contact": ("parentcustomerid",),
           "opportunity": ("parentaccountid", "customerid"), REL: ()}


@dataclass
class Setup:
    sim: DataverseSimulator
    r: Rig
    reread: SourceReread


@contextmanager
def pushing(dsn: str, options: PushOptions, *, seed: int = 1, records: int = 6) -> Iterator[Setup]:
    sim = DataverseSimulator(seed=seed, records=records, push=options, tokens={TOKEN: None})
    with tempfile.TemporaryDirectory() as tmp, run_simulator(sim) as running:
        layout = Layout(prefix=f"p{uuid.uuid4().hex[:8]}")  # fresh tables per example on one database
        with rig(Path(tmp), dsn, httpx.HTTPTransport(), base_url=running.environment_url, layout=layout,
                 settings=replace(SETTINGS, page_size=PAGE)) as r:
            runner = r.runner(page_size=PAGE)
            for entity in ENTITIES:  # the initial sync: cursors, entity infos, metadata, every row
                drive(runner, entity)
            org = sim.state.organization.organization_id

            def high_water(entity: str) -> int:
                state = r.cursors.get(PROFILE, entity)
                return state.high_water if state is not None else 0

            reread = SourceReread(r.client, org, cursor_infos(r.cursors, PROFILE), high_water=high_water,
                                  held=keyed_held(r.dest), link_ids=keyed_link_ids(r.dest))  # fmt: skip
            yield Setup(sim, r, reread)


def apply(s: Setup, messages: Sequence[PushMessage], batch: int = 7) -> PushParsedBatch:
    total = PushParsedBatch()
    engine = s.r.sink.engine
    for i in range(0, len(messages), batch):
        parsed = parse_messages([(mm.body, mm.application_properties) for mm in messages[i : i + batch]], s.reread)
        assert not parsed.unprocessable, [u.reason for u in parsed.unprocessable]
        result = engine.apply_parsed(parsed)
        assert result.conserved
        assert result.failed == 0, [f.reason for f in result.failures]
        total.skipped.extend(parsed.skipped)
        total.received += parsed.received
    return total


def _norm(value: Any) -> Any:
    if isinstance(value, Ref):
        return value.id.lower()
    if isinstance(value, tuple):  # multi-select: as DES stored it
        return ",".join(str(v) for v in value) or None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, date):
        return value.isoformat() + "T00:00:00"
    if isinstance(value, Decimal | float) and not isinstance(value, bool):
        return Decimal(str(value)).normalize()
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in "T ":
        return value[:19].replace(" ", "T")  # a date-time column read back
    if isinstance(value, str | uuid.UUID):
        return str(value).lower()
    return value


def assert_converged(s: Setup) -> None:
    for entity in ENTITIES:
        truth = s.sim.truth(entity)
        rows = s.r.table(entity)
        assert set(rows) == set(truth), (entity, sorted(set(rows) - set(truth)), sorted(set(truth) - set(rows)))
        for rid, want in truth.items():
            got = rows[rid]
            assert got["versionnumber"] == 2 * want["versionnumber"], (entity, rid)
            for name in PLAIN[entity]:
                expected = _norm(want.get(name))
                if name == "des_founded" and got.get(name) is not None:  # DateOnly: Edm.Date (pull) or midnight
                    assert _norm(got[name])[:10] == (expected or "")[:10], (entity, rid, name)
                    continue
                assert _norm(got.get(name)) == expected, (entity, rid, name, got.get(name), want.get(name))
            for name in LOOKUPS[entity]:
                ref = want.get(name)
                assert _norm(got.get(name)) == (ref.id.lower() if ref else None), (entity, rid, name)
                assert got.get(f"{name}_entitytype") == (ref.entity if ref else None), (entity, rid, name)


# ------------------------------------------------------------------------------------ the port
def test_source_reread_against_the_simulator(dsn: str) -> None:
    with pushing(dsn, PushOptions()) as s:
        sim, rr = s.sim, s.reread
        account = sim.state.ids("account")[0]
        cursor = s.r.cursors.get(PROFILE, "account")
        assert cursor is not None
        assert cursor.info is not None
        assert rr.columns("account") == exported_columns(cursor.info)
        assert "parentaccountid" in (rr.columns("account") or ())
        assert rr.columns("systemuser") is None  # not one of the profile's entities
        row = rr.record("account", account)
        assert row is not None
        assert row["version"] == 2 * sim.truth("account")[account]["versionnumber"]
        assert rr.record("account", str(uuid.uuid4())) is None
        # N:N: the intersect row of a pair, found from the relationship's definition
        contact = sim.state.ids("contact")[0]
        if sim.state.link_id(sim.state.relationship(REL), account, contact) is None:
            sim.state.associate(REL, account, contact)
        link = rr.link(REL, EntityRef(account, "account"), EntityRef(contact, "contact"))
        assert link is not None
        assert link["entity"] == REL
        assert link["attributes"]["accountid"] == account
        swapped = rr.link(REL, EntityRef(contact, "contact"), EntityRef(account, "account"))  # Target either side
        assert swapped is not None
        assert (swapped["recordId"], swapped["version"]) == (link["recordId"], link["version"])
        # a verified delete is newer than every version of the record (the destination holds the last)
        last = sim.truth("account")[account]["versionnumber"]
        sim.state.delete("account", account)
        n = rr.deleted("account", account)
        assert n["changeType"] == "delete"
        assert n["version"] > 2 * last
        sim.state.create("account", {"name": "again"}, account)
        again = rr.deleted("account", account)
        assert again["changeType"] == "update"
        assert again["version"] > n["version"]


def test_captured_history_through_push_into_the_database(dsn: str) -> None:
    """Create, partial Update (no post-image), truncated Update, Delete, Associate, Disassociate."""
    options = PushOptions(post_image="none", delete_pre_image=True)
    with pushing(dsn, options) as s:
        sim = s.sim
        state = sim.state
        a = state.create("account", {"name": "pushed", "revenue": Decimal("12.3400"),
                                     "des_channels": [100000000, 100000003], "industrycode": 2})
        state.update("account", a, {"name": "renamed"})
        options.truncate_rate = 1.0
        state.update("account", a, {"numberofemployees": 42})
        options.truncate_rate = 0.0
        c = state.ids("contact")[0]
        state.associate(REL, a, c)
        state.disassociate(REL, a, c)
        state.associate(REL, a, c)
        gone = state.ids("account")[1]
        state.delete("account", gone)
        messages = sim.push.drain()
        assert {mm.message_name for mm in messages} >= {"Create", "Update", "Delete", "Associate", "Disassociate"}
        assert any(mm.truncated for mm in messages)
        parsed = apply(s, messages)
        assert_converged(s)
        row = s.r.table("account")[a]
        assert row["name"] == "renamed"
        assert row["numberofemployees"] == 42
        assert row["des_channels"] == "100000000,100000003"
        assert gone not in s.r.table("account")
        # applying the whole history again changes nothing (duplicates are stale)
        again = parse_messages([(mm.body, mm.application_properties) for mm in messages], s.reread)
        result = s.r.sink.engine.apply_parsed(again)
        assert result.applied == 0, result.counts()
        assert_converged(s)
        assert parsed.received >= len(messages) - len(parsed.skipped)


# ------------------------------------------------------------------------------------ convergence
@settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    changes=st.integers(5, 30),
    post_image=st.sampled_from(["all", "primary_name", "none"]),
    partial=st.booleans(),
    pre_image=st.booleans(),
    duplicate_rate=st.sampled_from([0.0, 0.3]),
    truncate_rate=st.sampled_from([0.0, 0.3]),
    shuffle=st.randoms(use_true_random=False),
    batch=st.integers(1, 12),
    pull_at=st.floats(0.0, 1.0),
)
def test_push_history_and_one_change_tracking_pass_converge(
    dsn: str, seed: int, changes: int, post_image: Any, partial: bool, pre_image: bool, duplicate_rate: float,
    truncate_rate: float, shuffle: random.Random, batch: int, pull_at: float,
) -> None:
    """The history as push messages (duplicated, truncated, partial, reordered where deletes carry
    their version), with one change-tracking pass at a random point of the delivery."""
    options = PushOptions(post_image=post_image, partial_updates=partial, delete_pre_image=pre_image,
                          duplicate_rate=duplicate_rate, truncate_rate=truncate_rate, seed=seed)  # fmt: skip
    with pushing(dsn, options, seed=seed) as s:
        s.sim.random_changes(changes, seed=seed)
        messages = s.sim.push.drain()
        if pre_image:  # deletes carry their version: any delivery order converges
            shuffle.shuffle(messages)
        split = round(pull_at * len(messages))
        apply(s, messages[:split], batch)
        runner = s.r.runner(page_size=PAGE)
        for entity in ENTITIES:
            drive(runner, entity)  # the change-tracking pass, while push messages are still in flight
        apply(s, messages[split:], batch)
        assert_converged(s)


def test_pull_deletes_a_pushed_row_whose_delete_message_was_lost(dsn: str) -> None:
    """Push as the fast path, pull as the safety net: a Create arrives by push, its Delete message is
    lost; the next change-tracking pass must delete the row (its delete is versioned above what the
    destination holds), and a re-creation with the same id afterwards must still come back."""
    with pushing(dsn, PushOptions(post_image="all")) as s:
        account = s.sim.state.create("account", {"name": "pushed, then deleted"})
        apply(s, s.sim.push.drain())
        assert account in s.r.table("account")
        s.sim.state.delete("account", account)
        s.sim.push.drain()  # the Delete message is lost
        runner = s.r.runner(page_size=PAGE)
        for entity in ENTITIES:
            drive(runner, entity)
        assert_converged(s)
        assert account not in s.r.table("account")
        s.sim.state.create("account", {"name": "re-created"}, record_id=account)
        s.sim.push.drain()  # lost too: the pull brings it back
        for entity in ENTITIES:
            drive(runner, entity)
        assert_converged(s)
        assert s.r.table("account")[account]["name"] == "re-created"
