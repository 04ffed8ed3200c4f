"""The CRM simulator, its transport model and the bench stream: deterministic, truthful, contract-valid."""

from __future__ import annotations

import inspect
import itertools
import json
import re
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.contract.parse import parse_bodies
from shared.contract.schema import load_schema
from shared.destinations import Layout, open_destination
from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from shared.replay import replay
from shared.tools.crm_simulator import (
    ENTITIES,
    CrmSimulator,
    DeliveryStats,
    Wire,
    bench_attribute_names,
    bench_lines,
    deliver,
    destination_columns,
    write_bench_file,
)

pytestmark = pytest.mark.unit

VALIDATOR = Draft202012Validator(load_schema())


def small(seed: int = 3, n: int = 60) -> CrmSimulator:
    return CrmSimulator(seed, accounts=n, contacts=n, opportunities=n)


def run(sim: CrmSimulator, changes: int = 600) -> list[Wire]:
    """The ordered source stream, copied (JSON round trip) so later changes cannot alias it."""
    stream = [*sim.initial_sync(), *sim.changes(changes)]
    return [json.loads(json.dumps(n)) for n in stream]


def notifications_of(bodies: list[str]) -> list[Wire]:
    out: list[Wire] = []
    for body in bodies:
        doc = json.loads(body)
        out.extend(doc if isinstance(doc, list) else [doc])
    return out


def canonical(n: Wire) -> str:
    return json.dumps({**n, "recordId": n["recordId"].lower()}, sort_keys=True, ensure_ascii=False)


# ------------------------------------------------------------------------------------ simulator
def test_same_seed_same_bodies_and_truth_other_seed_differs() -> None:
    a, b, c = small(5), small(5), small(6)
    bodies_a = list(a.deliver(run(a), 0.1, 10, 5))
    bodies_b = list(b.deliver(run(b), 0.1, 10, 5))
    bodies_c = list(c.deliver(run(c), 0.1, 10, 5))
    assert bodies_a == bodies_b
    assert a.truth() == b.truth()
    assert bodies_a != bodies_c
    assert a.organization_id != c.organization_id


def test_every_notification_fulfils_the_contract() -> None:
    sim = small()
    stream = run(sim)
    bodies = list(sim.deliver(stream, 0.05, 20, 10))
    parsed = parse_bodies(bodies)
    assert parsed.unprocessable == []
    assert len(parsed.notifications) == parsed.received >= len(stream)
    for body in bodies[::7]:
        VALIDATOR.validate(json.loads(body))
    for n in stream:
        assert ("attributes" in n) == (n["changeType"] != "delete")


def test_versions_are_one_org_wide_counter_and_time_moves_with_them() -> None:
    stream = run(small())
    versions = [n["version"] for n in stream]
    assert all(b > a for a, b in itertools.pairwise(versions))
    times = [n["changedOn"] for n in stream]
    assert all(t.endswith("Z") for t in times)
    assert times == sorted(times)
    assert {n["organizationId"] for n in stream} == {stream[0]["organizationId"]}


def test_truth_is_the_last_change_of_every_record() -> None:
    sim = small(n=40)
    stream = run(sim, changes=1500)
    last: dict[tuple[str, str], Wire] = {}
    history: dict[tuple[str, str], list[str]] = {}
    for n in stream:
        key = (n["entity"], n["recordId"].lower())
        last[key] = n
        history.setdefault(key, []).append(n["changeType"])
    truth = sim.truth()
    assert set(truth.records) == set(ENTITIES)
    live = {k for k, n in last.items() if n["changeType"] != "delete"}
    assert {(e, rid) for e in truth for rid in truth[e]} == live
    assert truth.deleted == {k for k, n in last.items() if n["changeType"] == "delete"}
    for (entity, rid), n in last.items():
        if n["changeType"] == "delete":
            continue
        version, attributes = truth[entity][rid]
        assert version == n["version"]
        assert attributes == destination_columns(n["attributes"], CrmSimulator.LOOKUPS[entity])
    # Re-creations happened: a create after a delete of the same id, and the record is live again.
    recreated = [k for k, h in history.items() if "delete" in h and "create" in h[h.index("delete") :]]
    assert recreated
    assert any(k in live for k in recreated)
    assert truth.deleted
    assert not (truth.deleted & live)


