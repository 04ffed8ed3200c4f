"""Numbers a double cannot hold (money and decimals of more than 15 significant digits) are decoded
exactly by the contract's fast and reference parsers alike, and typed by the engine as decimals."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contract.exactjson import dumps as exact_dumps
from shared.contract.exactjson import exact_number, has_long_number
from shared.contract.parse import (
    parse_bodies,
    parse_bodies_reference,
    resolve_reference,
)
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind

pytestmark = pytest.mark.unit

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
RID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"


def body(attrs: str, version: str = "2") -> bytes:
    return (
        f'{{"schemaVersion":1,"organizationId":"{ORG}","entity":"account","recordId":"{RID}",'
        f'"changeType":"update","version":{version},"changedOn":"2026-11-21T10:00:00Z","attributes":{attrs}}}'
    ).encode()


@pytest.mark.parametrize("parse", [parse_bodies, parse_bodies_reference])
def test_twenty_digits_decode_exactly_and_short_numbers_stay_doubles(parse: object) -> None:
    out = parse([body('{"revenue":1234567890123456.7891,"price":20000.0000,"rate":0.1,"n":12345678901234567890,'  # type: ignore[operator]
                      '"accountnumber":"12345678901234567890.5"}')])  # fmt: skip
    [n] = out.notifications
    attrs = n.attributes
    assert attrs is not None
    assert attrs["revenue"] == Decimal("1234567890123456.7891")
    assert type(attrs["revenue"]) is Decimal
    assert (type(attrs["price"]), attrs["price"]) == (float, 20000.0)
    assert (type(attrs["rate"]), attrs["rate"]) == (float, 0.1)
    assert attrs["n"] == 12345678901234567890
    assert attrs["accountnumber"] == "12345678901234567890.5"  # text stays text


def test_an_integer_field_written_with_many_digits_and_a_fraction_is_refused_by_both_paths() -> None:
    bad = body('{"name":"x"}', version="1234567890123456789.0")
    fast, ref = parse_bodies([bad]), parse_bodies_reference([bad])
    assert [u.reason for u in fast.unprocessable] == [u.reason for u in ref.unprocessable]
    assert "JSON integer" in fast.unprocessable[0].reason


def test_a_bad_element_next_to_an_exact_number_is_kept_with_the_number_as_written() -> None:
    good = body('{"revenue":1234567890123456.7891}').decode()
    envelope = f'[{good}, {{"schemaVersion":1,"entity":"account","amount":98765432109876543.21}}]'
    out = parse_bodies([envelope])
    assert len(out.notifications) == 1
    [kept] = out.unprocessable
    assert "98765432109876543.21" in kept.body


def test_a_claim_check_payload_keeps_its_exact_numbers() -> None:
    ref_body = (f'{{"schemaVersion":1,"organizationId":"{ORG}","entity":"account","recordId":"{RID}",'
                '"changeType":"update","version":2,"changedOn":"2026-11-21T10:00:00Z",'
                '"payloadRef":{"blob":"2026/11/21/x.json","size":1,"sha256":"' + "0" * 64 + '"}}')  # fmt: skip
    [ref] = parse_bodies([ref_body]).notifications
    n = resolve_reference(ref, body('{"revenue":1234567890123456.7891}'))
    assert n.attributes["revenue"] == Decimal("1234567890123456.7891")  # type: ignore[union-attr]


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**30), max_value=10**30))
def test_every_money_value_round_trips_exactly(value: Decimal) -> None:
    text = format(value, "f")
    [n] = parse_bodies([body(f'{{"revenue":{text}}}')]).notifications
    got = n.attributes["revenue"]  # type: ignore[index]
    assert Decimal(repr(got)) == value if type(got) is float else got == value
    assert has_long_number(text.encode()) or type(got) is float


def test_exact_number_and_dumps() -> None:
    assert exact_number("0.30000000000000004") == 0.30000000000000004  # a double's shortest form: a double
    assert exact_number("0.10000000000000001") == Decimal("0.10000000000000001")
    assert json.loads(exact_dumps({"a": Decimal("1.10"), "b": "\x00"})) == {"a": 1.1, "b": "\x00"}
    assert exact_dumps([Decimal("98765432109876543.21")]) == "[98765432109876543.21]"


def test_the_engine_types_exact_decimals_as_decimals() -> None:
    d = Decimal("1234567890123456.7891")
    assert coltypes.value_type(d) == coltypes.DECIMAL
    assert coltypes.coerce(ColumnType(Kind.DECIMAL, precision=38, scale=4), d) == (True, d)
    assert coltypes.coerce(ColumnType(Kind.DECIMAL, precision=38, scale=2), d)[0] is False  # 4 places
    assert coltypes.coerce(coltypes.FLOAT, d) == (True, float(d))  # a Double column holds the nearest double
    assert coltypes.coerce(coltypes.INTEGER, Decimal("12345678901234567")) == (True, 12345678901234567)
    assert coltypes.coerce(coltypes.INTEGER, d)[0] is False


def test_parked_copies_keep_every_other_value_as_it_was() -> None:
    """A parked copy (model_dump in JSON mode: retry blobs, parked failures) writes an exact decimal as
    a double and leaves every other value alone (a postal code "45693" stays text, a lookup an object)."""
    [n] = parse_bodies([body('{"revenue":1234567890123456.7891,"zip":"45693","ok":true,"n":7,"r":1.5,'
                             f'"parent":{{"id":"{RID}","logicalName":"account"}}}}')]).notifications  # fmt: skip
    doc = n.model_dump(mode="json", exclude_unset=True)["attributes"]
    assert doc == {"revenue": 1234567890123456.8, "zip": "45693", "ok": True, "n": 7, "r": 1.5,
                   "parent": {"id": RID, "logicalName": "account"}}  # fmt: skip
    assert type(doc["zip"]) is str
