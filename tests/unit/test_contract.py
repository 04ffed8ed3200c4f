"""The wire contract v1: the shipped JSON Schema and the pydantic parser say the same thing.

* The schema file is exactly what the models generate (``python -m shared schema``).
* A JSON Schema validator (with date-time format checking) and ``shared.contract.parse`` agree on
  valid and invalid bodies: hypothesis mutates valid notifications and envelopes in every field.
* Rules beyond single fields: delete without attributes, create/update with them, reserved names;
  each violation is unprocessable with a reason naming the problem, and valid siblings in an
  envelope are kept.

Two known differences are excluded from the agreement property and pinned by their own tests:
Python's ``re`` (used by the ``jsonschema`` library) lets ``$`` match before a final newline, so that
validator accepts ``"account\\n"``; the parser (like JavaScript and Rust validators) does not. And
JSON Schema's ``integer`` takes ``5.0``; the contract takes JSON integers only (issue 12: a float
``version`` such as ``9007199254740993.0`` would be rounded silently).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from shared.contract.parse import ParsedBatch, parse_bodies
from shared.contract.schema import SCHEMA_PATH, load_schema, message_schema, schema_json
from tests.support.contract_bodies import ABSENT, GUID, ORG, note

pytestmark = pytest.mark.unit

VALIDATOR = Draft202012Validator(load_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)

Json = Any


def strict_json(text: str) -> Json:
    """Standard JSON only: NaN, Infinity and numbers that overflow a double are not JSON values."""

    def no_constant(name: str) -> float:
        raise ValueError(f"{name} is not JSON")

    def finite(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            raise ValueError("number out of range")
        return value

    return json.loads(text, parse_constant=no_constant, parse_float=finite)


def schema_accepts(body: str) -> bool:
    try:
        doc = strict_json(body)
    except (ValueError, RecursionError):
        return False
    return bool(VALIDATOR.is_valid(doc))


def parse(body: str) -> ParsedBatch:
    return parse_bodies([body])


def parser_accepts(body: str) -> bool:
    parsed = parse(body)
    assert parsed.received == len(parsed.notifications) + len(parsed.unprocessable)
    return not parsed.unprocessable


# ------------------------------------------------------------------------------------ the file
def test_schema_file_is_generated_from_the_models() -> None:
    shipped = SCHEMA_PATH.read_text(encoding="utf-8")
    assert json.loads(shipped) == json.loads(schema_json()), (
        "notification.v1.schema.json is out of date: "
        "python -m shared schema > shared/contract/notification.v1.schema.json"
    )
    assert shipped.strip() == schema_json().strip()
    assert load_schema() == message_schema()
    Draft202012Validator.check_schema(load_schema())


def test_validator_checks_date_time_formats() -> None:
    """Without a date-time checker the agreement tests would compare against a weaker schema."""
    assert "date-time" in Draft202012Validator.FORMAT_CHECKER.checkers


# ------------------------------------------------------------------------------ fixed examples
VALID = [
    note(),
    note(changeType="create", attributes={}),
    note(changeType="delete", attributes=ABSENT),
    note(recordId=GUID.upper(), organizationId=ORG.upper()),
    note(version=0),
    note(version=2**63 - 1),
    note(changedOn="2026-11-21T10:00:00.123456+02:00"),
    note(changedOn="2026-11-21t10:00:00z"),
    note(attributes={"a": None, "b": True, "c": -(2**70), "d": -0.0, "e": 1e308, "f": "", "g": "😀" * 300}),
    note(attributes={"parentid": {"id": GUID, "logicalName": "contact"}}),
    note(attributes={"versionnumber": 5}),  # ignored: the top-level version is authoritative
    note(entity="a" * 128, attributes={"b" * 128: 1}),
]
INVALID = [
    note(schemaVersion=2),
    note(schemaVersion="1"),
    note(schemaVersion=True),
    note(schemaVersion=ABSENT),
    note(unknown=1),
    note(schemaVersion=2, payloadRef="blob://x"),
    note(entity="Account"),
    note(entity='account"; DROP TABLE account; --'),
    note(entity="a" * 129),
    note(entity=""),
    note(entity="_account"),
    note(recordId="not-a-guid"),
    note(recordId=GUID + "0"),
    note(recordId="{" + GUID + "}"),
    note(organizationId=ABSENT),
    note(changeType="upsert"),
    note(changeType="Delete"),
    note(version=-1),
    note(version=2**63),
    note(version="7"),
    note(version=True),
    note(version=7.5),
    note(version=None),
    note(changedOn="2026-11-21T10:00:00"),
    note(changedOn="2026-11-21"),
    note(changedOn="2026-13-01T00:00:00Z"),
    note(changedOn=1_700_000_000),
    note(changedOn="yesterday"),
    note(attributes={"Name": "x"}),
    note(attributes={"name); DROP TABLE account; --": "x"}),
    note(attributes={"a b": 1}),
    note(attributes={"": 1}),
    note(attributes={"c" * 129: 1}),
    note(attributes={"a": [1, 2]}),
    note(attributes={"a": {"b": 1}}),
    note(attributes={"a": {"id": GUID}}),
    note(attributes={"a": {"id": GUID, "logicalName": "contact", "name": "x"}}),
    note(attributes={"a": {"id": "x", "logicalName": "contact"}}),
    note(attributes={"id": GUID}),
    note(attributes={"sinkcreatedon": "x"}),
    note(attributes={"sinkmodifiedon": "x"}),
    note(attributes=ABSENT),
    note(attributes=None),
    note(changeType="create", attributes=ABSENT),
    note(changeType="delete"),
    note(changeType="delete", attributes={}),
    note(changeType="delete", attributes=None),
]


@pytest.mark.parametrize("body", VALID, ids=range(len(VALID)))
def test_valid_bodies(body: dict[str, Json]) -> None:
    text = json.dumps(body)
    assert schema_accepts(text)
    assert parser_accepts(text), [u.reason for u in parse(text).unprocessable]
    assert schema_accepts(json.dumps([body, body]))
    assert parser_accepts(json.dumps([body, body]))


@pytest.mark.parametrize("body", INVALID, ids=range(len(INVALID)))
def test_invalid_bodies(body: dict[str, Json]) -> None:
    text = json.dumps(body)
    assert not schema_accepts(text)
    parsed = parse(text)
    assert parsed.received == 1
    assert not parsed.notifications
    (bad,) = parsed.unprocessable
    assert bad.reason
    assert bad.body == text  # kept verbatim, so it can be inspected and replayed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[",
        "nul",
        "{'a': 1}",
        '{"schemaVersion": 1,}',
        "[1, 2]",
        '"text"',
        "null",
        "42",
        "NaN",
        '{"schemaVersion": 1, "version": NaN}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_malformed_or_non_object_bodies(text: str) -> None:
    assert not schema_accepts(text)
    parsed = parse(text)
    assert parsed.unprocessable
    assert not parsed.notifications
    assert parsed.received == len(parsed.unprocessable)
    assert all(u.reason for u in parsed.unprocessable)


def test_trailing_newline_in_a_name_is_rejected_by_the_parser() -> None:
    """The known regex-dialect difference: the parser is the stricter one, and it decides."""
    for body in (note(entity="account\n"), note(attributes={"name\n": 1}), note(recordId=GUID + "\n")):
        assert not parser_accepts(json.dumps(body))


def integer_written_as_float(doc: Json) -> bool:
    """An integral float where the contract wants an integer: JSON Schema's ``integer`` takes it."""
    if not isinstance(doc, dict):
        return False
    ref = doc.get("payloadRef")
    return any(isinstance(doc.get(k), float) for k in ("schemaVersion", "version")) or (
        isinstance(ref, dict) and isinstance(ref.get("size"), float)
    )


