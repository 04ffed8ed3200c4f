"""Destination scenarios shared by the behavioural suites and the offline T-SQL capture.

A :class:`Scenario` is data: a layout (prefix, schema, delete log) and batches of source changes,
delivered through the real :class:`~shared.engine.engine.SyncEngine` by :func:`run`.
:func:`check` then compares the destination with :class:`~tests.support.model.ReferenceModel`
(rows, tombstones, delete log, outcome counts) plus per-scenario facts: column types, and the
records a given database must reject (a NUL character on PostgreSQL, 10**25 on SQLite and SQL
Server, a subnormal double on SQL Server...).

Used by

* ``tests/gated/test_mssql_live.py``: :func:`run` + :func:`check` on SQLite and PostgreSQL here,
  and on SQL Server wherever ``DES_TEST_MSSQL`` is set; plus :func:`concurrent_writers`;
* ``tests/unit/test_mssql_dialect.py``: :func:`run` only, against the SQL Server dialect over a
  recording connection (a test double), to capture and parse every T-SQL statement. Nothing about
  behaviour is concluded there.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from shared.destinations import Destination, Layout, TransientDestinationError
from shared.destinations.inspect import table_rows
from shared.engine.coltypes import Kind
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from tests.support.model import (
    Change,
    Lookup,
    ReferenceModel,
    Value,
    canon,
    diff,
    envelope,
    expected_state,
    table_state,
)

ORG = "00000000-0000-4000-8000-000000000001"
_NS = uuid.UUID("6f1c1d5e-3a43-4f7e-9d52-0c1f2a9b7e10")

# Values that must travel as bound parameters and come back byte for byte.
HOSTILE_TEXTS = (
    "Robert'); DROP TABLE [account];--",
    "a]]b[c\"d'e;f -- /* x */ GO",
    "🎉 ünïcødé ∑ 中文 𝄞",
    "x" * 350,
    "line1\r\nline2\ttab",
    "  padded  ",
    "",
    "N'0x00' + CHAR(0)",
)


def record_id(entity: str, n: int) -> str:
    """A stable GUID per (entity, n); odd ones upper case on the wire (ids are stored lower case)."""
    rid = str(uuid.uuid5(_NS, f"{entity}/{n}"))
    return rid.upper() if n % 2 else rid


def up(entity: str, n: int, version: int, /, **attributes: Value) -> Change:
    kind = "create" if version == 1 else "update"
    return Change(entity, record_id(entity, n), kind, version, dict(attributes), ORG)


def rm(entity: str, n: int, version: int) -> Change:
    return Change(entity, record_id(entity, n), "delete", version, None, ORG)


def key(c: Change) -> tuple[str, str, int]:
    return (c.entity, c.record_id.lower(), c.version)


@dataclass(frozen=True)
class Scenario:
    name: str
    batches: tuple[tuple[Change, ...], ...]
    prefix: str = ""
    schema: str | None = None  # used where the database has schemas (not SQLite)
    write_delete_log: bool = False
    envelope: bool = False  # each batch as one JSON-array message body, else one body per change
    # dialect -> changes it must reject (engine failure outcome), as key(change)
    fails: Mapping[str, frozenset[tuple[str, str, int]]] = field(default_factory=dict)
    # entity -> column -> kind, for every dialect; kinds_by_dialect overrides per dialect
    kinds: Mapping[str, Mapping[str, Kind]] = field(default_factory=dict)
    kinds_by_dialect: Mapping[str, Mapping[str, Mapping[str, Kind]]] = field(default_factory=dict)
    absent_columns: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def layout(self, dialect: str) -> Layout:
        return Layout(None if dialect == "sqlite" else self.schema, self.prefix, self.write_delete_log)

    def bodies(self, batch: Sequence[Change]) -> list[str]:
        return [envelope(batch)] if self.envelope else [c.body() for c in batch]


@dataclass
class Outcome:
    dialect: str
    dest: Destination
    layout: Layout
    results: list[BatchResult]


def run(scenario: Scenario, dest: Destination) -> list[BatchResult]:
    """Apply every batch of the scenario through the real engine, one engine batch each."""
    engine = SyncEngine(dest, backoff_seconds=0.05)
    return [engine.apply_bodies(scenario.bodies(batch)) for batch in scenario.batches]


class _LoggingModel(ReferenceModel):
    """The reference model, also recording which deletes took effect (the delete log)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, int]] = []

    def apply_one(self, c: Change) -> bool:
        took = super().apply_one(c)
        if took and c.is_delete:
            self.log.append(key(c))
        return took


def columns_of(dest: Destination, table: str) -> dict[str, Kind]:
    with dest.transaction() as tx:
        cols = tx.columns(table) or {}
    return {name: t.kind for name, t in cols.items()}


