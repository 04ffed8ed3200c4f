"""Hostile input against the record contract (issue 12): each rule has a reproduction that failed
before the rule existed.

* strings must be valid Unicode: a lone surrogate (``"\\ud800"``) or invalid UTF-8 is unprocessable
  with a reason, never replaced with U+FFFD and applied; the kept body is writable as UTF-8;
* ``changedOn`` must be a date-time every store and destination can hold after conversion to UTC
  (``9999-12-31T23:59:59-01:00`` is year 10000 in UTC);
* integers must be JSON integers: ``9007199254740993.0`` is not silently rounded into ``version``;
* a leading UTF-8 byte-order mark is tolerated;
* GUIDs are matched in full (no trailing newline through ``$``) wherever our code checks them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.contract.parse import ParsedBatch, parse_bodies
from shared.engine import coltypes
from tests.support.contract_bodies import GUID, ORG, note

pytestmark = pytest.mark.unit


def only_unprocessable(parsed: ParsedBatch) -> str:
    assert not parsed.notifications, parsed.notifications
    assert parsed.received == 1
    (bad,) = parsed.unprocessable
    bad.body.encode("utf-8")  # every reject writer can write it
    return bad.reason


# ------------------------------------------------------------------------------------ Unicode
LONE_SURROGATES = [
    note(attributes={"name": "\ud800"}),
    note(attributes={"name": "ok \udfff tail"}),
    note(attributes={"name": "\udc00\ud800"}),  # reversed pair: two lone halves
    note(attributes={"parentid": {"id": GUID, "logicalName": "contact\ud800"}}),
]


@pytest.mark.parametrize("doc", LONE_SURROGATES, ids=range(len(LONE_SURROGATES)))
def test_a_lone_surrogate_is_unprocessable(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)  # "\ud800" escaped: valid JSON text, not valid Unicode
    assert "\\ud" in text
    for body in (text, text.encode()):
        reason = only_unprocessable(parse_bodies([body]))
        assert "attributes" in reason
    # In an envelope the valid sibling stays.
    parsed = parse_bodies([json.dumps([note(), doc])])
    assert len(parsed.notifications) == 1
    assert len(parsed.unprocessable) == 1


def test_a_lone_surrogate_in_a_value_names_the_problem() -> None:
    reason = only_unprocessable(parse_bodies([json.dumps(note(attributes={"name": "a\ud800b"}))]))
    assert "surrogate" in reason


def test_a_python_string_with_a_raw_lone_surrogate_is_unprocessable_and_its_body_writable() -> None:
    raw = json.dumps(note(attributes={"name": "PLACE"}), ensure_ascii=False).replace("PLACE", "\ud800")
    assert "\ud800" in raw
    reason = only_unprocessable(parse_bodies([raw]))
    assert "Unicode" in reason or "surrogate" in reason


def test_a_properly_paired_surrogate_escape_is_one_character() -> None:
    (n,) = parse_bodies([json.dumps(note(attributes={"name": "\U0001f600"}))]).notifications
    assert n.attributes == {"name": "\U0001f600"}


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"],
    ids=["ff", "truncated", "encoded-surrogate", "overlong", "five-byte"],
)
def test_invalid_utf8_is_unprocessable_not_replaced(bad: bytes) -> None:
    body = json.dumps(note(attributes={"name": "PLACE"})).encode().replace(b"PLACE", b"x" + bad + b"y")
    reason = only_unprocessable(parse_bodies([body]))
    assert "UTF-8" in reason
    (kept,) = parse_bodies([body]).unprocessable
    assert "\ufffd" not in kept.body  # kept as it came (escaped), not replaced
    assert kept.entity is None or kept.entity == "account"


# ------------------------------------------------------------------------------- byte order mark
@pytest.mark.parametrize("doc", [note(), [note(), note(recordId=ORG)]], ids=["one", "envelope"])
def test_a_leading_byte_order_mark_is_tolerated(doc: Any) -> None:
    text = json.dumps(doc)
    for body in (b"\xef\xbb\xbf" + text.encode(), "\ufeff" + text):
        parsed = parse_bodies([body])
        assert not parsed.unprocessable, [u.reason for u in parsed.unprocessable]
        assert len(parsed.notifications) == (len(doc) if isinstance(doc, list) else 1)


def test_a_byte_order_mark_elsewhere_is_not_whitespace() -> None:
    body = b" \xef\xbb\xbf" + json.dumps(note()).encode()
    assert only_unprocessable(parse_bodies([body]))


# -------------------------------------------------------------------------------------- changedOn
@pytest.mark.parametrize(
    "when",
    [
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
        "9999-12-31T23:59:59.999999-00:01",
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        "0001-01-01T00:59:59+01:00",
    ],
)
def test_changed_on_beyond_what_utc_can_hold_is_unprocessable(when: str) -> None:
    reason = only_unprocessable(parse_bodies([json.dumps(note(changedOn=when))]))
    assert "changedOn" in reason
    assert "UTC" in reason


@pytest.mark.parametrize(
    "when",
    ["9999-12-31T23:59:59+01:00", "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00-01:00"],
)
def test_changed_on_at_the_edges_of_utc_is_applied(when: str) -> None:
    (n,) = parse_bodies([json.dumps(note(changedOn=when))]).notifications
    assert n.changedOn.isoformat()


# --------------------------------------------------------------------------------------- integers
@pytest.mark.parametrize(
    "doc",
    [
        note(version=9007199254740993.0),  # would be rounded to ...992
        note(version=5.0),
        note(schemaVersion=1.0),
        note(attributes=None, payloadRef={"blob": "2026/x.json", "size": 10.0, "sha256": "0" * 64}),
    ],
    ids=["2**53+1", "5.0", "schemaVersion", "payloadRef.size"],
)
def test_integers_must_be_json_integers(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    reason = only_unprocessable(parse_bodies([text]))
    assert "integer" in reason


def test_an_exponent_literal_is_not_an_integer() -> None:
    text = json.dumps(note(version=12345)).replace("12345", "5e0")
    assert "integer" in only_unprocessable(parse_bodies([text]))


def test_big_json_integers_are_exact() -> None:
    (n,) = parse_bodies([json.dumps(note(version=9007199254740993))]).notifications
    assert n.version == 9007199254740993


# ------------------------------------------------------------------------------------------ GUIDs
def test_a_guid_column_takes_no_trailing_newline() -> None:
    assert coltypes.coerce(coltypes.GUID, GUID) == (True, GUID)
    assert coltypes.coerce(coltypes.GUID, GUID + "\n")[0] is False
    assert coltypes.coerce(coltypes.GUID, GUID.upper() + "\n")[0] is False


def test_a_date_time_column_takes_no_trailing_newline() -> None:
    assert coltypes.to_datetime("2026-11-21T10:00:00Z") is not None
    assert coltypes.to_datetime("2026-11-21T10:00:00Z\n") is None
    assert coltypes.to_datetime("2026-11-21\n") is None