def test_an_integer_written_as_a_float_is_rejected_by_the_parser() -> None:
    """The other known difference: the schema takes 5.0 as an integer, the contract does not."""
    for body in (note(version=5.0), note(schemaVersion=1.0), note(version=9007199254740993.0)):
        assert schema_accepts(json.dumps(body))
        assert integer_written_as_float(body)
        assert not parser_accepts(json.dumps(body))


# ------------------------------------------------------------------------------- semantic rules
def reason_of(body: dict[str, Json]) -> str:
    (bad,) = parse(json.dumps(body)).unprocessable
    return bad.reason


def test_semantic_rules_have_reasons() -> None:
    assert "delete" in reason_of(note(changeType="delete", attributes={"name": "x"}))
    assert "no attributes" in reason_of(note(changeType="delete", attributes=None))
    assert "need attributes" in reason_of(note(changeType="create", attributes=ABSENT))
    assert "need attributes" in reason_of(note(changeType="update", attributes=None))
    reserved = reason_of(note(attributes={"id": GUID, "sinkcreatedon": "x", "name": "a"}))
    assert "reserved" in reserved
    assert "'id'" in reserved
    assert "'sinkcreatedon'" in reserved
    assert "schemaVersion" in reason_of(note(schemaVersion=2, somethingNew={"x": 1}))
    assert "unknown" in reason_of(note(unknown=1))
    assert "entity" in reason_of(note(entity="Account"))
    assert "attributes" in reason_of(note(attributes={"Bad": 1}))
    assert "recordId" in reason_of(note(recordId="x"))
    assert "version" in reason_of(note(version=-1))