def check(scenario: Scenario, out: Outcome) -> None:
    """The destination after :func:`run` equals the reference model, and the scenario's facts hold."""
    expected_fail = scenario.fails.get(out.dialect, frozenset())
    failures = [f for r in out.results for f in r.failures]
    got_fail = {(f.entity, f.record_id, f.notification.version) for f in failures}
    reasons = [f"{f.entity}/{f.record_id} v{f.notification.version}: {f.reason}" for f in failures]
    assert got_fail == expected_fail, f"{scenario.name} on {out.dialect}: failures {reasons}"
    model = _LoggingModel()
    for i, (batch, result) in enumerate(zip(scenario.batches, out.results, strict=True)):
        assert result.conserved, f"{scenario.name} batch {i}: {result.counts()}"
        assert result.unprocessable == 0, [u.reason for u in result.unprocessables]
        kept = [c for c in batch if key(c) not in expected_fail]
        counts = model.apply_batch(kept)
        got = (result.applied, result.stale, result.failed)
        want = (counts.applied, counts.stale, len(batch) - len(kept))
        assert got == want, f"{scenario.name} batch {i} on {out.dialect}: (applied, stale, failed) {got} != {want}"
    layout = out.layout
    for entity in sorted(model.entities):
        table = layout.entity_table(entity)
        actual = table_state(table_rows(out.dest, table))
        problems = list(diff(expected_state(model, entity), actual))
        assert not problems, f"{scenario.name} {table} on {out.dialect}:\n" + "\n".join(problems)
        kinds = columns_of(out.dest, table)
        want_kinds = {
            **scenario.kinds.get(entity, {}),
            **scenario.kinds_by_dialect.get(out.dialect, {}).get(entity, {}),
        }
        wrong = {c: (kinds.get(c), k) for c, k in want_kinds.items() if kinds.get(c) is not k}
        assert not wrong, f"{scenario.name} {table} on {out.dialect}: (actual, expected) kinds {wrong}"
        absent = scenario.absent_columns.get(entity, frozenset()) & kinds.keys()
        assert not absent, f"{scenario.name} {table}: columns {absent} should not exist"
    stones = {
        (str(r["EntityName"]), str(canon(r["RecordId"]))): int(r["VersionNumber"])  # type: ignore[call-overload]
        for r in table_rows(out.dest, layout.tombstone_table)
    }
    assert stones == model.tombstones, f"{scenario.name} tombstones on {out.dialect}: {stones} != {model.tombstones}"
    if scenario.write_delete_log:
        logged = sorted(
            (str(r["EntityName"]), str(canon(r["RecordId"])), int(r["VersionNumber"]))  # type: ignore[call-overload]
            for r in table_rows(out.dest, layout.delete_log_table)
        )
        assert logged == sorted(model.log), f"{scenario.name} delete log on {out.dialect}: {logged} != {model.log}"


# ------------------------------------------------------------------------------------ scenarios
def _contact(n: int) -> Lookup:
    return Lookup(record_id("contact", n), "contact")


def _deletes(name: str, **layout: object) -> Scenario:
    e = "account"
    return Scenario(
        name,
        (
            (up(e, 1, 1, name="one", n=1), up(e, 2, 1, name="two", n=2), up(e, 3, 1, name="three", n=3)),
            (up(e, 1, 2, name="one v2", n=12), rm(e, 2, 5), rm(e, 4, 3)),
            # stale after the delete, stale before a tombstone, a duplicate
            (
                up(e, 2, 4, name="two v4 (stale)", n=24),
                up(e, 4, 2, name="four (stale)"),
                up(e, 1, 2, name="one v2", n=12),
            ),
            # re-creation, stale delete, a delete and an older update of one record in one batch
            (up(e, 2, 6, name="two again", n=26), rm(e, 1, 1), up(e, 3, 6, name="three v6"), rm(e, 3, 7)),
            (rm(e, 2, 6),),  # same version as the live row: stale
        ),
        **layout,  # type: ignore[arg-type]
    )


