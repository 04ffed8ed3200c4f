"""Schema evolution on real SQLite and PostgreSQL: columns appear when a value shows their type,
widen only losslessly, and a value that fits no column fails its record with a reason.

Every test runs on both databases (the ``open_dest`` fixture) and reads back what the database
holds, not what the engine believes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from shared.destinations import Destination, Layout
from shared.destinations.inspect import table_rows
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from tests.conftest import DestinationFactory
from tests.support.model import Change, Lookup, Value

pytestmark = pytest.mark.integration

R1, R2, R3 = (str(uuid.UUID(int=i, version=4)) for i in (1, 2, 3))


def upsert(rid: str, version: int, attrs: dict[str, Value], entity: str = "account") -> str:
    return Change(entity, rid, "update" if version > 1 else "create", version, attrs).body()


def delete(rid: str, version: int, entity: str = "account") -> str:
    return Change(entity, rid, "delete", version).body()


def columns(dest: Destination, table: str = "account") -> dict[str, ColumnType]:
    with dest.transaction() as tx:
        found = tx.columns(table)
    assert found is not None, f"table {table} does not exist"
    return found


def rows(dest: Destination, table: str = "account") -> dict[str, dict[str, object]]:
    return {str(r["Id"]): r for r in table_rows(dest, table)}


def apply(engine: SyncEngine, *bodies: str) -> BatchResult:
    result = engine.apply_bodies(list(bodies))
    assert result.conserved, result.counts()
    return result


def clean(result: BatchResult) -> None:
    assert (result.failed, result.unprocessable) == (0, 0), [f.reason for f in result.failures]


def test_columns_are_added_when_first_seen(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    clean(apply(engine, upsert(R1, 1, {"name": "Contoso"})))
    assert set(columns(dest)) == {"name"}
    clean(apply(engine, upsert(R2, 1, {"name": "Fabrikam", "city": "Oslo", "employees": 7})))
    assert columns(dest) == {"name": coltypes.TEXT, "city": coltypes.TEXT, "employees": coltypes.INTEGER}
    got = rows(dest)
    assert (got[R1]["city"], got[R1]["employees"]) == (None, None)
    assert (got[R2]["name"], got[R2]["city"], got[R2]["employees"]) == ("Fabrikam", "Oslo", 7)
    # The system columns come first, in the documented order.
    assert list(got[R1])[:4] == ["Id", "SinkCreatedOn", "SinkModifiedOn", "versionnumber"]


def test_null_only_attributes_create_no_column_until_a_value_shows_the_type(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    clean(apply(engine, upsert(R1, 1, {"name": "a", "employees": None}), upsert(R2, 1, {"employees": None})))
    assert set(columns(dest)) == {"name"}
    # Null first, then an integer in the same batch: an integer column, never text.
    clean(apply(engine, upsert(R1, 2, {"score": None}), upsert(R2, 2, {"score": 12})))
    assert columns(dest)["score"] == coltypes.INTEGER
    clean(apply(engine, upsert(R3, 1, {"employees": 5})))
    assert columns(dest)["employees"] == coltypes.INTEGER
    got = rows(dest)
    assert got[R3]["employees"] == 5
    assert type(got[R3]["employees"]) is int
    assert got[R2]["score"] == 12


def test_integer_column_widens_to_decimal_when_a_fraction_arrives(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    big = 2**62 + 1  # not exact in a double: a float column would have lost it
    clean(apply(engine, upsert(R1, 1, {"amount": big}), upsert(R2, 1, {"amount": -3})))
    assert columns(dest)["amount"] == coltypes.INTEGER
    clean(apply(engine, upsert(R3, 1, {"amount": 2.5})))
    assert columns(dest)["amount"] == coltypes.DECIMAL
    got = rows(dest)
    assert got[R1]["amount"] == big
    assert Decimal(str(got[R1]["amount"])) == Decimal(big)
    assert got[R2]["amount"] == -3
    assert got[R3]["amount"] == Decimal("2.5")
    # The existing rows kept their identity and creation time through the widening.
    assert got[R1]["versionnumber"] == 1
    assert got[R1]["SinkCreatedOn"] is not None
    # An integral number fits an integer column as it is: 4.0 is 4, no widening needed.
    dest2 = open_dest(Layout(prefix="p2"))
    engine2 = SyncEngine(dest2)
    clean(apply(engine2, upsert(R1, 1, {"amount": 7})))
    clean(apply(engine2, upsert(R2, 1, {"amount": 4.0})))
    assert columns(dest2, "p2_account")["amount"] == coltypes.INTEGER
    assert rows(dest2, "p2_account")[R2]["amount"] == 4


def test_float_column_widens_for_an_integer_a_double_cannot_hold(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    third = 1 / 3  # 17 significant digits: a 15-digit conversion would round it
    clean(apply(engine, upsert(R1, 1, {"revenue": third})))
    assert columns(dest)["revenue"] == coltypes.FLOAT
    # 42 is exact in a double: it fits the float column and nothing is rewritten.
    clean(apply(engine, upsert(R2, 1, {"revenue": 42})))
    assert columns(dest)["revenue"] == coltypes.FLOAT
    beyond = 2**53 + 1
    clean(apply(engine, upsert(R3, 1, {"revenue": beyond})))
    assert columns(dest)["revenue"] == coltypes.DECIMAL
    got = rows(dest)
    assert got[R3]["revenue"] == beyond
    # The doubles already in the column survived the widening bit for bit.
    assert float(got[R1]["revenue"]) == third  # type: ignore[arg-type]
    assert got[R2]["revenue"] == 42


def test_a_value_that_fits_no_column_fails_its_record_with_a_reason(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    clean(apply(engine, upsert(R1, 1, {"employees": 10, "name": "a"})))
    result = apply(
        engine,
        upsert(R1, 2, {"employees": "ten", "name": "b"}),  # text into an integer column
        upsert(R2, 1, {"employees": 20, "name": "c"}),
        upsert(R3, 1, {"employees": True}),  # a boolean is not a number
    )
    assert (result.applied, result.failed) == (1, 2)
    reasons = {f.record_id: f.reason for f in result.failures}
    assert set(reasons) == {R1, R3}
    assert "employees" in reasons[R1]
    assert "text" in reasons[R1]
    assert "integer" in reasons[R1]
    assert "boolean" in reasons[R3]
    assert columns(dest)["employees"] == coltypes.INTEGER
    got = rows(dest)
    assert (got[R1]["versionnumber"], got[R1]["employees"], got[R1]["name"]) == (1, 10, "a")
    assert got[R2]["employees"] == 20
    assert R3 not in got
    # Delivered again (a later batch, or a redelivery), the misfit fails again: nothing is lost.
    again = apply(engine, upsert(R1, 2, {"employees": "ten", "name": "b"}))
    assert (again.applied, again.stale, again.failed) == (0, 0, 1)
    assert again.failures[0].reason == reasons[R1]
    # A newer good version of the record still applies.
    clean(apply(engine, upsert(R1, 3, {"employees": 11})))
    assert rows(dest)[R1]["employees"] == 11


def test_absent_attributes_become_null_in_a_newer_version(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    clean(apply(engine, upsert(R1, 1, {"name": "a", "employees": 3, "active": True})))
    clean(apply(engine, upsert(R1, 2, {"name": "b"})))
    row = rows(dest)[R1]
    assert (row["name"], row["employees"], row["active"], row["versionnumber"]) == ("b", None, None, 2)
    # An older version arriving late changes nothing.
    result = apply(engine, upsert(R1, 1, {"name": "a", "employees": 3, "active": True}))
    assert (result.applied, result.stale) == (0, 1)
    assert rows(dest)[R1]["name"] == "b"


def test_full_row_rule_holds_with_a_column_another_worker_added(open_dest: DestinationFactory) -> None:
    """Two workers: B's cached catalog lacks a column A added since; B's row still nulls it."""
    dest_a, dest_b = open_dest(), open_dest()
    engine_a, engine_b = SyncEngine(dest_a), SyncEngine(dest_b)
    clean(apply(engine_b, upsert(R1, 1, {"name": "a"})))
    clean(apply(engine_a, upsert(R1, 2, {"name": "b", "city": "Oslo"})))
    clean(apply(engine_b, upsert(R1, 3, {"name": "c"})))
    row = rows(dest_a)[R1]
    assert (row["name"], row["city"], row["versionnumber"]) == ("c", None, 3)
    # A widened a column B still believes is an integer: B's integer values still land exactly.
    clean(apply(engine_a, upsert(R2, 1, {"amount": 1}), upsert(R3, 1, {"amount": 0.5})))
    clean(apply(engine_b, upsert(R1, 4, {"amount": 2**62 + 3})))
    assert rows(dest_b)[R1]["amount"] == 2**62 + 3


def test_lookups_become_an_id_column_and_an_entity_type_column(open_dest: DestinationFactory, dsn: str) -> None:
    dest = open_dest(Layout(prefix="crm"))
    engine = SyncEngine(dest)
    target = str(uuid.uuid4())
    clean(apply(engine, upsert(R1, 1, {"primarycontactid": Lookup(target.upper(), "contact")})))
    clean(apply(engine, upsert(R2, 1, {"primarycontactid": None})))
    assert columns(dest, "crm_account") == {
        "primarycontactid": coltypes.GUID,
        "primarycontactid_entitytype": coltypes.TEXT,
    }
    got = rows(dest, "crm_account")
    assert str(got[R1]["primarycontactid"]) == target  # stored lower case
    assert got[R1]["primarycontactid_entitytype"] == "contact"
    assert (got[R2]["primarycontactid"], got[R2]["primarycontactid_entitytype"]) == (None, None)
    if dest.dialect == "postgresql":
        with psycopg.connect(dsn) as conn:
            types: dict[str, str] = dict(
                conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = 'crm_account'"
                ).fetchall()
            )
        assert types["primarycontactid"] == "uuid"
        assert types["primarycontactid_entitytype"] == "text"
        assert types["Id"] == "uuid"
        assert types["versionnumber"] == "bigint"
    # A text where a lookup was: fails with a reason, the column stays a GUID.
    result = apply(engine, upsert(R1, 2, {"primarycontactid": "not-a-lookup"}))
    assert result.failed == 1
    assert "primarycontactid" in result.failures[0].reason


def test_deletes_and_delete_log(open_dest: DestinationFactory) -> None:
    layout = Layout(prefix="log", write_delete_log=True)
    dest = open_dest(layout)
    engine = SyncEngine(dest)
    clean(apply(engine, upsert(R1, 1, {"name": "a"}), upsert(R2, 1, {"name": "b"})))
    result = apply(engine, delete(R1, 2), delete(R2, 1), delete(R3, 5))  # R2's delete is stale
    assert (result.applied, result.stale) == (2, 1)
    assert set(rows(dest, "log_account")) == {R2}
    logged = sorted((str(r["RecordId"]), r["VersionNumber"]) for r in table_rows(dest, "log_DeleteLog"))
    assert logged == sorted([(R1, 2), (R3, 5)])
    assert {r["EntityName"] for r in table_rows(dest, "log_DeleteLog")} == {"account"}
    # An update not newer than the tombstone never brings the record back; a newer one re-creates it.
    stale = apply(engine, upsert(R1, 2, {"name": "zombie"}), upsert(R3, 4, {"name": "zombie"}))
    assert (stale.applied, stale.stale) == (0, 2)
    assert set(rows(dest, "log_account")) == {R2}
    clean(apply(engine, upsert(R1, 3, {"name": "back"})))
    assert rows(dest, "log_account")[R1]["name"] == "back"


def test_system_columns_record_sink_times(open_dest: DestinationFactory) -> None:
    """SinkCreatedOn is when the row was (re-)created, SinkModifiedOn its last write (UTC)."""
    times = iter(datetime(2026, 11, 21, 10, m, tzinfo=UTC) for m in range(10))
    dest = open_dest()
    engine = SyncEngine(dest, clock=lambda: next(times))

    def stamps() -> tuple[datetime, datetime]:
        (row,) = [r for r in table_rows(dest, "account") if str(r["Id"]) == R1]
        return as_utc(row["SinkCreatedOn"]), as_utc(row["SinkModifiedOn"])

    clean(apply(engine, upsert(R1, 1, {"name": "a"})))  # minute 0
    assert stamps() == (datetime(2026, 11, 21, 10, 0, tzinfo=UTC),) * 2
    clean(apply(engine, upsert(R1, 2, {"name": "b"})))  # minute 1
    assert stamps() == (datetime(2026, 11, 21, 10, 0, tzinfo=UTC), datetime(2026, 11, 21, 10, 1, tzinfo=UTC))
    assert apply(engine, upsert(R1, 2, {"name": "b"})).stale == 1  # minute 2: stale, nothing written
    assert stamps()[1] == datetime(2026, 11, 21, 10, 1, tzinfo=UTC)
    clean(apply(engine, delete(R1, 3)))  # minute 3
    clean(apply(engine, upsert(R1, 4, {"name": "again"})))  # minute 4: re-created
    assert stamps() == (datetime(2026, 11, 21, 10, 4, tzinfo=UTC),) * 2


def as_utc(value: object) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    assert isinstance(value, str)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
