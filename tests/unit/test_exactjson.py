"""Exact JSON (shared.contract.exactjson): a money or decimal value of up to 38 significant digits
survives every parked copy of its notification (retry blob, parked failure, reject file, orphaned
body) exactly, and documents without a Decimal are written byte for byte as before (retry blob
names hash that text: blobs parked by earlier versions keep their names)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.contract import exactjson
from shared.contract.models import Notification, notification_doc
from shared.contract.parse import parse_bodies
from shared.engine.outcomes import RecordFailure
from shared.profiles.local_ports import LocalFailures
from shared.rejects import RejectFiles
from shared.retry.batch import parse_parked
from shared.storage.blobs import RetryBatch, batch_key, verify_retry_batch

pytestmark = pytest.mark.unit

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
RID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
MONEY = Decimal("1234567890123456789012345678901234.5678")  # 38 significant digits, DECIMAL(38,4)


def old_batch_key(notifications: list[dict[str, Any]]) -> str:
    """batch_key as main had it before exact JSON (frozen copy): the names of parked retry blobs."""
    h = hashlib.sha256()
    for n in notifications:
        h.update(json.dumps(n, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:40]


def old_to_bytes(profile: str, first_seen: str, notifications: list[dict[str, Any]]) -> bytes:
    """RetryBatch.to_bytes as main had it (frozen copy)."""
    doc = {"format": "des-retry/1", "profile": profile, "firstSeen": first_seen, "notifications": notifications}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


# Decimals of 1 to 38 significant digits at scales -10..38 (exponents a money column and beyond).
decimals = st.builds(
    lambda digits, scale: Decimal(f"{digits}E{-scale}"),
    st.integers(-(10**38) + 1, 10**38 - 1),
    st.integers(-10, 38),
)
json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)  # fmt: skip
json_docs = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


def body(value: str) -> bytes:
    doc = (
        f'{{"schemaVersion":1,"organizationId":"{ORG}","entity":"account","recordId":"{RID}","changeType":"update",'
        f'"version":7,"changedOn":"2026-11-21T10:00:00Z","attributes":{{"name":"n","revenue":{value}}}}}'
    )
    return doc.encode()


def exact_notification(value: Decimal = MONEY) -> Notification:
    parsed = parse_bodies([body(str(value))])
    [n] = parsed.notifications
    assert n.attributes is not None
    assert type(n.attributes["revenue"]) is Decimal
    return n


@settings(max_examples=400, deadline=None)
@given(decimals)
def test_a_decimal_round_trips_exactly(d: Decimal) -> None:
    text = exactjson.dumps({"v": d}, separators=exactjson.COMPACT)
    back = exactjson.loads(text)["v"]
    if type(back) is Decimal:
        assert str(back) == str(d)  # the digits and the scale as they were
    elif type(back) is int:
        assert back == d  # written as an integer (no point): read as one, as the contract reads it
    else:
        assert type(back) is float
        assert Decimal(repr(back)) == d  # a double holds it: read as that double
        assert exactjson.exact_number(str(d)) == back  # what the contract parser makes of the same number
    assert exactjson.dumps(exactjson.loads(text), separators=exactjson.COMPACT) == text  # stable
    assert exactjson.loads(text.encode()) == exactjson.loads(text)


@settings(max_examples=300, deadline=None)
@given(json_docs)
def test_documents_without_a_decimal_are_written_as_json_dumps_writes_them(doc: Any) -> None:
    for kw in ({}, {"sort_keys": True, "separators": (",", ":")}, {"separators": (",", ":")}):
        assert exactjson.dumps(doc, **kw) == json.dumps(doc, ensure_ascii=False, **kw)  # type: ignore[arg-type]
    notes = [doc, {"attributes": doc}] if not isinstance(doc, dict) else [doc]
    assert batch_key(notes) == old_batch_key(notes)
    when = datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert RetryBatch("p", when, notes).to_bytes() == old_to_bytes("p", "2026-11-21T10:00:00.000000Z", notes)


def test_retry_blob_names_of_ordinary_notifications_are_unchanged() -> None:
    n = parse_bodies([body("20000.0")]).notifications[0]  # a money value a double holds: a double
    docs = [notification_doc(n)]
    assert batch_key(docs) == old_batch_key(docs)


@settings(max_examples=200, deadline=None)
@given(
    st.builds(  # 17 to 38 significant digits (the last one not 0), 1 to 34 decimal places
        lambda digits, negative, scale: Decimal(f"{'-' if negative else ''}{digits}E-{scale}"),
        st.integers(10**16, 10**38 - 1).filter(lambda d: d % 10 != 0), st.booleans(), st.integers(1, 34),
    )
)
def test_a_retry_blob_keeps_a_long_money_value_exactly(d: Decimal) -> None:
    assume(type(exactjson.exact_number(str(d))) is Decimal)  # (17 digits can be a double's shortest form)
    n = exact_notification(d)
    docs = [notification_doc(n)]
    name = f"p/{batch_key(docs)}.json"
    data = RetryBatch("p", datetime.now(UTC), docs).to_bytes()
    assert str(d).encode() in data
    back = RetryBatch.from_bytes(data)
    verify_retry_batch(name, back)  # the name is recomputed from what was read back: the same
    [again] = parse_parked(back.notifications).notifications
    assert again.attributes is not None
    assert again.attributes["revenue"] == d
    assert str(again.attributes["revenue"]) == str(d)


def test_a_reject_file_keeps_a_long_money_value_exactly(tmp_path: Path) -> None:
    """des replay's (and the embedded default's) failed-notifications.jsonl, read back by the local
    admin API's re-sync (LocalFailures)."""
    n = exact_notification()
    files = RejectFiles(tmp_path / "p")
    files.failures([RecordFailure(n, "destination rejected it")])
    files.close()
    line = (tmp_path / "p" / "failed-notifications.jsonl").read_text(encoding="utf-8")
    assert f'"revenue": {MONEY}' in line  # a JSON number, every digit
    found = LocalFailures(tmp_path).get("p", [n.key])
    got = found[n.key].attributes
    assert got is not None
    assert got["revenue"] == MONEY
    assert type(got["revenue"]) is Decimal


def test_an_orphaned_or_unprocessable_copy_keeps_the_number_as_written() -> None:
    """Bodies made from parked documents (profile deleted meanwhile, entries failing the contract)
    are kept as text an operator replays: the number is written as it is."""
    doc = notification_doc(exact_notification())
    doc["attributes"]["bad name!"] = 1  # fails the contract: kept as an unprocessable body
    [u] = parse_parked([doc]).unprocessable
    assert str(MONEY) in u.body
    del doc["attributes"]["bad name!"]
    [n] = parse_bodies([exactjson.dumps(doc)]).notifications  # replayed: the exact value again
    assert n.attributes is not None
    assert n.attributes["revenue"] == MONEY
