"""Compare a destination with the Dataverse simulator's own data (``sim.truth(entity)``).

Every live record of the simulator must be in the destination table at its latest version (the
source's contract version is ``2 * versionnumber``) with the same values (lookups as the id plus
``<name>_entitytype``; money and decimals exactly; multi-select as DES stored it, ``"1,3"``), and no
other row may be there (a deleted record must never come back). Used by the demo and the tests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from shared.destinations import Destination
from shared.destinations.inspect import table_rows
from shared.tools.dataverse_sim import DataverseSimulator
from shared.tools.dataverse_sim.values import Ref


@dataclass
class TableComparison:
    entity: str
    table: str
    expected: int = 0
    found: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, Any, Any]] = field(default_factory=list)  # id, column, got, want

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self, limit: int = 3) -> list[str]:
        out = [f"{self.table}: missing {rid}" for rid in self.missing[:limit]]
        out += [f"{self.table}: unexpected (deleted in Dataverse) {rid}" for rid in self.unexpected[:limit]]
        out += [f"{self.table}: {rid} {col} = {got!r}, Dataverse has {want!r}"
                for rid, col, got, want in self.mismatched[:limit]]  # fmt: skip
        return out


def same(got: Any, want: Any) -> bool:
    """A destination value against the simulator's."""
    if want is None or got is None:
        return got is want
    if isinstance(got, uuid.UUID):
        got = str(got)
    if isinstance(want, bool):
        return bool(got) is want
    if isinstance(want, Decimal | float) and not isinstance(want, bool):
        try:
            return Decimal(str(got)).normalize() == Decimal(str(want)).normalize()
        except ArithmeticError:
            return False
    if isinstance(want, datetime):
        try:
            return (got if isinstance(got, datetime) else datetime.fromisoformat(str(got))) == want
        except ValueError:
            return False
    if isinstance(want, tuple):
        return bool(got == ",".join(map(str, want)))
    if isinstance(want, date):
        return str(got).startswith(want.isoformat())
    if isinstance(want, str) and isinstance(got, str):
        return got == want
    return bool(got == want)


def compare(dest: Destination, sim: DataverseSimulator, entity: str) -> TableComparison:
    table = dest.layout.entity_table(entity)
    out = TableComparison(entity, table)
    truth = sim.truth(entity)
    out.expected = len(truth)
    with dest.transaction() as tx:
        exists = tx.columns(table) is not None
    rows = {str(r["Id"]).lower(): r for r in table_rows(dest, table)} if exists else {}
    out.found = len(rows)
    out.missing = sorted(set(truth) - set(rows))
    out.unexpected = sorted(set(rows) - set(truth))
    for rid, want in truth.items():
        got = rows.get(rid)
        if got is None:
            continue
        for name, value in want.items():
            if name == "versionnumber":
                if got.get(name) != 2 * value:
                    out.mismatched.append((rid, name, got.get(name), 2 * value))
            elif isinstance(value, Ref):
                if str(got.get(name)).lower() != value.id or got.get(f"{name}_entitytype") != value.entity:
                    out.mismatched.append((rid, name, got.get(name), value.id))
            elif not same(got.get(name), value):
                out.mismatched.append((rid, name, got.get(name), value))
    return out