def _scenarios() -> list[Scenario]:
    a, c = "account", "contact"
    out = [
        Scenario(
            "create_table",
            (
                (
                    up(a, 1, 1, name="Contoso", revenue=10.5, numberofemployees=42, donotemail=False,
                       primarycontactid=_contact(1), description=None),
                    up(a, 2, 1, name="Fabrikam", revenue=-0.25, numberofemployees=-7, donotemail=True,
                       primarycontactid=None, description=None),
                ),
            ),
            envelope=True,
            kinds={a: {"name": Kind.TEXT, "revenue": Kind.FLOAT, "numberofemployees": Kind.INTEGER,
                       "donotemail": Kind.BOOLEAN, "primarycontactid": Kind.GUID,
                       "primarycontactid_entitytype": Kind.TEXT}},
            absent_columns={a: frozenset({"description"})},
        ),
        Scenario(
            "add_column",
            (
                (up(a, 1, 1, name="first"),),
                (up(a, 1, 2, name="first", telephone1="+1 555 0100", creditlimit=1000),
                 up(a, 2, 1, name="second", telephone1=None)),
                (up(a, 1, 3, name="full state: telephone1 and creditlimit now NULL"),),
                (up(a, 2, 2, name="second", description="late column", creditonhold=True),),
            ),
            kinds={a: {"telephone1": Kind.TEXT, "creditlimit": Kind.INTEGER, "description": Kind.TEXT,
                       "creditonhold": Kind.BOOLEAN}},
        ),
        Scenario(
            "widen_integer_to_decimal",
            (
                (up(a, 1, 1, amount=42),),
                (up(a, 2, 1, amount=2.5),),  # integer column meets a fraction: widened, nothing lost
                (up(a, 3, 1, amount=12345678901234), up(a, 4, 1, amount=-0.125)),
            ),
            kinds={a: {"amount": Kind.DECIMAL}},
        ),
        Scenario(
            "misfits",
            (
                (up(a, 1, 1, score=1.5), up(a, 4, 1, flag="yes"), up(a, 6, 1, amt=7), up(a, 8, 1, ratio=0.1)),
                (up(a, 2, 1, score=2**60),),  # float column: SQL Server will not widen FLOAT to DECIMAL
                (up(a, 3, 1, big=10**25),),  # beyond int64 (SQLite) and DECIMAL(38, 18) (SQL Server)
                (up(a, 5, 1, flag=True),),  # boolean into a text column: fails everywhere
                (up(a, 7, 1, amt=0.30000000000000004),),  # 17 decimal places: DECIMAL(38, 18) holds them
                (up(a, 9, 1, amt=1.2345678901234567e-05),),  # 21 decimal places: SQL Server would round
                (up(a, 10, 1, ratio=5e-324),),  # a subnormal double
            ),
            fails={
                "sqlite": frozenset({key(up(a, 3, 1)), key(up(a, 5, 1))}),
                "postgresql": frozenset({key(up(a, 5, 1))}),
                "mssql": frozenset(
                    {key(up(a, 2, 1)), key(up(a, 3, 1)), key(up(a, 5, 1)), key(up(a, 9, 1)), key(up(a, 10, 1))}
                ),
            },
            kinds={a: {"flag": Kind.TEXT, "amt": Kind.DECIMAL, "ratio": Kind.FLOAT}},
            kinds_by_dialect={
                "sqlite": {a: {"score": Kind.DECIMAL, "big": Kind.DECIMAL}},
                "postgresql": {a: {"score": Kind.DECIMAL, "big": Kind.DECIMAL}},
                "mssql": {a: {"score": Kind.FLOAT, "big": Kind.DECIMAL}},
            },
        ),
        _deletes("deletes_and_tombstones"),
        _deletes("deletes_with_delete_log", write_delete_log=True),
        _deletes("prefix_schema_delete_log", prefix="crm", schema="des", write_delete_log=True),
        Scenario(
            "reordering_duplicates_redelivery",
            (
                (up(a, 1, 3, name="three"), up(a, 1, 1, name="one"), up(a, 1, 2, name="two"),
                 up(a, 1, 3, name="three"), rm(a, 2, 2), up(a, 2, 1, name="created, then deleted")),
                (up(a, 1, 3, name="three"), up(a, 1, 1, name="one"), up(a, 1, 2, name="two"),
                 up(a, 1, 3, name="three"), rm(a, 2, 2), up(a, 2, 1, name="created, then deleted")),
            ),
            envelope=True,
        ),
        Scenario(
            "several_entities_with_lookups",
            (
                (
                    up(c, 1, 1, fullname="Ada", parentcustomerid=Lookup(record_id(a, 1), a)),
                    up(a, 1, 1, name="Contoso", primarycontactid=_contact(1)),
                    up("opportunity", 1, 1, name="Deal", customerid=Lookup(record_id(c, 1), c), estimatedvalue=99.5),
                    up(c, 2, 1, fullname="Grace", parentcustomerid=None),
                ),
                (rm(c, 2, 2), up(a, 1, 2, name="Contoso", primarycontactid=None), up(c, 1, 2, fullname="Ada L.")),
            ),
            kinds={c: {"parentcustomerid": Kind.GUID, "parentcustomerid_entitytype": Kind.TEXT},
                   "opportunity": {"customerid": Kind.GUID, "estimatedvalue": Kind.FLOAT}},
        ),
    ]
    # Hostile but valid: reserved words as entity and attribute names, long names, values that
    # would be injections if they were ever spliced into SQL text.
    h = "select"
    long_name = "l" + "o" * 58 + "ng"  # 61 characters: within every dialect's limit
    hostile = []
    for i, t in enumerate(HOSTILE_TEXTS, start=1):
        attrs: dict[str, Value] = {"from": t, "order": i, "drop_table": t[::-1], "key": True, "go": -i * 1.5}
        attrs[long_name] = t
        hostile.append(up(h, i, 1, **attrs))
    very_long = "v" * 100  # beyond PostgreSQL's 63
    nul = up(h, 50, 1, **{"from": "nul\x00inside"})
    wide = up(h, 51, 1, **{very_long: "a column name of 100 characters"})
    out.append(
        Scenario(
            "hostile_names_and_values",
            (tuple(hostile), (nul, wide), (up(h, 1, 2, **{"from": "]; DELETE FROM [select]; --"}), rm(h, 2, 2))),
            fails={"postgresql": frozenset({key(nul), key(wide)})},
            kinds={h: {"from": Kind.TEXT, "order": Kind.INTEGER, "key": Kind.BOOLEAN, "go": Kind.FLOAT,
                       long_name: Kind.TEXT}},
        )
    )
    return out


