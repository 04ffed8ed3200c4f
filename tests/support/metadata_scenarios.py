"""Entity metadata scenarios shared by the behavioural suites and the offline T-SQL capture.

A :class:`MetadataCase` is data: a layout (prefix, schema) and steps, each a batch of message
bodies (metadata and record notifications) delivered through the real
:class:`~shared.engine.engine.SyncEngine`, with a check of what a real database holds afterwards.

Used by

* ``tests/integration/test_metadata.py``: every case with its checks on SQLite and PostgreSQL;
* ``tests/gated/test_metadata_mssql_live.py``: the same on SQL Server when ``DES_TEST_MSSQL`` is set;
* ``tests/unit/test_metadata_mssql.py``: :func:`run_case` without checks, against the SQL Server
  dialect over a recording connection (a test double), to capture and parse every T-SQL
  statement. Nothing about behaviour is concluded there.

Checks read the database back (column types from its catalog, rows from the tables) and compare
with values written here by hand, never with what the engine believes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.contract.metadata import MetadataNotification, validate_metadata
from shared.destinations import Destination, Layout
from shared.destinations.inspect import table_rows
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.engine.ports import METADATA_TABLES, MetadataTable
from tests.support.model import Change, Lookup, Value
from tests.support.scenarios import ORG, record_id, rm, up

Json = Any
CHANGED_ON = "2026-11-21T10:00:00Z"

# Labels that must travel as bound parameters and come back byte for byte.
HOSTILE_LABELS = (
    "Robert'); DROP TABLE [OptionsetMetadata];--",
    "a]]b[c\"d'e;f -- /* x */ GO",
    "🎉 ünïcødé ∑ 中文 𝄞",
    "line1\r\nline2\ttab",
    "  padded  ",
    "",
    "N'0x00' + CHAR(0)",
    "x" * 4000,
    "🎉" * 1000,
)


# ------------------------------------------------------------------------------- wire builders
def label(language: int, text: str, user: bool = False) -> dict[str, Json]:
    return {"languageCode": language, "label": text, "isUserLocalizedLabel": user}


def option(value: int, *labels: dict[str, Json], state: int | None = None) -> dict[str, Json]:
    out: dict[str, Json] = {"value": value, "labels": list(labels)}
    if state is not None:
        out["state"] = state
    return out


def option_set(name: str, *options: dict[str, Json], is_global: bool = False) -> dict[str, Json]:
    return {"name": name, "isGlobal": is_global, "options": list(options)}


def attr(name: str, type_: str, **extra: Json) -> dict[str, Json]:
    return {"logicalName": name, "type": type_, **extra}


def metadata(
    entity: str, version: int, *attributes: dict[str, Json], intersect: bool = False, primary: str | None = None
) -> dict[str, Json]:
    return {
        "schemaVersion": 1,
        "organizationId": ORG,
        "entity": entity,
        "changeType": "metadata",
        "version": version,
        "changedOn": CHANGED_ON,
        "metadata": {
            "primaryIdAttribute": primary or f"{entity}id",
            "isIntersect": intersect,
            "attributes": list(attributes),
        },
    }


def body(*items: dict[str, Json] | Change) -> str:
    """One message body: a single notification, or an envelope of several."""
    docs = [i.wire() if isinstance(i, Change) else i for i in items]
    return json.dumps(docs[0] if len(docs) == 1 else docs, ensure_ascii=False)


# ------------------------------------------------------------------------ reading back, normalised
def as_datetime(value: object) -> datetime:
    """A date-time read back (SQLite text, PostgreSQL timestamptz, SQL Server naive UTC) as aware UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = coltypes.to_datetime(str(value))
    assert parsed is not None, f"not a date-time: {value!r}"
    return parsed


def as_decimal(value: object) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def as_guid(value: object) -> str:
    return str(value).lower()


_NORMALISE: dict[str, Callable[[object], object]] = {
    "name": str,
    "text": str,
    "int": lambda v: int(str(v)),
    "bigint": lambda v: int(str(v)),
    "bool": bool,
    "datetime": as_datetime,
    "guid": as_guid,
}


@dataclass
class Ctx:
    """A real database under a case: what the checks read."""

    dialect: str
    dest: Destination
    layout: Layout

    def table(self, entity: str) -> str:
        return self.layout.entity_table(entity)

    def columns(self, entity: str) -> dict[str, ColumnType]:
        with self.dest.transaction() as tx:
            found = tx.columns(self.table(entity))
        assert found is not None, f"table {self.table(entity)} does not exist"
        return found

    def exists(self, entity: str) -> bool:
        """Whether the entity's table, or one under its name cut to PostgreSQL's 63 characters, exists."""
        if self.dialect == "postgresql":
            conn = self.dest.conn  # type: ignore[attr-defined]
            cut = self.table(entity)[:63]
            return bool(conn.execute("SELECT count(*) FROM pg_class WHERE relname = %s", [cut]).fetchone()[0])
        with self.dest.transaction() as tx:
            return tx.columns(self.table(entity)) is not None

    def rows(self, entity: str) -> dict[str, dict[str, object]]:
        return {as_guid(r["Id"]): r for r in table_rows(self.dest, self.table(entity))}

    def meta(self, t: MetadataTable, entity: str | None = None) -> list[tuple[object, ...]]:
        """A metadata table's rows (in insert-column order, normalised, sorted), optionally one entity's."""
        out = []
        for r in table_rows(self.dest, self.layout.metadata_table(t.name)):
            if entity is not None and r.get("EntityName") != entity:
                continue
            row = tuple(
                None if r[c] is None else _NORMALISE[kind](r[c])
                for c, kind in zip(t.insert_columns, t.insert_kinds, strict=True)
            )
            out.append(row)
        return sorted(out, key=repr)

    def state(self) -> dict[str, int]:
        """Applied metadata version per entity (the support table)."""
        rows = table_rows(self.dest, self.layout.metadata_state_table)
        return {str(r["EntityName"]): int(str(r["VersionNumber"])) for r in rows}