def test_unprocessable_keeps_identity_when_known() -> None:
    (bad,) = parse(json.dumps(note(changeType="delete", attributes={"a": 1}))).unprocessable
    assert (bad.entity, bad.record_id) == ("account", GUID)


def test_versionnumber_attribute_is_ignored() -> None:
    (n,) = parse(json.dumps(note(version=9, attributes={"versionnumber": 3, "name": "x"}))).notifications
    assert n.version == 9
    assert n.attributes == {"name": "x"}


def test_envelope_keeps_valid_siblings_of_invalid_elements() -> None:
    good = [note(recordId=f"00000000-0000-4000-8000-00000000000{i}") for i in range(3)]
    bad = [note(entity="Bad"), note(changeType="delete", attributes={"a": 1}), 42, note(schemaVersion=3)]
    mixed = [good[0], bad[0], good[1], bad[1], bad[2], good[2], bad[3]]
    parsed = parse(json.dumps(mixed))
    assert parsed.received == 7
    assert [n.recordId for n in parsed.notifications] == [g["recordId"] for g in good]
    assert len(parsed.unprocessable) == 4
    # Each invalid element is kept on its own, not the whole envelope.
    assert {json.loads(u.body)["entity"] for u in parsed.unprocessable if u.body.startswith("{")} == {"Bad", "account"}
    assert any(u.body == "42" for u in parsed.unprocessable)


def test_empty_envelope_is_nothing() -> None:
    parsed = parse("[]")
    assert (parsed.received, parsed.notifications, parsed.unprocessable) == (0, [], [])


# ------------------------------------------------------------------------ agreement property
NAMES = st.from_regex(r"\A[a-z][a-z0-9_]{0,12}\Z")
ANY_TEXT = st.text(max_size=20).filter(lambda s: not s.endswith("\n"))
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)
GUIDS = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
LOOKUPS = st.fixed_dictionaries({"id": GUIDS, "logicalName": NAMES})
ATTRIBUTE_VALUES = JSON_SCALARS | LOOKUPS
PAYLOAD_REFS = st.fixed_dictionaries(
    {
        "blob": st.sampled_from(["2026/11/21/0b6f.json", "x.json", "Bad Name", "../etc/passwd", ""]),
        "size": st.sampled_from([0, 1024, -1, 1.0, "1", True]),
        "sha256": st.sampled_from(["0" * 64, "A" * 64, "0" * 63, ""]),
    },
    optional={"extra": st.just(1)},
)
DATES = st.sampled_from(
    [
        "2026-11-21T10:00:00Z",
        "2026-11-21T10:00:00.5-05:30",
        "1999-01-01T00:00:00+00:00",
        "2026-11-21T10:00:00",
        "2026-11-21",
        "2026-02-30T10:00:00Z",
        "10:00:00Z",
        "",
        "2026-11-21T10:00:00Zjunk",
    ]
)