SCENARIOS: tuple[Scenario, ...] = tuple(_scenarios())


# ---------------------------------------------------------------------------------- concurrency
def concurrent_history(seed: int, records: int = 12) -> list[Change]:
    """Creates, updates, deletes and re-creations of a few records, versions increasing per record."""
    rng = random.Random(seed)
    changes: list[Change] = []
    for n in range(records):
        version, alive = 0, False
        for _ in range(rng.randint(3, 8)):
            version += rng.randint(1, 3)
            if alive and rng.random() < 0.35:
                changes.append(rm("account", n, version))
                alive = False
            else:
                attrs: dict[str, Value] = {"name": f"r{n} v{version}", "amount": version, "flag": version % 2 == 0}
                if rng.random() < 0.5:
                    attrs["note"] = f"note {version}"
                changes.append(up("account", n, version, **attrs))
                alive = True
    return changes


def concurrent_writers(
    open_dest: Callable[[Layout], Destination], layout: Layout, *, seed: int, writers: int = 2, redeliveries: int = 6
) -> None:
    """Writers on their own connections deliver one history in different orders and batchings at
    the same time; the result equals applying every change once in version order."""
    changes = concurrent_history(seed)
    rng = random.Random(seed + 1)
    plans: list[list[list[Change]]] = []
    for _ in range(writers):
        order = rng.sample(changes, len(changes))
        batches, i = [], 0
        while i < len(order):
            size = rng.randint(1, 8)
            batches.append(order[i : i + size])
            i += size
        plans.append(batches)
    dests = [open_dest(layout) for _ in range(writers)]
    errors: list[BaseException] = []

    def work(dest: Destination, batches: list[list[Change]]) -> None:
        engine = SyncEngine(dest, backoff_seconds=0.02)
        try:
            for batch in batches:
                bodies = [c.body() for c in batch]
                for attempt in range(redeliveries):
                    try:
                        result = engine.apply_bodies(bodies)
                    except TransientDestinationError:  # Service Bus would redeliver the batch
                        time.sleep(0.05 * (attempt + 1))
                        continue
                    assert result.conserved, result.counts()
                    assert result.failed == 0, [f.reason for f in result.failures]
                    break
                else:
                    raise AssertionError(f"a batch kept failing transiently {redeliveries} times")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d, p)) for d, p in zip(dests, plans, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    model = ReferenceModel()
    model.apply_in_version_order(changes)
    dest = dests[0]
    actual = table_state(table_rows(dest, layout.entity_table("account")))
    problems = list(diff(expected_state(model, "account"), actual))
    assert not problems, "\n".join(problems)
    # A delete that arrives after a newer re-creation is stale and leaves no tombstone, so only this
    # holds in any order: a record whose last change is a delete has that delete's tombstone, and
    # every other tombstone is older than its live row.
    stones = {
        str(canon(r["RecordId"])): int(r["VersionNumber"])  # type: ignore[call-overload]
        for r in table_rows(dest, layout.tombstone_table)
    }
    deleted = model.deleted("account")
    assert {rid: stones.get(rid) for rid in deleted} == deleted
    live = {rid: row["versionnumber"] for rid, row in actual.items()}
    older = {rid: v for rid, v in stones.items() if rid not in deleted and not v < live[rid]}  # type: ignore[operator]
    assert not older, f"tombstones not older than their live rows: {older}"
    for d in dests:
        d.close()