Check = Callable[[Ctx, BatchResult], None]


@dataclass(frozen=True)
class Step:
    bodies: tuple[str, ...]
    check: Check | None = None


@dataclass(frozen=True)
class MetadataCase:
    name: str
    steps: tuple[Step, ...]
    prefix: str = ""
    schema: str | None = None  # where the database has schemas

    def layout(self, dialect: str) -> Layout:
        return Layout(None if dialect == "sqlite" else self.schema, self.prefix)

    def names(self, layout: Layout) -> set[str]:
        """Every user-supplied identifier the case makes (for the quoting check of the T-SQL capture)."""
        out = {layout.tombstone_table, layout.metadata_state_table}
        out |= {layout.metadata_table(t.name) for t in METADATA_TABLES}
        out |= {c for t in METADATA_TABLES for c, _k, _n in t.columns}
        if layout.schema:
            out.add(layout.schema)
        for step in self.steps:
            for b in step.bodies:
                doc = json.loads(b)
                for n in doc if isinstance(doc, list) else [doc]:
                    if not isinstance(n, dict) or not isinstance(n.get("entity"), str):
                        continue
                    out.add(layout.entity_table(n["entity"]))
                    out.update(n.get("attributes") or {})
                    valid = validate_metadata(n) if n.get("changeType") == "metadata" else None
                    if isinstance(valid, MetadataNotification):  # names of invalid ones never reach SQL
                        out.update(a.logicalName for a in valid.metadata.attributes)
        return out


def run_case(case: MetadataCase, dest: Destination, layout: Layout, dialect: str, *, check: bool) -> list[BatchResult]:
    """Apply each step through one engine (one engine batch per step); run its check if asked."""
    engine = SyncEngine(dest, backoff_seconds=0.05)
    results = []
    for i, step in enumerate(case.steps):
        result = engine.apply_bodies(list(step.bodies))
        assert result.conserved, f"{case.name} step {i}: {result.counts()}"
        results.append(result)
        if check and step.check is not None:
            step.check(Ctx(dialect, dest, layout), result)
    return results


def counts(result: BatchResult) -> tuple[int, int, int, int]:
    return (result.applied, result.stale, result.failed, result.unprocessable)


def failures(result: BatchResult) -> dict[str, str]:
    """record id -> reason."""
    return {f.record_id: f.reason for f in result.failures}


def clean(result: BatchResult) -> None:
    assert (result.failed, result.unprocessable) == (0, 0), (
        [f.reason for f in result.failures],
        [u.reason for u in result.unprocessables],
    )


def text(n: int | None = None) -> ColumnType:
    return ColumnType(Kind.TEXT, n)


def dec(scale: int) -> ColumnType:
    return ColumnType(Kind.DECIMAL, precision=38, scale=scale)


def rid(entity: str, n: int) -> str:
    return record_id(entity, n).lower()


def _contact(n: int) -> Lookup:
    return Lookup(record_id("contact", n), "contact")


# ------------------------------------------------------------------------------------ the cases
A = "account"

