"""The fast decode path (msgspec, shared.contract.parse.parse_body) against the pydantic reference
(parse_body_reference), body by body: the same notifications (values, types, the fields that were
set), the same unprocessable entries (kept body, reason, identity), the same metadata, the same count.

Bodies come from three generators: the contract's mutated notifications and envelopes
(tests/unit/test_contract.py), text-level damage to valid bodies (hostile splices: lone surrogate
escapes, invalid UTF-8, byte-order marks, floats for integers, huge numbers, broken syntax), and a
grammar of date-time spellings at and beyond the edges of what UTC holds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.contract.parse import ParsedBatch, parse_bodies, parse_bodies_reference
from tests.support.metadata_scenarios import attr, metadata
from tests.unit.test_contract import mutated, note

pytestmark = pytest.mark.unit


def outcome(parsed: ParsedBatch) -> tuple[Any, ...]:
    return (
        parsed.received,
        [
            (n.model_dump(), sorted(n.model_fields_set), type(n.changedOn.tzinfo).__name__, n.changedOn.utcoffset())
            for n in parsed.notifications
        ],
        [(u.body, u.reason, u.entity, u.record_id) for u in parsed.unprocessable],
        [m.model_dump() for m in parsed.metadata],
    )


def same(body: bytes | str) -> None:
    fast, reference = parse_bodies([body]), parse_bodies_reference([body])
    assert outcome(fast) == outcome(reference), body
    assert reference.referred == 1
    for n in fast.notifications:  # the fast path's models behave like validated ones
        assert n.model_dump_json() == reference.notifications[fast.notifications.index(n)].model_dump_json()
        for value in (n.attributes or {}).values():
            assert type(value) in (bool, int, float, str, type(None)) or type(value).__name__ == "Lookup"


SPLICES = [
    "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\u0000", "\ufeff", ".0", "e0", "E+2", "-", "0", "00", ",", ":", '"',
    "\\n", "\n", " ", "\t", "null", "true", "false", "1e400", "-1e400", "1e-400", "99999999999999999999",
    "9007199254740993.0", "{", "}", "[", "]", "[]", "{}", "\\", "\\x", "é", "😀", '"attributes":null,',
    '"payloadRef":null,', '"attributes":{},', '"entity":"other",', '"version":1,', '"version":1.0,',
]
BAD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xef\xbb\xbf", b"\x00", b"\x80"]


@st.composite
def damaged(draw: st.DrawFn) -> bytes | str:
    doc = draw(mutated() | st.lists(mutated(), max_size=3))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:at] + draw(st.sampled_from(SPLICES)) + text[at + cut :]
    if draw(st.booleans()):
        return text
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(BAD_BYTES)) + data[at:]
    return data


DATE = st.sampled_from(["2026-11-21", "0001-01-01", "9999-12-31", "2024-02-29", "2023-02-29", "1900-02-29",
                        "2000-02-29", "0000-01-01", "2026-13-01", "2026-1-01", "20261121", "+2026-11-21"])  # fmt: skip
TIME = st.sampled_from(["10:00:00", "00:00:00", "23:59:59", "00:59:59", "24:00:00", "23:59:60", "10:00",
                        "10:60:00", "1:00:00", "10:00:00.", "10:00:00,5"])  # fmt: skip
FRACTION = st.integers(0, 12).map(lambda k: "" if k == 0 else "." + "9876543210987"[:k])
OFFSET = st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+05:30", "+23:59", "-23:59", "+24:00",
                          "+0100", "+01", "", " Z", "+01:00:00", "-00:01", "+00:01"])  # fmt: skip
SEPARATOR = st.sampled_from(["T", "t", " ", "_", "TT"])
DATETIMES = st.builds(lambda d, s, t, f, o: d + s + t + f + o, DATE, SEPARATOR, TIME, FRACTION, OFFSET)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=mutated() | st.lists(mutated(), max_size=4))
def test_same_outcome_for_mutated_bodies_and_envelopes(body: Any) -> None:
    same(json.dumps(body))
    same(json.dumps(body).encode())


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=damaged())
def test_same_outcome_for_damaged_text(body: bytes | str) -> None:
    same(body)


@settings(max_examples=1000, deadline=None)
@given(when=DATETIMES, version=st.integers(-1, 2**64) | st.floats() | st.sampled_from([1.0, 5e0, 2**53 + 1.0]))
@example(when="9999-12-31T23:59:59-01:00", version=1)
@example(when="0001-01-01T00:00:00+01:00", version=1)
@example(when="9999-12-31T23:59:59.9999999Z", version=1)
@example(when="2026-11-21T10:00:00.1234567Z", version=1)
def test_same_outcome_for_date_times_and_versions(when: str, version: Any) -> None:
    body = note(changedOn=when, version=version)
    same(json.dumps(body))
    same(json.dumps([body, note()]).encode())


HOSTILE = [
    json.dumps(note(attributes={"name": "\ud800"})),
    json.dumps(note(attributes={"name": "\ud800"}), ensure_ascii=False),
    json.dumps(note(attributes={"name": "x"})).encode().replace(b'"x"', b'"\xff"'),
    b"\xef\xbb\xbf" + json.dumps(note()).encode(),
    "\ufeff" + json.dumps([note(), note()]),
    json.dumps(note(version=9007199254740993.0)),
    json.dumps(note(schemaVersion=1.0)),
    json.dumps(note(changedOn="9999-12-31T23:59:59-01:00")),
    json.dumps(note(recordId="3f2b7c9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f\n")),
    json.dumps(note(organizationId="00000000-0000-4000-8000-000000000001\n")),
    json.dumps(note(attributes={"p": {"id": "3f2b7c9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f\n", "logicalName": "contact"}})),
    json.dumps(note(attributes={"id": 1, "sinkcreatedon": 2})),
    json.dumps(note(attributes={"versionnumber": 3, "name": "x"})),
    json.dumps(note(changeType="delete", attributes=None)),
    json.dumps(note(changeType="delete")),
    json.dumps(note(attributes=None, payloadRef={"blob": "2026/x.json", "size": 10, "sha256": "0" * 64})),
    json.dumps(note(payloadRef=None)),
    '{"schemaVersion":1,"schemaVersion":1,' + json.dumps(note())[1:],
    json.dumps(note()).replace('"version": 7', '"version": 7, "version": 8'),
    json.dumps(note(attributes={"a": 10**30, "b": -(10**30), "c": 1e308, "d": -0.0})),
    json.dumps(note(attributes={"a": int("9" * 5000)})) if False else json.dumps(note()).replace("7", "9" * 5000, 1),
    json.dumps(metadata("account", 1, attr("name", "String", maxLength=100))),
    json.dumps([metadata("account", 1, attr("name", "String", maxLength=100)), note()]),
    "[" * 5000 + "]" * 5000,
    "",
    "[]",
    "null",
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_same_outcome_for_hostile_bodies(body: bytes | str) -> None:
    same(body)


def test_the_fast_path_takes_the_common_bodies() -> None:
    """Not a fallback in disguise: valid bodies never reach the reference parser; others do."""
    bodies = [json.dumps(note(recordId=f"00000000-0000-4000-8000-{i:012d}")) for i in range(50)]
    delete = note(changeType="delete")
    del delete["attributes"]
    lookup = {"p": {"id": "3f2b7c9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "logicalName": "contact"}}
    bodies.append(json.dumps([note(attributes=lookup), delete, note(attributes={"versionnumber": 1})]).encode())
    parsed = parse_bodies(bodies)
    assert (len(parsed.notifications), parsed.referred) == (53, 0)
    parsed = parse_bodies([json.dumps(note(version=5.0)), json.dumps(note(attributes={"id": 1}))])
    assert (len(parsed.unprocessable), parsed.referred) == (2, 1)  # reserved names: a semantic rule, no referral


GUID_CHARS = st.sampled_from(list("0123456789abcdefABCDEFgG- _+x\t\n\x00\x80\u0660\uff10\ud800"))


@settings(max_examples=3000, deadline=None)
@given(
    text=st.uuids().map(str)
    | st.lists(GUID_CHARS, min_size=30, max_size=40).map("".join)
    | st.builds(
        lambda u, at, ch: u[:at] + ch + u[at + 1 :],
        st.uuids().map(str),
        st.integers(0, 35),
        GUID_CHARS,
    )
)
def test_the_guid_check_without_a_regex_is_the_pattern(text: str) -> None:
    import re

    from shared.contract.models import GUID_PATTERN
    from shared.contract.parse import _is_guid

    assert _is_guid(text) == (re.fullmatch(GUID_PATTERN, text) is not None), text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(mutated() | st.lists(mutated(), max_size=3), min_size=1, max_size=6))
def test_a_batch_is_the_same_whichever_way_its_bodies_arrive(bodies: list[Any]) -> None:
    """``des replay``'s batches take a shortcut (parse_lines: one check of the joined lines for
    message lines, Dataverse messages and long numbers); the outcome is that of body by body."""
    from shared.source.dataverse.push import parse_lines

    lines = [json.dumps(b).encode() for b in bodies]
    assert outcome(parse_lines(lines)) == outcome(parse_bodies_reference(lines))
    long = json.dumps(note(attributes={"revenue": 1})).replace('"revenue": 1', '"revenue": 12345678901234567.25')
    mixed = [*lines, long.encode()]
    assert outcome(parse_lines(mixed)) == outcome(parse_bodies_reference(mixed))


def test_fast_models_are_frozen_and_share_nothing_a_copy_changes() -> None:
    """The fast path shares one fields-set object between its models: only safe while nobody can
    add to it. Notifications are frozen, and model_copy(update=...) works on a copy of the set."""
    from pydantic import ValidationError

    parsed = parse_bodies([json.dumps(note()), json.dumps(note(recordId="00000000-0000-4000-8000-000000000002"))])
    first, second = parsed.notifications
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    with pytest.raises(ValidationError):
        first.version = 99  # type: ignore[misc]
    shared_fields = set(first.model_fields_set)
    moved = first.model_copy(update={"version": 99, "payloadRef": None})
    assert "payloadRef" in moved.model_fields_set
    assert first.model_fields_set == second.model_fields_set == shared_fields
    assert json.loads(second.model_dump_json(exclude_unset=True)).keys() == json.loads(json.dumps(note())).keys()


LOOKUP_IDS = st.sampled_from(
    ["3f2b7c9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "3F2B7C9E-1A2B-4C3D-8E9F-0A1B2C3D4E5F",
     "0b4a4d4d-6e66-4240-bd15-c682e9ad8710", "3f2b7c9e-1a2b-4c3d-8e9f-0a1b2c3d4e5",
     "3f2b7c9e-1a2b-4c3d-8e9f-0a1b2c3d4e5g", ""]
)  # fmt: skip
LOOKUP_NAMES = st.sampled_from(["contact", "account", "Contact", "new_x", "con tact", "", "contact\u0000"])


@settings(max_examples=400, deadline=None)
@given(refs=st.lists(st.lists(st.tuples(LOOKUP_IDS, LOOKUP_NAMES), min_size=1, max_size=3), min_size=1, max_size=6))
def test_lookups_repeating_ids_are_the_reference_whatever_came_before(refs: list[list[tuple[str, str]]]) -> None:
    """Lookup models are kept by id and shared (parse._lookup_models): bodies that repeat ids, with
    the same or another logical name, in another case, or broken, give what the reference gives, in
    any order, with models kept from earlier bodies and examples."""
    for body_refs in refs:
        attributes = {f"l{i}": {"id": rid, "logicalName": name} for i, (rid, name) in enumerate(body_refs)}
        same(json.dumps(note(attributes=attributes)))


def test_lookup_models_are_shared_bounded_and_equal_to_new_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.contract import parse

    monkeypatch.setattr(parse, "_LOOKUP_MODELS_LIMIT", 3)
    monkeypatch.setattr(parse, "_lookup_models", {})
    ids = [f"3f2b7c9e-1a2b-4c3d-8e9f-0a1b2c3d4e{i:02x}" for i in range(5)]

    def lookups(*refs: tuple[str, str]) -> list[Any]:
        body = note(attributes={f"l{i}": {"id": r, "logicalName": n} for i, (r, n) in enumerate(refs)})
        parsed = parse_bodies([json.dumps(body)])
        assert parsed.referred == 0
        (n,) = parsed.notifications
        return list((n.attributes or {}).values())

    a, b = lookups((ids[0], "contact"), (ids[0], "contact"))
    assert a is b  # the second lookup of the id reuses the first's model
    (c,) = lookups((ids[0], "account"))  # another logical name: a model of its own, kept instead
    assert c is not a
    assert (c.id, c.logicalName) == (ids[0], "account")
    assert lookups((ids[0], "account"))[0] is c
    lookups(*((r, "contact") for r in ids[1:3]))
    assert len(parse._lookup_models) == 3
    lookups((ids[3], "contact"))  # the limit: the kept models are dropped, then this one kept
    assert list(parse._lookup_models) == [ids[3]]
    (d,) = lookups((ids[0], "account"))
    assert d is not c
    assert d == c
