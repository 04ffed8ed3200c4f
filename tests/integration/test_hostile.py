"""Hostile identifiers and values on real SQLite and PostgreSQL: every notification gets a clear
outcome, nothing crashes, nothing is injected, and the database is intact afterwards.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest

from shared.destinations import Destination, Layout, LayoutError, open_destination
from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from tests.conftest import DestinationFactory
from tests.support.model import Change, Value

pytestmark = pytest.mark.integration

INJECTION = "'); DROP TABLE decoy; --"


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def upsert(i: int, attrs: dict[str, Value], version: int = 1, entity: str = "account") -> str:
    return Change(entity, rid(i), "create", version, attrs).body()


def raw(**fields: object) -> str:
    body: dict[str, object] = {
        "schemaVersion": 1,
        "organizationId": rid(999),
        "entity": "account",
        "recordId": rid(500),
        "changeType": "create",
        "version": 1,
        "changedOn": "2026-11-21T10:00:00Z",
        "attributes": {"name": "x"},
    }
    body.update(fields)
    return json.dumps(body)


def apply(engine: SyncEngine, bodies: list[str], expect_received: int | None = None) -> BatchResult:
    result = engine.apply_bodies(bodies)
    assert result.conserved, result.counts()
    assert result.received == (len(bodies) if expect_received is None else expect_received)
    for f in result.failures:
        assert f.reason
    for u in result.unprocessables:
        assert u.reason
    return result


def table_names(dsn: str, dest: Destination) -> set[str]:
    if dest.dialect == "sqlite":
        with sqlite3.connect(dsn[len("sqlite:///") :]) as conn:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


@pytest.fixture
def decoy(dsn: str) -> None:
    """A table an injection would like to drop."""
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn[len("sqlite:///") :]) as conn:
            conn.execute("CREATE TABLE decoy (x INTEGER)")
            conn.execute("INSERT INTO decoy VALUES (1)")
    else:
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE decoy (x integer)")
            conn.execute("INSERT INTO decoy VALUES (1)")


def test_injection_through_names_is_unprocessable(open_dest: DestinationFactory, dsn: str, decoy: None) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    bodies = [
        raw(entity='account"; DROP TABLE decoy; --'),
        raw(entity="decoy; --"),
        raw(entity="Account"),
        raw(entity="account\n"),
        raw(entity="a" * 129),
        raw(attributes={'name" text); DROP TABLE decoy; --': "x"}),
        raw(attributes={"name\u0000": "x"}),
        raw(attributes={"NAME": "x"}),
        raw(attributes={"x y": 1}),
        raw(recordId="1' OR '1'='1"),
        raw(attributes={"parentid": {"id": rid(1), "logicalName": "contact'); DROP TABLE decoy; --"}}),
        raw(attributes={"id": rid(1)}),
    ]
    result = apply(engine, bodies)
    assert result.unprocessable == len(bodies)
    reasons = [u.reason for u in result.unprocessables]
    assert any("entity" in r for r in reasons[:5])
    assert all("attributes" in r for r in reasons[5:9])
    assert "recordId" in reasons[9]
    assert "logicalName" in reasons[10]
    assert "reserved" in reasons[11]
    # Verbatim bodies are kept for inspection.
    assert [u.body for u in result.unprocessables] == bodies
    assert "decoy" in table_names(dsn, dest)


def test_hostile_values_are_stored_exactly(open_dest: DestinationFactory, dsn: str, decoy: None) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    values: list[str] = [
        INJECTION,
        "Robert'); DROP TABLE account;--",
        "quote ' double \" backslash \\ semicolon ; percent % underscore _ $1 ? :name",
        "emoji 😀👩‍👩‍👧 and RTL \u202e and zero width \u200b",
        "x" * 301,
        "long " * 20_000,  # 100k characters
        "tab\tnewline\nreturn\r",
        "",
    ]
    bodies = [upsert(i, {"name": v, "amount": i}) for i, v in enumerate(values)]
    result = apply(engine, bodies)
    assert (result.applied, result.failed) == (len(values), 0), [f.reason for f in result.failures]
    stored = {str(r["Id"]): r["name"] for r in table_rows(dest, "account")}
    assert stored == {rid(i): v for i, v in enumerate(values)}
    assert "decoy" in table_names(dsn, dest)


def test_sql_keywords_as_names(open_dest: DestinationFactory) -> None:
    dest = open_dest(Layout(prefix="Sel"))  # mixed case: created exactly as named, quoted
    engine = SyncEngine(dest)
    bodies = [
        upsert(1, {"from": "a", "table": 1, "group": True, "select": 2.5, "where": None}, entity="order"),
        upsert(2, {"from": "b"}, entity="user"),
    ]
    result = apply(engine, bodies)
    assert result.applied == 2, [f.reason for f in result.failures]
    (row,) = list(table_rows(dest, "Sel_order"))
    assert (row["from"], row["table"], row["select"]) == ("a", 1, 2.5)
    assert bool(row["group"]) is True
    assert [r["from"] for r in table_rows(dest, "Sel_user")] == ["b"]


def test_nul_characters(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    result = apply(engine, [upsert(1, {"name": "a\u0000b"}), upsert(2, {"name": "fine"})])
    stored = {str(r["Id"]): r["name"] for r in table_rows(dest, "account")}
    assert stored[rid(2)] == "fine"
    if dest.dialect == "postgresql":
        # PostgreSQL text cannot hold NUL: a failed outcome with the reason, the sibling applied.
        assert (result.applied, result.failed) == (1, 1)
        assert "NUL" in result.failures[0].reason
        assert rid(1) not in stored
    else:
        assert (result.applied, result.failed) == (2, 0)
        assert stored[rid(1)] == "a\u0000b"


def test_numbers_at_the_edges(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    floats = {1: -0.0, 2: 1e308, 3: 5e-324, 4: -1.7976931348623157e308, 5: 0.1}
    result = apply(engine, [upsert(i, {"ratio": f}) for i, f in floats.items()])
    assert result.applied == len(floats)
    stored = {str(r["Id"]): r["ratio"] for r in table_rows(dest, "account")}
    for i, f in floats.items():
        assert stored[rid(i)] == f
        assert isinstance(stored[rid(i)], float)
    if dest.dialect == "postgresql":
        assert math.copysign(1, stored[rid(1)]) == -1.0  # type: ignore[arg-type]
    # Integers beyond 64 bits.
    huge = {10: 2**63, 11: -(2**63) - 1, 12: 10**30}
    result = apply(engine, [upsert(i, {"count": v}) for i, v in huge.items()] + [upsert(13, {"count": 1})])
    stored_counts = {str(r["Id"]): r["count"] for r in table_rows(dest, "account") if r["count"] is not None}
    if dest.dialect == "postgresql":
        # An exact numeric column holds them exactly.
        assert result.applied == 4
        assert {k: int(v) for k, v in stored_counts.items()} == {rid(i): v for i, v in {**huge, 13: 1}.items()}  # type: ignore[call-overload]
    else:
        # SQLite stores at most 64-bit integers: a failed outcome with the reason, never a rounded value.
        assert (result.applied, result.failed) == (1, 3)
        assert all("64-bit" in f.reason for f in result.failures)
        assert stored_counts == {rid(13): 1}
    # An integer with more digits than Python converts: unprocessable with the reason.
    digits = raw(attributes={"count": 7}).replace('"count": 7', '"count": 1' + "0" * 5000)
    result = apply(engine, [digits])
    assert result.unprocessable == 1
    assert "digits" in result.unprocessables[0].reason


def test_wrong_types_fail_only_their_record(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    apply(engine, [upsert(1, {"count": 1, "flag": True, "name": "a", "owner": None})])
    bodies = [
        upsert(2, {"count": "one"}),
        upsert(3, {"flag": 1}),
        upsert(4, {"name": 5}),
        upsert(5, {"count": 2.5, "name": "widened"}),  # fits after lossless widening
        upsert(6, {"count": 3}),
    ]
    result = apply(engine, bodies)
    assert (result.applied, result.failed) == (2, 3)
    failed = {f.record_id: f.reason for f in result.failures}
    assert set(failed) == {rid(2), rid(3), rid(4)}
    assert "'count'" in failed[rid(2)]
    assert "'flag'" in failed[rid(3)]
    assert "'name'" in failed[rid(4)]


def test_malformed_bodies_and_unknown_versions(open_dest: DestinationFactory) -> None:
    engine = SyncEngine(open_dest())
    bodies = [
        '{"schemaVersion": 1, "entity": ',
        "not json at all",
        "",
        "[1, 2",
        raw(schemaVersion=2),
        raw(schemaVersion=2, payloadRef="https://example/blob"),
        raw(schemaVersion="1"),
        raw(unknownField=True),
        raw(version=-5),
        raw(changedOn="2026-11-21T10:00:00"),
    ]
    result = apply(engine, bodies)
    assert result.unprocessable == len(bodies)
    reasons = [u.reason for u in result.unprocessables]
    assert all("malformed JSON" in r for r in reasons[:4])
    assert all("schemaVersion" in r for r in reasons[4:7])
    assert "unknownField" in reasons[7]
    assert "version" in reasons[8]
    assert "changedOn" in reasons[9]
    # Bytes that are not UTF-8 are unprocessable too.
    result = engine.apply_bodies([b"\xff\xfe{"])
    assert result.unprocessable == 1


def test_envelopes_mixing_valid_and_invalid(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    envelope = json.dumps(
        [
            json.loads(upsert(1, {"name": "one"})),
            {"schemaVersion": 1, "entity": "BAD"},
            json.loads(upsert(2, {"name": "two"})),
            "a string",
            json.loads(raw(schemaVersion=9)),
            json.loads(upsert(3, {"name": "three"}, entity="contact")),
        ]
    )
    result = apply(engine, [envelope, upsert(4, {"name": "four"})], expect_received=7)
    assert (result.applied, result.unprocessable) == (4, 3)
    assert {str(r["Id"]) for r in table_rows(dest, "account")} == {rid(1), rid(2), rid(4)}
    assert {str(r["Id"]) for r in table_rows(dest, "contact")} == {rid(3)}


def test_guids_in_upper_case_are_stored_lower(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    upper = rid(42).upper()
    target = rid(43).upper()
    body = Change("account", upper, "create", 1, {"name": "a"}).body()
    apply(engine, [body])
    # The same record in lower case is the same row: an older version is stale, a newer one wins.
    assert apply(engine, [Change("account", rid(42), "update", 1, {"name": "dup"}).body()]).stale == 1
    from tests.support.model import Lookup

    apply(engine, [Change("account", rid(42), "update", 2, {"name": "b", "ref": Lookup(target, "contact")}).body()])
    (row,) = list(table_rows(dest, "account"))
    assert str(row["Id"]) == rid(42)
    assert str(row["ref"]) == rid(43)
    assert row["name"] == "b"
    # A delete in upper case removes it and its tombstone is found by a lower-case update.
    apply(engine, [Change("account", upper, "delete", 3).body()])
    assert apply(engine, [Change("account", rid(42), "update", 3, {"name": "zombie"}).body()]).stale == 1
    assert list(table_rows(dest, "account")) == []


def test_postgres_identifier_limits(pg_dsn: str) -> None:
    dest = open_destination(pg_dsn, Layout(prefix="p"))
    try:
        engine = SyncEngine(dest)
        ok_entity = "e" * 61  # p_ + 61 = 63 characters: the limit
        long_entity = "f" * 62  # 64 characters: PostgreSQL would truncate it silently
        result = apply(
            engine,
            [
                upsert(1, {"name": "a"}, entity=ok_entity),
                upsert(2, {"name": "b"}, entity=long_entity),
                upsert(3, {"c" * 63: 1, "d" * 64: 2}),
                upsert(4, {"name": "fine"}),
            ],
        )
        assert (result.applied, result.failed) == (2, 2)
        reasons = {f.record_id: f.reason for f in result.failures}
        assert "63" in reasons[rid(2)]
        assert "table name" in reasons[rid(2)]
        assert "column name" in reasons[rid(3)]
        with psycopg.connect(pg_dsn) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            columns = {
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'p_account'"
                )
            }
        assert f"p_{ok_entity}" in tables
        assert not [t for t in tables if t.startswith("p_fff")], "a truncated table was created"
        assert not [c for c in columns if c.startswith("ddd")], "a truncated column was created"
    finally:
        dest.close()
    with pytest.raises(LayoutError, match="63"):
        open_destination(pg_dsn, Layout(schema="s" * 64))


@pytest.mark.parametrize(
    "layout",
    [
        {"prefix": "a_b"},
        {"prefix": "x;drop"},
        {"prefix": 'p"'},
        {"prefix": "a" * 15},
        {"prefix": "ümlaut"},
        {"schema": "public; DROP TABLE decoy"},
        {"schema": "1abc"},
        {"schema": "my-schema"},
        {"schema": ""},
    ],
)
def test_bad_prefix_or_schema_is_a_layout_error(layout: dict[str, str]) -> None:
    with pytest.raises(LayoutError):
        Layout(**layout)  # type: ignore[arg-type]


def test_sqlite_has_no_schemas(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="schema"):
        open_destination(f"sqlite:///{tmp_path / 'x.db'}", Layout(schema="dbo"))


def test_database_is_intact_after_everything(open_dest: DestinationFactory, dsn: str, decoy: None) -> None:
    """All of the above in one stream: every notification has one outcome, the tables survive."""
    dest = open_dest(Layout(prefix="h", write_delete_log=True))
    engine = SyncEngine(dest)
    bodies = [
        upsert(1, {"name": INJECTION, "n": 1}),
        raw(entity='x"; DROP TABLE decoy; --'),
        upsert(2, {"name": "a\u0000b"}),
        upsert(3, {"n": "text"}),
        "{oops",
        Change("account", rid(1), "delete", 2).body(),
        upsert(1, {"name": "zombie"}, version=2),
        json.dumps([json.loads(upsert(4, {"name": "😀" * 400})), 5]),
    ]
    result = apply(engine, bodies, expect_received=len(bodies) + 1)
    total = result.applied + result.stale + result.failed + result.unprocessable
    assert total == result.received == 9
    names = table_names(dsn, dest)
    assert {"decoy", "h_account", "h__des_tombstones", "h_DeleteLog"} <= names
    ids = {str(r["Id"]) for r in table_rows(dest, "h_account")}
    assert rid(1) not in ids
    assert rid(4) in ids