STATE_OPTIONS = option_set("account_statecode", option(0, label(1033, "Active")), option(1, label(1033, "Inactive")))
STATUS_OPTIONS = option_set(
    "account_statuscode",
    option(1, label(1033, "Active"), state=0),
    option(2, label(1033, "Inactive"), state=1),
)
TYPED_ATTRIBUTES = (
    attr("accountid", "Uniqueidentifier"),
    attr("name", "String", maxLength=160),
    attr("description", "Memo", maxLength=2000),
    attr("notes", "Memo", maxLength=1048576),
    attr("revenue", "Money", precision=4),
    attr("exchangerate", "Decimal", precision=10),
    attr("latitude", "Double", precision=5),
    attr("createdon", "DateTime"),
    attr("numberofemployees", "Integer"),
    attr("bigcount", "BigInt"),
    attr(
        "donotemail",
        "Boolean",
        optionSet=option_set(
            "account_donotemail", option(0, label(1033, "Allow")), option(1, label(1033, "Do Not Allow"))
        ),
    ),
    attr(
        "industrycode",
        "Picklist",
        optionSet=option_set(
            "account_industrycode", option(1, label(1033, "Accounting")), option(2, label(1033, "Agriculture"))
        ),
    ),
    attr("statecode", "State", optionSet=STATE_OPTIONS),
    attr("statuscode", "Status", optionSet=STATUS_OPTIONS),
    attr("primarycontactid", "Lookup", targets=["contact"]),
    attr("ownerid", "Owner", targets=["systemuser", "team"]),
    attr("owneridtype", "EntityName"),
    attr("categories", "MultiSelectPicklist"),
    attr("entityimage", "Image"),
    attr("msdyn_virtual", "Virtual"),
    attr("versionnumber", "BigInt"),
)
TYPED_COLUMNS: dict[str, ColumnType] = {
    "accountid": coltypes.GUID,
    "name": text(160),
    "description": text(2000),
    "notes": text(),  # beyond 4000 characters: unbounded
    "revenue": dec(4),
    "exchangerate": dec(10),
    "latitude": coltypes.FLOAT,
    "createdon": coltypes.DATETIME,
    "numberofemployees": coltypes.INTEGER,
    "bigcount": coltypes.INTEGER,
    "donotemail": coltypes.BOOLEAN,
    "industrycode": coltypes.INTEGER,
    "statecode": coltypes.INTEGER,
    "statuscode": coltypes.INTEGER,
    "primarycontactid": coltypes.GUID,
    "primarycontactid_entitytype": text(128),
    "ownerid": coltypes.GUID,
    "ownerid_entitytype": text(128),
    "owneridtype": text(128),
    "categories": text(),
}


def _typed_step1(ctx: Ctx, r: BatchResult) -> None:
    clean(r)
    assert counts(r) == (2, 0, 0, 0)
    assert r.entity(A).received == 2
    assert ctx.columns(A) == TYPED_COLUMNS  # no column for Image, Virtual; versionnumber is a system column
    row = ctx.rows(A)[rid(A, 1)]
    created = row["createdon"]
    if ctx.dialect != "sqlite":
        assert isinstance(created, datetime), f"{ctx.dialect} stored {created!r}, not a timestamp"
    assert as_datetime(created) == datetime(2026, 11, 21, 8, 0, tzinfo=UTC)  # +02:00 -> UTC
    assert as_decimal(row["revenue"]) == Decimal("1234.5678")
    assert as_decimal(row["exchangerate"]) == Decimal("1.0000000001")
    assert row["latitude"] == 47.6062
    assert as_guid(row["accountid"]) == rid(A, 1)
    assert as_guid(row["primarycontactid"]) == rid("contact", 1)
    assert row["primarycontactid_entitytype"] == "contact"
    assert row["bigcount"] == 2**62
    assert row["notes"] == "n" * 5000
    assert bool(row["donotemail"]) is False
    assert row["owneridtype"] == "systemuser"


def _typed_step2(ctx: Ctx, r: BatchResult) -> None:
    clean(r)
    assert counts(r) == (2, 0, 0, 0)
    rows = ctx.rows(A)
    assert as_datetime(rows[rid(A, 1)]["createdon"]) == datetime(2026, 11, 21, tzinfo=UTC)  # a date alone: midnight UTC
    assert as_decimal(rows[rid(A, 1)]["revenue"]) == Decimal("0.5")
    assert rows[rid(A, 2)]["name"] == "Fabrikam"
    assert rows[rid(A, 2)]["createdon"] is None
    assert ctx.columns(A) == TYPED_COLUMNS


def _typed_case() -> MetadataCase:
    r1 = up(
        A,
        1,
        1,
        accountid=record_id(A, 1).upper(),
        name="Contoso",
        description="d" * 2000,
        notes="n" * 5000,
        revenue=1234.5678,
        exchangerate=1.0000000001,
        latitude=47.6062,
        createdon="2026-11-21T10:00:00+02:00",
        numberofemployees=42,
        bigcount=2**62,
        donotemail=False,
        industrycode=2,
        statecode=0,
        statuscode=1,
        primarycontactid=_contact(1),
        ownerid=Lookup(record_id("systemuser", 1), "systemuser"),
        owneridtype="systemuser",
        categories="1,3",
    )
    return MetadataCase(
        "typed_columns",
        (
            # The metadata and a record in one envelope: the record meets the typed columns.
            Step((body(metadata(A, 1, *TYPED_ATTRIBUTES), r1),), _typed_step1),
            Step(
                (
                    up(A, 1, 2, name="Contoso", createdon="2026-11-21", revenue=0.5).body(),
                    up(A, 2, 1, name="Fabrikam").body(),
                ),
                _typed_step2,
            ),
        ),
    )


