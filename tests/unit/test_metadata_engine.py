"""Metadata in the engine: declared column types, the DES table rows, newest-per-entity reduction,
the coercions of declared types (shared/engine/coltypes.py), and a property on a real SQLite file:
whatever the order and batching of metadata versions, each notification gets exactly one outcome
and the newest version per entity is the one applied.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contract.metadata import AttributeType, MetadataNotification, validate_metadata
from shared.destinations import Layout, open_destination
from shared.destinations.inspect import table_rows
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.engine import SyncEngine
from shared.engine.metadata import (
    NO_COLUMN_TYPES,
    column_types,
    columns_json,
    declared_columns,
    metadata_rows,
    parse_columns,
    reduce_metadata,
)
from shared.engine.outcomes import BatchResult
from tests.support.metadata_scenarios import (
    TYPED_ATTRIBUTES,
    TYPED_COLUMNS,
    attr,
    body,
    label,
    metadata,
    option,
    option_set,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def parsed(doc: dict[str, object]) -> MetadataNotification:
    m = validate_metadata(doc)
    assert isinstance(m, MetadataNotification), m
    return m


# ------------------------------------------------------------------------------- column types
def test_every_attribute_type_has_a_column_rule() -> None:
    assert declared_columns(parsed(metadata("account", 1, *TYPED_ATTRIBUTES))) == TYPED_COLUMNS
    for t in AttributeType:
        cols = column_types(parsed(metadata("x", 1, attr("a", t.value))).metadata.attributes[0])
        if t in NO_COLUMN_TYPES:
            assert cols == {}, t
        else:
            assert "a" in cols, t


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        (attr("s", "String", maxLength=160), {"s": ColumnType(Kind.TEXT, 160)}),
        (attr("s", "String", maxLength=4000), {"s": ColumnType(Kind.TEXT, 4000)}),
        (attr("s", "Memo", maxLength=4001), {"s": coltypes.TEXT}),
        (attr("s", "String"), {"s": coltypes.TEXT}),
        (attr("m", "Money"), {"m": ColumnType(Kind.DECIMAL, precision=38, scale=4)}),
        (attr("m", "Money", precision=0), {"m": ColumnType(Kind.DECIMAL, precision=38, scale=0)}),
        (attr("d", "Decimal"), {"d": ColumnType(Kind.DECIMAL, precision=38, scale=10)}),
        (attr("d", "Decimal", precision=2), {"d": ColumnType(Kind.DECIMAL, precision=38, scale=2)}),
        (attr("c", "Customer"), {"c": coltypes.GUID, "c_entitytype": ColumnType(Kind.TEXT, 128)}),
        (attr("versionnumber", "BigInt"), {}),  # a system column of every table
    ],
)
def test_column_rules(attribute: dict[str, object], expected: dict[str, ColumnType]) -> None:
    assert declared_columns(parsed(metadata("x", 1, attribute))) == expected


def test_declared_columns_round_trip_through_the_support_table_text() -> None:
    cols = dict(TYPED_COLUMNS)
    text = columns_json(cols)
    assert parse_columns(text) == cols
    assert json.loads(text)["name"] == ["text", 160, None, None]


# ------------------------------------------------------------------------------------- rows
def test_rows_of_the_des_metadata_tables() -> None:
    m = parsed(
        metadata(
            "account",
            4,
            attr("industrycode", "Picklist", metadataId="0F8FAD5B-D9CB-469F-A165-70867728950E", optionSet=option_set(
                "account_industrycode", option(1, label(1033, "A"), label(1031, "B", user=True)), option(2))),
            attr("cat", "Picklist", optionSet=option_set("shared", option(5, label(1033, "Five")), is_global=True)),
            attr("cat2", "Picklist", optionSet=option_set("shared", option(5, label(1033, "Five")), is_global=True)),
            attr("statecode", "State", optionSet=option_set("st", option(0, label(1033, "Active")))),
            attr("statuscode", "Status", optionSet=option_set("su", option(1, label(1033, "Open"), state=0))),
            attr("flag", "Boolean", optionSet=option_set(
                "f", option(0, label(1033, "No")), option(1, label(1033, "Yes")))),
            attr("owner", "Owner", targets=["systemuser", {"entity": "team", "attribute": "teamid"}]),
            attr("name", "String", maxLength=100),
            attr("money", "Money", precision=2),
        )
    )  # fmt: skip
    rows = metadata_rows(m, declared_columns(m), NOW)
    assert (rows.entity, rows.version, rows.now) == ("account", 4, NOW)
    assert rows.global_option_sets == ["shared"]
    r = rows.rows
    assert r["OptionsetMetadata"] == [
        ("account", "industrycode", 1, False, 1033, "A"),
        ("account", "industrycode", 1, True, 1031, "B"),
        ("account", "industrycode", 2, False, None, None),  # an option without labels: one row, NULL label
        ("account", "flag", 0, False, 1033, "No"),
        ("account", "flag", 1, False, 1033, "Yes"),
    ]
    assert r["GlobalOptionsetMetadata"] == [("shared", 5, False, 1033, "Five")]  # two attributes share it: once
    assert r["StateMetadata"] == [("account", 0, False, 1033, "Active")]
    assert r["StatusMetadata"] == [("account", 0, 1, False, 1033, "Open")]
    assert r["TargetMetadata"] == [
        ("account", "owner", "systemuser", "systemuserid"),
        ("account", "owner", "team", "teamid"),
    ]
    by_name = {row[1]: row for row in r["AttributeMetadata"]}
    assert by_name["industrycode"] == (
        "account", "industrycode", "Picklist", 11, 4, m.changedOn, "0f8fad5b-d9cb-469f-a165-70867728950e", None, None
    )  # fmt: skip
    assert by_name["name"][2:4] == ("String", 14)
    assert by_name["name"][8] == 100
    assert by_name["money"][7] == 2
    assert len(r["AttributeMetadata"]) == 9
    assert parse_columns(rows.columns)["name"] == ColumnType(Kind.TEXT, 100)


def test_reduce_keeps_the_newest_per_entity() -> None:
    result = BatchResult()
    notes = [parsed(metadata(e, v)) for e, v in [("b", 1), ("a", 3), ("a", 5), ("a", 5), ("b", 2), ("a", 4)]]
    winners = reduce_metadata(notes, result)
    assert [(w.entity, w.version) for w in winners] == [("a", 5), ("b", 2)]
    assert result.stale == 4
    assert (result.entity("a").stale, result.entity("b").stale) == (3, 1)


# ------------------------------------------------------------------------- coercions (coltypes)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T10:00:00Z", datetime(2026, 11, 21, 10, tzinfo=UTC)),
        ("2026-11-21T10:00:00+02:00", datetime(2026, 11, 21, 8, tzinfo=UTC)),
        ("2026-11-21T10:00:00.5-01:30", datetime(2026, 11, 21, 11, 30, 0, 500000, tzinfo=UTC)),
        ("2026-11-21T10:00:00.1234560Z", datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)),  # .NET's 7 digits
        ("2026-11-21 10:00", datetime(2026, 11, 21, 10, tzinfo=UTC)),  # no offset: UTC
        ("2026-11-21", datetime(2026, 11, 21, tzinfo=UTC)),  # a date alone: midnight UTC
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_iso_date_times_become_utc(text: str, expected: datetime) -> None:
    assert coltypes.to_datetime(text) == expected
    assert coltypes.coerce(coltypes.DATETIME, text) == (True, expected)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-21T10:00:00.1234567Z",  # a 7th digit would be rounded away
        "20261121",
        "2026-W47-6",
        "2026",
        "2026-13-01",
        "2026-11-21T24:00:00Z",
        "0001-01-01T00:00:00+05:30",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "tomorrow",
        "",
        "2026-11-21T10:00:00Z ",
    ],
)
def test_other_texts_are_not_date_times(text: str) -> None:
    assert coltypes.to_datetime(text) is None
    assert coltypes.coerce(coltypes.DATETIME, text) == (False, text)


def test_declared_types_coerce() -> None:
    assert coltypes.coerce(coltypes.DATETIME, 1700000000) == (False, 1700000000)
    naive = datetime(2026, 1, 1, 12)
    assert coltypes.coerce(coltypes.DATETIME, naive) == (True, naive.replace(tzinfo=UTC))
    plus2 = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert coltypes.coerce(coltypes.DATETIME, plus2) == (True, datetime(2026, 1, 1, 10, tzinfo=UTC))
    guid = "0F8FAD5B-D9CB-469F-A165-70867728950E"
    assert coltypes.coerce(coltypes.GUID, guid) == (True, guid.lower())
    assert coltypes.coerce(coltypes.GUID, "{" + guid + "}")[0] is False
    assert coltypes.coerce(coltypes.GUID, 5)[0] is False
    money = ColumnType(Kind.DECIMAL, precision=38, scale=4)
    assert coltypes.coerce(money, 1234.5678) == (True, 1234.5678)
    assert coltypes.coerce(money, 1.23456)[0] is False  # would round
    assert coltypes.coerce(money, 10**34)[0] is False  # 35 digits before the point; 34 fit
    assert coltypes.coerce(money, 10**33)[0] is True
    assert coltypes.coerce(money, 1e22)[0] is True
    assert coltypes.coerce(money, "1.5")[0] is False
    assert coltypes.coerce(money, True)[0] is False
    assert coltypes.decimal_digits(0.0) == (0, 0)
    assert coltypes.decimal_digits(-12.50) == (2, 1)
    assert coltypes.decimal_digits(1e-7) == (0, 7)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**40), 10**40)),
       scale=st.integers(0, 10))  # fmt: skip
def test_a_declared_decimal_takes_exactly_the_numbers_it_holds(value: float | int, scale: int) -> None:
    column = ColumnType(Kind.DECIMAL, precision=38, scale=scale)
    ok, bound = coltypes.coerce(column, value)
    assert bound == value or (isinstance(value, float) and math.isnan(value))
    with localcontext() as ctx:  # an independent reference: exact arithmetic on the number the JSON said
        ctx.prec = 1000
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        fits = exact == round(exact, scale) and abs(exact) < Decimal(10) ** (38 - scale)
    assert ok == fits, (value, scale)


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        # RFC 3339 offsets are whole minutes (historical zones' LMT seconds are not date-times here)
        timezones=st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m))),
    )
)
def test_a_date_time_written_in_iso_comes_back_as_the_same_instant(moment: datetime) -> None:
    parsed_ = coltypes.to_datetime(moment.isoformat())
    assert parsed_ is not None
    assert parsed_ == moment
    assert parsed_.utcoffset() == timedelta(0)


# ---------------------------------------------------------------- outcomes on a real SQLite file
@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.sampled_from(["account", "contact", "lead"]), st.integers(0, 6)), max_size=6),
        min_size=1,
        max_size=5,
    )
)
def test_every_metadata_notification_has_one_outcome_and_the_newest_wins(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[tuple[str, int]]]
) -> None:
    path: Path = tmp_path_factory.mktemp("md") / "dest.db"
    dest = open_destination(f"sqlite:///{path}", Layout(prefix="p"))
    try:
        engine = SyncEngine(dest)
        newest: dict[str, int] = {}
        for batch in batches:
            bodies = [
                body(metadata(e, v, attr("name", "String", maxLength=10 + v), attr("n", "Integer"))) for e, v in batch
            ]
            result = engine.apply_bodies(bodies)
            assert result.conserved
            assert result.received == len(batch)
            assert result.applied + result.stale == len(batch)
            fresh: dict[str, int] = {}
            for e, v in batch:
                if v > newest.get(e, -1) and v > fresh.get(e, -1):
                    fresh[e] = v
            assert result.applied == len(fresh), (batch, newest)  # one per entity with a newer version
            newest.update(fresh)
            for e, _v in batch:
                assert result.entity(e).received == sum(1 for x, _ in batch if x == e)
        if newest:
            state = {str(r["EntityName"]): int(str(r["VersionNumber"])) for r in table_rows(dest, "p__des_metadata")}
            assert state == newest
        for e, v in newest.items():
            names = [r for r in table_rows(dest, "p_AttributeMetadata") if r["EntityName"] == e]
            assert {int(str(r["Version"])) for r in names} == {v}
            assert len(names) == 2
            with dest.transaction() as tx:
                cols = tx.columns(f"p_{e}")
            assert cols is not None
            assert cols["name"].length == 10 + v  # widened by each newer version, never by a stale one
    finally:
        dest.close()
