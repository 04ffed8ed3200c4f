"""The Dataverse simulator's OData pieces: Prefer parsing, paging cookies, $filter, exact-decimal JSON."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import unquote

import pytest

from shared.tools.dataverse_sim.odata import PageCookie, Prefer
from shared.tools.dataverse_sim.query import matches, parse_filter
from shared.tools.dataverse_sim.values import SimError, dumps, loads

pytestmark = pytest.mark.unit


def test_prefer_splits_on_commas_outside_quotes() -> None:
    prefer = Prefer.parse('odata.track-changes, odata.maxpagesize=9000,odata.include-annotations='
                          '"Microsoft.Dynamics.CRM.lookuplogicalname,OData.Community.Display.V1.*",return=representation')
    assert prefer.track_changes
    assert prefer.page_size() == 5000  # capped
    assert prefer.return_representation
    assert prefer.wants("Microsoft.Dynamics.CRM.lookuplogicalname")
    assert prefer.wants("OData.Community.Display.V1.FormattedValue")
    assert not prefer.wants("Microsoft.Dynamics.CRM.associatednavigationproperty")
    everything_but = Prefer.parse('odata.include-annotations="*,-Microsoft.Dynamics.CRM.lookuplogicalname"')
    assert everything_but.wants("OData.Community.Display.V1.FormattedValue")
    assert not everything_but.wants("Microsoft.Dynamics.CRM.lookuplogicalname")
    assert Prefer.parse(None).page_size() == 5000
    with pytest.raises(SimError):
        Prefer.parse("odata.maxpagesize=lots")


def test_paging_cookies_round_trip_through_a_url() -> None:
    cookie = PageCookie(3, "6d81597f-0f9f-e711-8122-000d3aa2331c", 900123, (1, 900100, "abc"))
    token = cookie.encode("accountid", "00000000-0000-0000-0000-000000000001", True)
    text = unquote(token)  # what the server sees after the query string is decoded
    assert text.startswith('<cookie pagenumber="3" pagingcookie="')
    assert text.endswith('istracking="True" />')
    assert PageCookie.decode(text) == cookie
    assert PageCookie.decode(token) == cookie
    with pytest.raises(SimError):
        PageCookie.decode("garbage")


def test_filter_comparisons_joined_by_and_or() -> None:
    row = {"name": "O'Brien", "n": 5, "flag": True, "gone": None, "id": "6d81597f-0f9f-e711-8122-000d3aa2331c"}
    assert matches(parse_filter("name eq 'o''brien'"), row.get)
    assert matches(parse_filter("n gt 4 and flag eq true"), row.get)
    assert not matches(parse_filter("n gt 5 and flag eq true"), row.get)
    assert matches(parse_filter("n eq 1 or id eq 6d81597f-0f9f-e711-8122-000d3aa2331c"), row.get)
    assert matches(parse_filter("gone eq null and n le 5"), row.get)
    assert matches(parse_filter("AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'"),
                   {"AttributeType": "Picklist"}.get)
    for bad in ("contains(name,'x')", "name eq", "(n eq 1)", "n eq 1 xor n eq 2"):
        with pytest.raises(SimError):
            parse_filter(bad)


def test_money_is_written_as_an_exact_json_number() -> None:
    text = dumps({"revenue": Decimal("20000.0000"), "tiny": Decimal("0.1000000001"), "s": "@@dec-not-a-marker:1"})
    assert '"revenue":20000.0000' in text
    assert '"tiny":0.1000000001' in text
    assert json.loads(text)["s"] == "@@dec-not-a-marker:1"
    assert loads(text)["revenue"] == Decimal("20000.0000")
    assert dumps({"d": "/Date(1)/"}, escape_slashes=True) == '{"d":"\\/Date(1)\\/"}'