MISFIT_ATTRIBUTES = (
    attr("name", "String", maxLength=10),
    attr("createdon", "DateTime"),
    attr("numberofemployees", "Integer"),
    attr("revenue", "Money", precision=2),
    attr("accountid", "Uniqueidentifier"),
    attr("latitude", "Double"),
)
MISFIT_COLUMNS = {
    "name": text(10),
    "createdon": coltypes.DATETIME,
    "numberofemployees": coltypes.INTEGER,
    "revenue": dec(2),
    "accountid": coltypes.GUID,
    "latitude": coltypes.FLOAT,
}
# record n -> (attributes, what the failure reason must name)
MISFITS: dict[int, tuple[dict[str, Any], tuple[str, ...]]] = {
    3: ({"name": "x" * 11}, ("'name'", "text of 11 characters", "text(10)", "metadata")),
    4: ({"createdon": "next tuesday"}, ("'createdon'", "datetime", "metadata")),
    5: ({"numberofemployees": 2.5}, ("'numberofemployees'", "integer", "metadata")),
    6: ({"revenue": 1.125}, ("'revenue'", "decimal(38,2)", "metadata")),
    7: ({"accountid": "not-a-guid"}, ("'accountid'", "guid")),
    8: ({"latitude": 2**60}, ("'latitude'", "float", "metadata")),
    9: ({"createdon": 20261121}, ("'createdon'", "integer", "datetime")),
    10: ({"name": "🎉" * 6}, ("'name'", "UTF-16")),  # 6 characters, 12 UTF-16 code units
}


def _misfits_check(ctx: Ctx, r: BatchResult) -> None:
    bad = set(range(3, 10)) | ({10} if ctx.dialect == "mssql" else set())
    got = failures(r)
    assert set(got) == {rid(A, n) for n in bad}, got
    for n in bad:
        reason = got[rid(A, n)]
        for word in MISFITS[n][1]:
            assert word in reason, f"record {n}: {word!r} not in {reason!r}"
    assert counts(r) == (11 - len(bad), 0, len(bad), 0)
    assert ctx.columns(A) == MISFIT_COLUMNS  # nothing widened by a misfit
    rows = ctx.rows(A)
    assert set(rows) == {rid(A, n) for n in set(range(1, 11)) - bad}
    assert rows[rid(A, 1)]["name"] == "0123456789"
    assert rows[rid(A, 2)]["name"] == "ünïcødé ∑"
    assert as_decimal(rows[rid(A, 1)]["revenue"]) == Decimal("10.25")


def _misfits_case() -> MetadataCase:
    good = [
        up(
            A,
            1,
            1,
            name="0123456789",
            createdon="2026-01-31T23:59:59Z",
            numberofemployees=7,
            revenue=10.25,
            accountid=record_id(A, 1),
            latitude=1.5,
        ),
        up(A, 2, 1, name="ünïcødé ∑", createdon="2026-01-31T23:59:59.1234560Z", numberofemployees=2**40),
    ]
    bad = [up(A, n, 1, **attrs) for n, (attrs, _) in MISFITS.items()]
    return MetadataCase(
        "misfits_fail_with_reasons",
        (Step((body(metadata(A, 1, *MISFIT_ATTRIBUTES)), *(c.body() for c in good + bad)), _misfits_check),),
    )