@st.composite
def valid_notifications(draw: st.DrawFn) -> dict[str, Json]:
    change = draw(st.sampled_from(["create", "update", "delete"]))
    body = note(
        organizationId=draw(GUIDS),
        entity=draw(NAMES),
        recordId=draw(GUIDS),
        changeType=change,
        version=draw(st.integers(0, 2**63 - 1)),
        changedOn=draw(DATES.filter(lambda d: d.endswith(("Z", "0")) and "T" in d and "-02-30" not in d)),
        attributes=ABSENT if change == "delete" else draw(st.dictionaries(NAMES, ATTRIBUTE_VALUES, max_size=4)),
    )
    if "attributes" in body:
        for reserved in ("id", "sinkcreatedon", "sinkmodifiedon"):
            body["attributes"].pop(reserved, None)
    return body


FIELDS = ["schemaVersion", "organizationId", "entity", "recordId", "changeType", "version", "changedOn", "attributes"]


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Json]:
    """A valid notification, maybe broken in one place (or two)."""
    body = draw(valid_notifications())
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.integers(0, 10))
        name = draw(st.sampled_from(FIELDS))
        if how == 0:
            body.pop(name, None)
        elif how == 1:
            body[draw(ANY_TEXT)] = draw(JSON_VALUES)
        elif how == 2:
            body[name] = draw(JSON_VALUES)
        elif how == 3:
            body["schemaVersion"] = draw(st.sampled_from([0, 1, 2, 1.0, 1.5, "1", True, None]))
        elif how == 4:
            body["version"] = draw(st.sampled_from([-1, 0, 2**63 - 1, 2**63, 3.0, 3.5, "3", False, 1e19]))
        elif how == 5:
            body["changedOn"] = draw(DATES | st.integers())
        elif how == 6:
            attrs = body.setdefault("attributes", {})
            if isinstance(attrs, dict):
                attrs[draw(ANY_TEXT | NAMES | st.sampled_from(["id", "sinkmodifiedon", "versionnumber"]))] = draw(
                    ATTRIBUTE_VALUES | JSON_VALUES
                )
        elif how == 7:
            body["changeType"] = draw(st.sampled_from(["create", "update", "delete", "merge", "", None]))
        elif how == 8:
            attrs = body.get("attributes")
            if isinstance(attrs, dict) and attrs:
                key = draw(st.sampled_from(sorted(attrs)))
                attrs[key] = draw(st.fixed_dictionaries({"id": GUIDS | ANY_TEXT, "logicalName": NAMES | ANY_TEXT}))
        elif how == 9:
            body[draw(st.sampled_from(["entity", "recordId", "organizationId"]))] = draw(ANY_TEXT | GUIDS | NAMES)
        else:
            # The claim check: a payload reference instead of (or beside) the attributes.
            body["payloadRef"] = draw(PAYLOAD_REFS | JSON_VALUES)
            if draw(st.booleans()):
                body.pop("attributes", None)
    return body


@settings(max_examples=400, deadline=None)
@given(body=mutated())
def test_schema_and_parser_agree_on_single_notifications(body: dict[str, Json]) -> None:
    text = json.dumps(body)
    expected = schema_accepts(text) and not integer_written_as_float(body)
    assert expected == parser_accepts(text), (text, [u.reason for u in parse(text).unprocessable])


@settings(max_examples=100, deadline=None)
@given(bodies=st.lists(mutated(), max_size=4))
def test_schema_and_parser_agree_on_envelopes(bodies: list[dict[str, Json]]) -> None:
    text = json.dumps(bodies)
    parsed = parse(text)
    assert parsed.received == len(bodies)
    rejected = sum(not schema_accepts(json.dumps(b)) or integer_written_as_float(b) for b in bodies)
    assert (rejected == 0) == (not parsed.unprocessable)
    # Element by element too: exactly the elements the schema rejects are unprocessable.
    assert len(parsed.unprocessable) == rejected
