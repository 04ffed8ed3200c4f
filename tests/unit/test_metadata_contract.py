"""The entity metadata notification in the wire contract (shared/contract/metadata.py).

* Valid metadata notifications, alone or in an envelope next to record notifications, parse into
  ``ParsedBatch.metadata``; invalid ones are unprocessable with a reason naming the problem
  (unknown attribute type, bad names, rules of the shape), and their valid siblings are kept.
* Record notifications keep their fast path: a body of records never reaches the slow path.
* The shipped JSON Schema documents the metadata notification: it accepts every notification the
  parser accepts (hypothesis over generated metadata), and rejects the shapes it can express.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from shared.contract import parse
from shared.contract.metadata import (
    OPTION_SET_TYPES,
    RESERVED_NAMES,
    TYPE_CODES,
    AttributeType,
    MetadataNotification,
    validate_metadata,
)
from shared.contract.parse import parse_bodies
from shared.contract.schema import load_schema
from tests.support.metadata_scenarios import BAD_METADATA, attr, label, metadata, option, option_set
from tests.support.scenarios import up

pytestmark = pytest.mark.unit

VALIDATOR = Draft202012Validator(load_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)
Json = Any


def _full() -> dict[str, Json]:
    return metadata(
        "account",
        7,
        attr("name", "String", maxLength=160, metadataId="0F8FAD5B-D9CB-469F-A165-70867728950E"),
        attr("revenue", "Money", precision=4),
        attr("industrycode", "Picklist", optionSet=option_set("account_industrycode", option(1, label(1033, "A")))),
        attr("statuscode", "Status", optionSet=option_set("s", option(1, label(1033, "Active"), state=0))),
        attr(
            "primarycontactid", "Lookup", targets=["contact", {"entity": "activitypointer", "attribute": "activityid"}]
        ),
        attr("category", "Picklist", optionSet=option_set("Shared_Cat", option(2), is_global=True)),
    )


def test_a_metadata_notification_parses_into_its_own_list() -> None:
    parsed = parse_bodies([json.dumps(_full())])
    assert (parsed.received, len(parsed.notifications), len(parsed.unprocessable)) == (1, 0, 0)
    (m,) = parsed.metadata
    assert isinstance(m, MetadataNotification)
    assert (m.entity, m.version, m.changeType) == ("account", 7, "metadata")
    lookup = m.metadata.attributes[4]
    assert lookup.target_keys() == [("contact", "contactid"), ("activitypointer", "activityid")]
    assert m.metadata.attributes[0].type is AttributeType.STRING
    assert m.metadata.attributes[0].type.code == 14


def test_an_envelope_mixes_record_and_metadata_notifications_and_keeps_valid_siblings() -> None:
    record = up("account", 1, 1, name="Contoso").wire()
    bad, _ = BAD_METADATA["unknown attribute type"]
    parsed = parse_bodies([json.dumps([_full(), record, bad])])
    assert parsed.received == 3
    assert len(parsed.metadata) == 1
    assert [n.entity for n in parsed.notifications] == ["account"]
    (u,) = parsed.unprocessable
    assert u.entity == "account"
    assert u.record_id is None
    assert "metadata.attributes.0.type: Input should be 'BigInt'" in u.reason
    assert json.loads(u.body) == bad  # kept as it came


@pytest.mark.parametrize("name", list(BAD_METADATA))
def test_bad_metadata_is_unprocessable_with_a_reason(name: str) -> None:
    doc, words = BAD_METADATA[name]
    parsed = parse_bodies([json.dumps(doc)])
    assert (parsed.received, len(parsed.metadata)) == (1, 0)
    (u,) = parsed.unprocessable
    assert words in u.reason, u.reason
    assert len(u.reason) <= parse.MAX_REASON


def test_more_rules_of_the_shape() -> None:
    def reason(*attributes: dict[str, Json]) -> str:
        got = validate_metadata(metadata("account", 1, *attributes))
        assert isinstance(got, str), got
        return got

    assert "has no optionSet" in reason(attr("n", "String", optionSet=option_set("x", option(1))))
    assert "has no targets" in reason(attr("n", "Integer", targets=["contact"]))
    assert "precision applies" in reason(attr("n", "String", precision=2))
    assert "only status options carry a state" in reason(
        attr("p", "Picklist", optionSet=option_set("x", option(1, state=0)))
    )
    assert "two labels for one language" in reason(
        attr("p", "Picklist", optionSet=option_set("x", option(1, label(1033, "a"), label(1033, "b"))))
    )
    shared_a = option_set("g", option(1, label(1033, "a")), is_global=True)
    shared_b = option_set("g", option(1, label(1033, "b")), is_global=True)
    assert "given twice with different options" in reason(
        attr("p", "Picklist", optionSet=shared_a), attr("q", "Picklist", optionSet=shared_b)
    )
    assert "unicode" in reason(
        attr("p", "Picklist", optionSet=option_set("x", option(1, label(1033, "bad \ud800"))))
    ).lower()  # an unpaired surrogate: PostgreSQL and SQL Server could not store it
    assert "less than or equal to 10" in reason(attr("m", "Money", precision=11))
    assert "schemaVersion" in str(validate_metadata({**metadata("account", 1), "schemaVersion": 2}))
    assert "changedOn" in str(validate_metadata({**metadata("account", 1), "changedOn": 1700000000}))
    assert "version" in str(validate_metadata({**metadata("account", 1), "version": 2**63}))
    # Identical global option sets on two attributes are fine (they give their rows once).
    ok = validate_metadata(
        metadata("account", 1, attr("p", "Picklist", optionSet=shared_a), attr("q", "Picklist", optionSet=shared_a))
    )
    assert isinstance(ok, MetadataNotification)


def test_a_wrong_schema_version_with_metadata_is_unprocessable() -> None:
    parsed = parse_bodies([json.dumps({**_full(), "schemaVersion": 2})])
    (u,) = parsed.unprocessable
    assert "unsupported schemaVersion 2" in u.reason


def test_record_notifications_keep_their_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*_args: object) -> None:
        raise AssertionError("a record body went down the slow path")

    monkeypatch.setattr(parse, "_parse_slow", slow)
    records = [up("account", n, 1, name="x").wire() for n in range(3)]
    parsed = parse_bodies([json.dumps(records), json.dumps(records[0])])
    assert (parsed.received, len(parsed.notifications), parsed.metadata) == (4, 4, [])
    with pytest.raises(AssertionError, match="slow path"):
        parse_bodies([json.dumps(_full())])  # metadata is only tried after the record contract fails


def test_reserved_names_are_the_parsers() -> None:
    assert RESERVED_NAMES == parse.RESERVED_ATTRIBUTES


def test_type_codes_are_dataverse_attribute_type_codes() -> None:
    assert set(TYPE_CODES) == set(AttributeType)
    documented = {  # Microsoft.Xrm.Sdk.Metadata.AttributeTypeCode
        "Boolean": 0, "Customer": 1, "DateTime": 2, "Decimal": 3, "Double": 4, "Integer": 5, "Lookup": 6,
        "Memo": 7, "Money": 8, "Owner": 9, "PartyList": 10, "Picklist": 11, "State": 12, "Status": 13,
        "String": 14, "Uniqueidentifier": 15, "CalendarRules": 16, "Virtual": 17, "BigInt": 18,
        "ManagedProperty": 19, "EntityName": 20, "MultiSelectPicklist": 17, "File": 17, "Image": 17,
    }  # fmt: skip
    assert {t.value: t.code for t in AttributeType} == documented


def test_the_json_schema_documents_metadata_notifications() -> None:
    assert VALIDATOR.is_valid(_full())
    assert VALIDATOR.is_valid([_full(), up("account", 1, 1, name="x").wire()])
    defs = load_schema()["$defs"]
    assert defs["MetadataNotification"]["properties"]["changeType"]["const"] == "metadata"
    assert "Uniqueidentifier" in defs["AttributeType"]["enum"]
    for name in ("unknown attribute type", "entity name with capitals", "attribute name with SQL", "unknown field"):
        doc, _ = BAD_METADATA[name]
        assert not VALIDATOR.is_valid(doc), name
    assert not VALIDATOR.is_valid({k: v for k, v in _full().items() if k != "metadata"})


# ----------------------------------------------------------------------- schema and parser agree
NAMES = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z")
TYPES = st.sampled_from([t.value for t in AttributeType] + ["Text", "string", ""])
LABELS = st.builds(label, st.integers(0, 5000), st.text(max_size=8), st.booleans())


@st.composite
def attributes(draw: st.DrawFn) -> dict[str, Json]:
    type_ = draw(TYPES)
    out: dict[str, Json] = {"logicalName": draw(NAMES), "type": type_}
    if draw(st.booleans()):
        out["maxLength"] = draw(st.integers(0, 5000))
    if draw(st.booleans()):
        out["precision"] = draw(st.integers(-1, 12))
    if type_ in {t.value for t in OPTION_SET_TYPES} or draw(st.integers(0, 9)) == 0:
        status = type_ == "Status"
        values = draw(st.lists(st.integers(-5, 5), max_size=3))
        opts = [option(v, *draw(st.lists(LABELS, max_size=2)), state=0 if status else None) for v in values]
        out["optionSet"] = option_set(draw(NAMES), *opts, is_global=draw(st.booleans()))
    if draw(st.integers(0, 3)) == 0:
        out["targets"] = draw(st.lists(NAMES, min_size=1, max_size=2))
    return out


@settings(max_examples=150, deadline=None)
@given(entity=NAMES, version=st.integers(0, 10), attrs=st.lists(attributes(), max_size=5))
def test_whatever_the_parser_accepts_the_schema_accepts(
    entity: str, version: int, attrs: list[dict[str, Json]]
) -> None:
    doc = metadata(entity, version, *attrs)
    parsed = validate_metadata(doc)
    if isinstance(parsed, MetadataNotification):
        assert VALIDATOR.is_valid(doc), list(VALIDATOR.iter_errors(doc))[:1]
    if not VALIDATOR.is_valid(doc):
        assert isinstance(parsed, str)  # the parser's rules include the schema's