def _widen_case() -> MetadataCase:
    def v1(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (2, 0, 1, 0)
        assert "text(100)" in failures(r)[rid(A, 1)]
        assert ctx.columns(A) == {"name": text(100)}

    def v2(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        assert counts(r) == (2, 0, 0, 0)
        assert ctx.columns(A) == {"name": text(160), "telephone1": text(50)}  # widened, and a column added
        rows = ctx.rows(A)
        assert rows[rid(A, 1)]["name"] == "a" * 150
        assert rows[rid(A, 2)]["name"] == "b" * 100  # kept through the widening

    def v3(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (2, 0, 1, 0)
        # Metadata now says 120, but narrowing is lossy: the column keeps 160 and bounds the values.
        assert ctx.columns(A) == {"name": text(160), "telephone1": text(50)}
        assert ctx.rows(A)[rid(A, 3)]["name"] == "c" * 150
        assert "text(160)" in failures(r)[rid(A, 4)]
        lengths = {row[1]: row[8] for row in ctx.meta(_attribute_table(), A)}
        assert lengths == {"name": 120, "telephone1": 50}
        assert ctx.state() == {A: 3}

    return MetadataCase(
        "widen_max_length",
        (
            Step(
                (
                    body(metadata(A, 1, attr("name", "String", maxLength=100))),
                    up(A, 1, 1, name="a" * 150).body(),
                    up(A, 2, 1, name="b" * 100).body(),
                ),
                v1,
            ),
            Step(
                (
                    body(
                        metadata(
                            A, 2, attr("name", "String", maxLength=160), attr("telephone1", "String", maxLength=50)
                        )
                    ),
                    up(A, 1, 1, name="a" * 150).body(),
                ),
                v2,
            ),
            Step(
                (
                    body(
                        metadata(
                            A, 3, attr("name", "String", maxLength=120), attr("telephone1", "String", maxLength=50)
                        )
                    ),
                    up(A, 3, 1, name="c" * 150).body(),
                    up(A, 4, 1, name="d" * 161).body(),
                ),
                v3,
            ),
        ),
    )


def _attribute_table() -> MetadataTable:
    return next(t for t in METADATA_TABLES if t.name == "AttributeMetadata")


def _table(name: str) -> MetadataTable:
    return next(t for t in METADATA_TABLES if t.name == name)


C = "contact"


def _contact_md(version: int, length: int, *options: dict[str, Json]) -> dict[str, Json]:
    return metadata(
        C,
        version,
        attr("fullname", "String", maxLength=length),
        attr("preferredcontactmethodcode", "Picklist", optionSet=option_set("contact_pcm", *options)),
    )


def _stale_case() -> MetadataCase:
    opts = _table("OptionsetMetadata")

    def labels(ctx: Ctx) -> dict[int, str]:
        return {int(row[2]): str(row[5]) for row in ctx.meta(opts, C)}  # type: ignore[call-overload]

    def s1(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (1, 0, 0, 0)
        assert labels(ctx) == {1: "Any"}

    def s2(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (0, 1, 0, 0)  # older than what is applied
        assert r.entity(C).stale == 1
        assert ctx.columns(C) == {"fullname": text(100), "preferredcontactmethodcode": coltypes.INTEGER}
        assert labels(ctx) == {1: "Any"}
        assert {row[4] for row in ctx.meta(_attribute_table(), C)} == {5}  # Version
        assert ctx.state() == {C: 5}

    def s3(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (0, 1, 0, 0)  # the same version again: a duplicate

    def s4(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (1, 1, 0, 0)  # newest of the batch wins, the other is stale
        assert ctx.columns(C)["fullname"] == text(120)
        assert labels(ctx) == {1: "Any", 3: "Email"}
        assert ctx.state() == {C: 7}

    def s5(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (1, 1, 0, 0)  # one event delivered twice in one batch
        assert labels(ctx) == {1: "Any", 3: "E-mail"}
        assert ctx.state() == {C: 8}

    any1 = option(1, label(1033, "Any"))
    return MetadataCase(
        "stale_metadata",
        (
            Step((body(_contact_md(5, 100, any1)),), s1),
            Step((body(_contact_md(3, 300, option(1, label(1033, "Old")), option(2, label(1033, "Older")))),), s2),
            Step((body(_contact_md(5, 100, any1)),), s3),
            Step(
                (
                    body(
                        _contact_md(7, 120, any1, option(3, label(1033, "Email"))),
                        _contact_md(6, 200, option(9, label(1033, "Six"))),
                    ),
                ),
                s4,
            ),
            Step(
                (
                    body(_contact_md(8, 120, any1, option(3, label(1033, "E-mail")))),
                    body(_contact_md(8, 120, any1, option(3, label(1033, "E-mail")))),
                ),
                s5,
            ),
        ),
    )


SHARED = "shared_category"


def _account_v1() -> dict[str, Json]:
    return metadata(
        A,
        1,
        attr(
            "industrycode",
            "Picklist",
            metadataId="0F8FAD5B-D9CB-469F-A165-70867728950E",
            optionSet=option_set(
                "account_industrycode",
                option(1, label(1033, "Accounting"), label(1031, "Buchhaltung"), label(1033, "Accounting", user=True)),
                option(2, label(1033, "Agriculture")),
            ),
        ),
        attr("category", "Picklist", optionSet=option_set(SHARED, option(7, label(1033, "Seven")), is_global=True)),
        attr("statecode", "State", optionSet=STATE_OPTIONS),
        attr("statuscode", "Status", optionSet=STATUS_OPTIONS),
        attr("primarycontactid", "Lookup", targets=["contact"]),
        attr("name", "String", maxLength=160),
    )


def _account_v2() -> dict[str, Json]:
    return metadata(
        A,
        2,
        attr(
            "industrycode",
            "Picklist",
            optionSet=option_set(
                "account_industrycode",
                option(1, label(1033, "Accounting & Tax")),
                option(3, label(1033, "Consulting"), label(1036, "Conseil")),
            ),
        ),
        attr(
            "category",
            "Picklist",
            optionSet=option_set(
                SHARED, option(7, label(1033, "Seven")), option(8, label(1033, "Eight")), is_global=True
            ),
        ),
        attr("statecode", "State", optionSet=STATE_OPTIONS),
        attr(
            "statuscode",
            "Status",
            optionSet=option_set(
                "account_statuscode",
                option(1, label(1033, "Open"), state=0),
                option(2, label(1033, "Closed"), state=1),
                option(3, label(1033, "On hold"), state=0),
            ),
        ),
        attr("parentaccountid", "Lookup", targets=[{"entity": "account", "attribute": "accountid"}]),
        attr("name", "String", maxLength=160),
    )


def _contact_v1() -> dict[str, Json]:
    return metadata(
        C,
        1,
        attr("category", "Picklist", optionSet=option_set(SHARED, option(7, label(1033, "Seven")), is_global=True)),
        attr("statecode", "State", optionSet=option_set("contact_statecode", option(0, label(1033, "Active")))),
        attr("parentcustomerid", "Customer", targets=["account", "contact"]),
    )


def _contact_rows_v1() -> dict[str, list[tuple[object, ...]]]:
    return {
        "OptionsetMetadata": [],
        "StateMetadata": [(C, 0, False, 1033, "Active")],
        "StatusMetadata": [],
        "TargetMetadata": sorted(
            [(C, "parentcustomerid", A, "accountid"), (C, "parentcustomerid", C, "contactid")], key=repr
        ),
    }


def _check_contact_v1(ctx: Ctx) -> None:
    for name, rows in _contact_rows_v1().items():
        assert ctx.meta(_table(name), C) == rows, name
    assert [row[:5] for row in ctx.meta(_attribute_table(), C)] == sorted(
        [
            (C, "category", "Picklist", 11, 1),
            (C, "parentcustomerid", "Customer", 1, 1),
            (C, "statecode", "State", 12, 1),
        ],
        key=repr,
    )


def _tables_case() -> MetadataCase:
    def s1(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        assert counts(r) == (2, 0, 0, 0)
        assert ctx.meta(_table("OptionsetMetadata"), A) == sorted(
            [
                (A, "industrycode", 1, False, 1033, "Accounting"),
                (A, "industrycode", 1, False, 1031, "Buchhaltung"),
                (A, "industrycode", 1, True, 1033, "Accounting"),
                (A, "industrycode", 2, False, 1033, "Agriculture"),
            ],
            key=repr,
        )
        assert ctx.meta(_table("GlobalOptionsetMetadata")) == [(SHARED, 7, False, 1033, "Seven")]
        assert ctx.meta(_table("StateMetadata"), A) == sorted(
            [(A, 0, False, 1033, "Active"), (A, 1, False, 1033, "Inactive")], key=repr
        )
        assert ctx.meta(_table("StatusMetadata"), A) == sorted(
            [(A, 0, 1, False, 1033, "Active"), (A, 1, 2, False, 1033, "Inactive")], key=repr
        )
        assert ctx.meta(_table("TargetMetadata"), A) == [(A, "primarycontactid", C, "contactid")]
        attributes = ctx.meta(_attribute_table(), A)
        assert [row[:5] for row in attributes] == sorted(
            [
                (A, "category", "Picklist", 11, 1),
                (A, "industrycode", "Picklist", 11, 1),
                (A, "name", "String", 14, 1),
                (A, "primarycontactid", "Lookup", 6, 1),
                (A, "statecode", "State", 12, 1),
                (A, "statuscode", "Status", 13, 1),
            ],
            key=repr,
        )
        by_name = {row[1]: row for row in attributes}
        assert by_name["name"][8] == 160
        assert by_name["name"][7] is None
        assert by_name["industrycode"][6] == "0f8fad5b-d9cb-469f-a165-70867728950e"
        assert by_name["industrycode"][5] == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
        ids = [r["Id"] for r in table_rows(ctx.dest, ctx.layout.metadata_table("AttributeMetadata"))]
        assert len(set(ids)) == len(ids) == 9  # generated keys
        assert all(isinstance(i, int) for i in ids)
        _check_contact_v1(ctx)
        assert ctx.state() == {A: 1, C: 1}

    def s2(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        assert counts(r) == (1, 0, 0, 0)
        assert ctx.meta(_table("OptionsetMetadata"), A) == sorted(
            [
                (A, "industrycode", 1, False, 1033, "Accounting & Tax"),
                (A, "industrycode", 3, False, 1033, "Consulting"),
                (A, "industrycode", 3, False, 1036, "Conseil"),
            ],
            key=repr,
        )
        # The global option set is shared: the newest applied metadata that carries it gives its rows.
        assert ctx.meta(_table("GlobalOptionsetMetadata")) == sorted(
            [(SHARED, 7, False, 1033, "Seven"), (SHARED, 8, False, 1033, "Eight")], key=repr
        )
        assert ctx.meta(_table("StatusMetadata"), A) == sorted(
            [(A, 0, 1, False, 1033, "Open"), (A, 1, 2, False, 1033, "Closed"), (A, 0, 3, False, 1033, "On hold")],
            key=repr,
        )
        assert ctx.meta(_table("TargetMetadata"), A) == [(A, "parentaccountid", A, "accountid")]
        names = {row[1] for row in ctx.meta(_attribute_table(), A)}
        assert names == {"industrycode", "category", "statecode", "statuscode", "parentaccountid", "name"}
        assert {row[4] for row in ctx.meta(_attribute_table(), A)} == {2}  # Version
        _check_contact_v1(ctx)  # the other entity's rows are untouched
        # Columns are never dropped: primarycontactid stays; parentaccountid is added.
        cols = ctx.columns(A)
        assert cols["primarycontactid"] == coltypes.GUID
        assert cols["parentaccountid"] == coltypes.GUID
        assert cols["parentaccountid_entitytype"] == text(128)
        assert ctx.state() == {A: 2, C: 1}

    return MetadataCase(
        "metadata_tables_replaced",
        (Step((body(_account_v1(), _contact_v1()),), s1), Step((body(_account_v2()),), s2)),
        prefix="crm",
        schema="des",
    )


H = "select"  # a reserved word as the entity name


def _hostile_case() -> MetadataCase:
    options = [option(i, label(1033, t), label(1031, t[::-1])) for i, t in enumerate(HOSTILE_LABELS, start=1)]
    md = metadata(
        H,
        1,
        attr("from", "Picklist", optionSet=option_set("select_from", *options)),
        attr("order", "Picklist", optionSet=option_set("Weird_Global_Name_1", *options[:3], is_global=True)),
        attr("statecode", "State", optionSet=option_set("select_statecode", option(0, label(1033, HOSTILE_LABELS[0])))),
        attr("group", "Lookup", targets=[{"entity": "table", "attribute": "key"}]),
        attr("key", "String", maxLength=4000),
    )

    def check(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        assert counts(r) == (2, 0, 0, 0)
        want = sorted(
            [(H, "from", i, False, 1033, t) for i, t in enumerate(HOSTILE_LABELS, start=1)]
            + [(H, "from", i, False, 1031, t[::-1]) for i, t in enumerate(HOSTILE_LABELS, start=1)],
            key=repr,
        )
        assert ctx.meta(_table("OptionsetMetadata"), H) == want
        glob = ctx.meta(_table("GlobalOptionsetMetadata"))
        assert {row[4] for row in glob} == set(HOSTILE_LABELS[:3]) | {t[::-1] for t in HOSTILE_LABELS[:3]}
        assert {row[0] for row in glob} == {"Weird_Global_Name_1"}
        assert ctx.meta(_table("StateMetadata"), H) == [(H, 0, False, 1033, HOSTILE_LABELS[0])]
        assert ctx.meta(_table("TargetMetadata"), H) == [(H, "group", "table", "key")]
        assert ctx.columns(H) == {
            "from": coltypes.INTEGER,
            "order": coltypes.INTEGER,
            "statecode": coltypes.INTEGER,
            "group": coltypes.GUID,
            "group_entitytype": text(128),
            "key": text(4000),
        }
        assert ctx.rows(H)[rid(H, 1)]["key"] == HOSTILE_LABELS[1]

    values: dict[str, Value] = {"from": 1, "key": HOSTILE_LABELS[1]}
    return MetadataCase("hostile_labels_and_names", (Step((body(md, up(H, 1, 1, **values)),), check),))


LINK = "accountleads"  # the account-lead N:N relationship's intersect entity


def _intersect_case() -> MetadataCase:
    md = metadata(
        LINK,
        1,
        attr("accountleadid", "Uniqueidentifier"),
        attr("accountid", "Uniqueidentifier"),
        attr("leadid", "Uniqueidentifier"),
        intersect=True,
        primary="accountleadid",
    )
    link = {"accountleadid": record_id(LINK, 1), "accountid": record_id(A, 1).upper(), "leadid": record_id("lead", 1)}

    def s1(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        assert counts(r) == (2, 0, 0, 0)
        guid = coltypes.GUID
        assert ctx.columns(LINK) == {"accountleadid": guid, "accountid": guid, "leadid": guid}
        row = ctx.rows(LINK)[rid(LINK, 1)]
        assert (as_guid(row["accountid"]), as_guid(row["leadid"])) == (rid(A, 1), rid("lead", 1))
        assert ctx.meta(_table("OptionsetMetadata"), LINK) == []

    def s2(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        assert counts(r) == (1, 0, 0, 0)
        assert ctx.rows(LINK) == {}  # disassociate: a delete of the intersect record

    return MetadataCase(
        "intersect_entity",
        (Step((body(md), up(LINK, 1, 1, **link).body()), s1), Step((rm(LINK, 1, 2).body(),), s2)),
    )


def _after_records_case() -> MetadataCase:
    def s1(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        assert ctx.columns(A) == {"name": text(), "createdon": text(), "amount": coltypes.INTEGER}

    def s2(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        assert counts(r) == (1, 0, 0, 0)
        # Existing columns keep their types where the declared one is not a lossless change; new ones are typed.
        assert ctx.columns(A) == {
            "name": text(),
            "createdon": text(),
            "amount": coltypes.INTEGER,
            "flag": coltypes.BOOLEAN,
        }
        assert ctx.rows(A)[rid(A, 1)]["name"] == "x" * 300

    def s3(ctx: Ctx, r: BatchResult) -> None:
        clean(r)
        cols = ctx.columns(A)
        assert cols["amount"].kind is Kind.DECIMAL  # the integer column still widens for 2.5
        rows = ctx.rows(A)
        assert as_decimal(rows[rid(A, 2)]["amount"]) == Decimal("2.5")
        assert rows[rid(A, 3)]["name"] == "y" * 400
        assert rows[rid(A, 3)]["createdon"] == "2026-11-22T10:00:00Z"  # a text column keeps the text

    md = metadata(
        A,
        1,
        attr("name", "String", maxLength=50),
        attr("createdon", "DateTime"),
        attr("amount", "Money", precision=2),
        attr("flag", "Boolean"),
    )
    return MetadataCase(
        "metadata_after_records",
        (
            Step((up(A, 1, 1, name="x" * 300, createdon="2026-11-21T10:00:00Z", amount=5).body(),), s1),
            Step((body(md),), s2),
            Step(
                (up(A, 2, 1, amount=2.5).body(), up(A, 3, 1, name="y" * 400, createdon="2026-11-22T10:00:00Z").body()),
                s3,
            ),
        ),
    )


# Metadata notifications that fail the contract: each is unprocessable with a reason naming the problem.
BAD_METADATA: dict[str, tuple[dict[str, Json], str]] = {
    "unknown attribute type": (metadata(A, 1, attr("name", "Text")), "metadata.attributes.0.type: Input should be"),
    "entity name with capitals": (metadata("Account", 1, attr("name", "String")), "entity: String should match"),
    "attribute name with SQL": (
        metadata(A, 1, attr("name]; DROP TABLE x;--", "String")),
        "metadata.attributes.0.logicalName: String should match",
    ),
    "option set name with a quote": (
        metadata(A, 1, attr("industrycode", "Picklist", optionSet=option_set("x'--", option(1)))),
        "metadata.attributes.0.optionSet.name",
    ),
    "reserved attribute name": (metadata(A, 1, attr("sinkcreatedon", "DateTime")), "reserved"),
    "duplicate attribute": (metadata(A, 1, attr("name", "String"), attr("name", "Memo")), "names must be unique"),
    "lookup type column collision": (
        metadata(A, 1, attr("ownerid", "Owner"), attr("ownerid_entitytype", "String")),
        "collides",
    ),
    "status option without state": (
        metadata(A, 1, attr("statuscode", "Status", optionSet=option_set("s", option(1, label(1033, "x"))))),
        "every status option needs its state",
    ),
    "maxLength on an integer": (metadata(A, 1, attr("n", "Integer", maxLength=5)), "maxLength applies to String"),
    "label with NUL": (
        metadata(A, 1, attr("c", "Picklist", optionSet=option_set("c", option(1, label(1033, "a\x00b"))))),
        "NUL",
    ),
    "duplicate option value": (
        metadata(A, 1, attr("c", "Picklist", optionSet=option_set("c", option(1), option(1)))),
        "option values must be unique",
    ),
    "entity name too long for the contract": (
        metadata("a" * 129, 1, attr("name", "String")),
        "entity: String should match",
    ),
    "unknown field": ({**metadata(A, 1), "recordId": record_id(A, 1)}, "recordId: Extra inputs are not permitted"),
}


def _unprocessable_case() -> MetadataCase:
    docs = [doc for doc, _ in BAD_METADATA.values()]

    def check(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (1, 0, 0, len(docs))
        reasons = [u.reason for u in r.unprocessables]  # in the order of the envelope
        for (name, (_doc, words)), reason in zip(BAD_METADATA.items(), reasons, strict=True):
            assert words in reason, f"{name}: {words!r} not in {reason!r}"
        assert ctx.rows(A)[rid(A, 1)]["name"] == "kept"  # a valid sibling of the envelope is applied
        assert ctx.columns(A) == {"name": text()}  # typed from the value: no metadata was applied

    return MetadataCase(
        "unprocessable_metadata",
        (Step((body(*docs, up(A, 1, 1, name="kept")),), check),),
    )


def _long_names_case() -> MetadataCase:
    """Names within the contract but beyond a database's identifier limit (PostgreSQL: 63)."""
    long_attr = "c" + "o" * 98 + "l"  # 100 characters
    long_entity = "e" + "n" * 68 + "y"  # 70 characters

    def check(ctx: Ctx, r: BatchResult) -> None:
        assert counts(r) == (2, 0, 0, 0)  # applied: the metadata tables hold the names whatever the limit
        listed = {(row[0], row[1]) for row in ctx.meta(_attribute_table())}
        assert listed == {(A, "short"), (A, long_attr), (long_entity, "name")}
        if ctx.dialect == "postgresql":
            assert ctx.columns(A) == {"short": coltypes.INTEGER}  # the 100-character column is not created
            assert not ctx.exists(long_entity)
        else:
            assert ctx.columns(A) == {"short": coltypes.INTEGER, long_attr: text(10)}
            assert ctx.columns(long_entity) == {"name": text(5)}

    return MetadataCase(
        "names_beyond_a_database_limit",
        (
            Step(
                (
                    body(
                        metadata(A, 1, attr("short", "Integer"), attr(long_attr, "String", maxLength=10)),
                        metadata(long_entity, 1, attr("name", "String", maxLength=5)),
                    ),
                ),
                check,
            ),
        ),
    )


METADATA_CASES: tuple[MetadataCase, ...] = (
    _typed_case(),
    _misfits_case(),
    _widen_case(),
    _stale_case(),
    _tables_case(),
    _hostile_case(),
    _intersect_case(),
    _after_records_case(),
    _unprocessable_case(),
    _long_names_case(),
)


def bodies_of(case: MetadataCase) -> Iterable[str]:
    for step in case.steps:
        yield from step.bodies


def labels_of(case: MetadataCase) -> set[str]:
    """Every option label the case sends (to check none is ever spliced into SQL text)."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "label" in node and isinstance(node["label"], str):
                found.add(node["label"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for b in bodies_of(case):
        walk(json.loads(b))
    return found


__all__ = [
    "BAD_METADATA",
    "HOSTILE_LABELS",
    "METADATA_CASES",
    "Ctx",
    "MetadataCase",
    "Step",
    "body",
    "labels_of",
    "metadata",
    "run_case",
]
