"""Cutting a Service Bus batch by bytes (shared/chunking.py; issue 12): chunks keep the messages
and an envelope's elements verbatim and in order, never exceed the ceiling (a longer element alone),
and what is not a well-formed UTF-8 JSON array (or is a Dataverse message) stays whole."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.chunking import chunks, size_of, split_envelope
from shared.contract.parse import BOM_BYTES, parse_bodies
from shared.source.dataverse.push import Message

pytestmark = pytest.mark.unit

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def note(i: int, filler: int = 10) -> dict[str, object]:
    return {"schemaVersion": 1, "organizationId": ORG, "entity": "account",
            "recordId": f"00000000-0000-0000-0000-{i:012d}", "changeType": "update", "version": i + 1,
            "changedOn": "2026-11-21T10:00:00Z", "attributes": {"name": "x" * filler}}  # fmt: skip


def elements(parts: list[bytes]) -> list[object]:
    return [e for part in parts for e in json.loads(part)]


@given(st.lists(st.integers(0, 600), max_size=60), st.integers(300, 5000))
def test_an_envelope_is_cut_into_sub_envelopes_of_at_most_the_ceiling(fillers: list[int], ceiling: int) -> None:
    docs = [note(i, f) for i, f in enumerate(fillers)]
    body = json.dumps(docs).encode()
    parts = split_envelope(body, ceiling)
    if len(body) <= ceiling:
        assert parts is None
        return
    assert parts is not None
    assert elements(parts) == docs  # verbatim, in order, none lost or repeated
    for part in parts:
        assert len(part) <= ceiling or len(json.loads(part)) == 1  # a longer element is alone


def test_what_is_not_a_well_formed_utf8_array_stays_whole() -> None:
    big = json.dumps([note(i, 200) for i in range(20)]).encode()
    assert split_envelope(big[:-1], 1000) is None  # malformed: the contract gives the reason
    assert split_envelope(json.dumps(note(1, 5000)).encode(), 1000) is None  # one notification
    bad = big.replace(b'"xxxx', b'"\xff\xfexx', 1)
    assert split_envelope(bad, 1000) is None  # invalid UTF-8 makes the whole body unprocessable
    assert parse_bodies([bad]).unprocessable[0].reason.startswith("the body is not valid UTF-8")
    with_bom = split_envelope(BOM_BYTES + big, 1000)  # a BOM is tolerated, as the contract does
    assert with_bom is not None
    assert elements(with_bom) == json.loads(big)


def test_messages_are_grouped_in_order_up_to_the_ceiling() -> None:
    bodies: list[Message] = [json.dumps(note(i, 100 * (i % 7))).encode() for i in range(200)]
    got = list(chunks(bodies, 4096))
    assert [m for c in got for m in c] == bodies
    assert all(sum(size_of(m) for m in c) <= 4096 for c in got)
    assert len(got) > 10


def test_a_long_envelope_among_messages_is_cut_and_dataverse_messages_stay_whole() -> None:
    envelope = json.dumps([note(i, 300) for i in range(100)])  # about 45 KB
    claims = {"http://schemas.microsoft.com/xrm/2011/Claims/Organization": "o"}
    dataverse = (json.dumps({"MessageName": "Update", "x": "y" * 20000}), claims)
    small = (json.dumps(note(500)).encode(), {"publisher": "des"})
    got = list(chunks([small, (envelope, {}), dataverse, small], 8192))
    flat = [m for c in got for m in c]
    assert flat[0] == small
    assert flat[-1] == small
    assert dataverse in flat
    parts = [m for m in flat if m not in (small, dataverse)]
    assert len(parts) >= 5
    assert all(isinstance(m, tuple) and m[1] == {} for m in parts)  # the application properties go along
    assert elements([msgspec.json.encode(msgspec.json.decode(m[0])) for m in parts]) == json.loads(envelope)  # type: ignore[index]
    assert all(sum(size_of(m) for m in c) <= 8192 for c in got if dataverse not in c)