def test_lookups_become_two_lower_case_columns() -> None:
    cols = destination_columns(
        {"customerid": {"id": "ABCDEF01-2345-4678-9ABC-DEF012345678", "logicalName": "contact"}, "name": "x"},
        ("customerid", "parentaccountid"),
    )
    assert cols == {
        "customerid": "abcdef01-2345-4678-9abc-def012345678",
        "customerid_entitytype": "contact",
        "parentaccountid": None,
        "parentaccountid_entitytype": None,
        "name": "x",
    }


def test_updates_carry_the_full_state_and_favour_hot_records() -> None:
    sim = small(n=200)
    stream = run(sim, changes=3000)
    created: dict[tuple[str, str], set[str]] = {}
    updates = []
    for n in stream:
        key = (n["entity"], n["recordId"].lower())
        if n["changeType"] == "create":
            created[key] = set(n["attributes"])
        elif n["changeType"] == "update":
            # Full state: every attribute of its (latest) create is still there; new ones may appear.
            assert created[key] <= set(n["attributes"])
            updates.append(n)
    assert len(updates) > 1500
    per_record = Counter((n["entity"], n["recordId"].lower()) for n in updates)
    counts = sorted(per_record.values(), reverse=True)
    top_tenth = sum(counts[: max(1, len(counts) // 10)])
    assert top_tenth > 0.3 * len(updates)  # a uniform choice would give about 10%


def test_the_sample_looks_like_a_crm() -> None:
    sim = small(n=300)
    stream = run(sim, changes=2000)
    by_entity: dict[str, list[dict[str, Any]]] = {e: [] for e in ENTITIES}
    for n in stream:
        if n["changeType"] != "delete":
            by_entity[n["entity"]].append(n["attributes"])
    accounts, contacts, opportunities = (by_entity[e] for e in ENTITIES)
    names = {a["name"] for a in accounts}
    assert any(not name.isascii() for name in names)
    assert any(any(ord(ch) > 0xFFFF for ch in name) for name in names)  # emoji
    revenues = [a["revenue"] for a in accounts]
    assert None in revenues
    assert any(type(r) is int for r in revenues)
    assert any(type(r) is float for r in revenues)
    assert all(r is None or round(r, 2) == r for r in revenues)
    assert {type(a["donotemail"]) for a in accounts} == {bool}
    assert {a["primarycontactid"]["logicalName"] for a in accounts if a["primarycontactid"]} == {"contact"}
    assert any(a.get("new_customertier") is not None for a in accounts)  # added by a customization
    assert any(len(a["description"] or "") > 1000 for a in accounts)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z", a["createdon"]) for a in accounts)
    birthdates = [c["birthdate"] for c in contacts]
    assert None in birthdates
    assert all(b is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", b) for b in birthdates)
    assert {c["parentcustomerid"]["logicalName"] for c in contacts if c["parentcustomerid"]} == {"account"}
    customers = {o["customerid"]["logicalName"] for o in opportunities if o["customerid"]}
    assert customers == {"account", "contact"}  # polymorphic lookup
    assert {type(o["closeprobability"]) for o in opportunities} == {int}
    assert {type(o["exchangerate"]) for o in opportunities} == {float}


# ------------------------------------------------------------------------------------ transport
def test_deliver_keeps_every_notification_at_least_once() -> None:
    sim = small()
    stream = run(sim)
    stats = DeliveryStats()
    bodies = list(sim.deliver(stream, duplicate_rate=0.2, reorder_window=25, envelope_max=8, stats=stats))
    out = notifications_of(bodies)
    sent, got = Counter(map(canonical, stream)), Counter(map(canonical, out))
    assert not sent - got  # nothing lost
    assert got.total() - sent.total() == stats.duplicates > 0.1 * len(stream)
    assert stats.notifications_in == len(stream)
    assert stats.notifications_out == len(out)
    assert stats.bodies == len(bodies)
    assert stats.envelopes == sum(b.startswith("[") for b in bodies) > 0
    assert max(len(json.loads(b)) for b in bodies if b.startswith("[")) <= 8
    assert [canonical(n) for n in out] != [canonical(n) for n in stream]  # reordered
    # Reordering is local: without the extra copies, nothing is more than the window from its place.
    firsts: dict[str, int] = {}
    for n in out:
        firsts.setdefault(canonical(n), len(firsts))
    displacement = [abs(firsts[canonical(n)] - i) for i, n in enumerate(stream)]
    assert 0 < max(displacement) <= 25


def test_deliver_without_faults_is_the_stream_itself() -> None:
    stream = run(small())
    bodies = list(deliver(stream, duplicate_rate=0.0, reorder_window=1, envelope_max=1, seed=4))
    assert [canonical(n) for n in notifications_of(bodies)] == [canonical(n) for n in stream]


def test_deliver_streams() -> None:
    sim = small()
    assert inspect.isgenerator(deliver(sim.initial_sync(), 0.05, 10, 5, seed=1))
    assert isinstance(next(deliver(sim.initial_sync(), 0.05, 10, 5, seed=1)), str)


# ---------------------------------------------------------------------------------- bench stream
@pytest.mark.parametrize(("total", "attributes"), [(1, 20), (7, 3), (5000, 20), (3000, 1)])
def test_bench_lines_yields_exactly_n_valid_notifications(total: int, attributes: int) -> None:
    assert inspect.isgenerator(bench_lines(total, attributes, seed=2))
    bodies = list(bench_lines(total, attributes, seed=2))
    notes = notifications_of(bodies)
    assert len(notes) == total
    parsed = parse_bodies(bodies)
    assert parsed.unprocessable == []
    assert parsed.received == total
    for body in bodies[:: max(1, len(bodies) // 200)]:
        VALIDATOR.validate(json.loads(body))
    for n in notes:
        if n["changeType"] != "delete":
            assert len(n["attributes"]) == attributes


def test_bench_stream_has_the_promised_shape() -> None:
    total = 20_000
    bodies = list(bench_lines(total, 20, seed=9))
    notes = notifications_of(bodies)
    kinds = Counter(n["changeType"] for n in notes)
    assert kinds["create"] >= total // 5
    assert 0.01 * total < kinds["delete"] < 0.06 * total
    dupes = Counter((n["recordId"], n["version"]) for n in notes)
    duplicates = sum(c - 1 for c in dupes.values())
    assert 0.03 * total < duplicates < 0.07 * total
    envelopes = sum(b.startswith("[") for b in bodies)
    assert 0 < envelopes < 0.15 * len(bodies)
    versions = [n["version"] for n in notes]
    assert versions != sorted(versions)  # locally reordered
    updates = Counter(n["recordId"] for n in notes if n["changeType"] == "update")
    top = sum(c for _, c in updates.most_common(max(1, len(updates) // 10)))
    assert top > 0.3 * sum(updates.values())  # skewed to hot records
    schema = dict(bench_attribute_names(20))
    assert Counter(schema.values()) == {"text": 6, "int": 5, "float": 4, "bool": 4, "lookup": 1}
    seen: dict[str, set[str]] = {name: set() for name in schema}
    for n in notes:
        for name, value in (n.get("attributes") or {}).items():
            seen[name].add(type(value).__name__)
    py = {"text": "str", "int": "int", "float": "float", "bool": "bool", "lookup": "dict"}
    for name, kind in schema.items():
        # One type per attribute (no misfits: the bench measures the happy path), nulls besides.
        assert seen[name] - {"NoneType"} == {py[kind]}
        assert ("NoneType" in seen[name]) == (name != "name")
    assert bodies == list(bench_lines(total, 20, seed=9))


def test_bench_lines_holds_bounded_memory() -> None:
    tracemalloc.start()
    try:
        size = sum(len(body) for body in bench_lines(30_000, 20, seed=1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 15_000_000  # the bodies themselves: 15+ MB of text, ~70 MB as Python strings
    # What it holds: 6k record ids, 2048 templates, the reorder window and pending duplicates.
    assert peak < 8 * 1024 * 1024


def test_bench_file_replays_cleanly_into_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    lines = write_bench_file(path, notifications=12_000, attributes=20, seed=5)
    assert lines == sum(1 for _ in path.open(encoding="utf-8"))
    dest = open_destination(f"sqlite:///{tmp_path / 'bench.db'}", Layout())
    try:
        report = replay(path, SyncEngine(dest), batch_size=1000)
        rows = sum(1 for _ in table_rows(dest, "account"))
    finally:
        dest.close()
    result = report.result
    assert result.received == 12_000
    assert result.conserved
    assert result.failed == 0
    assert result.unprocessable == 0
    assert result.stale > 0
    assert 0 < rows <= 12_000 // 5
