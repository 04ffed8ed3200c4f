"""A reference model of the apply semantics, in plain Python (no database, no engine code).

It states what "correct" means in issue 2, independently of the engine:

* the latest ``version`` per (entity, recordId) wins;
* a delete removes the row and leaves a tombstone carrying its version;
* an upsert (create or update) whose version is not newer than the row's or the tombstone's is
  stale, duplicates included; a strictly newer upsert re-creates a deleted record;
* within one batch the changes collapse to the newest per record first (the reduction buffer), so
  the older ones of a batch are stale;
* an upsert carries the full record state: an attribute it does not mention is NULL;
* a lookup ``{"id", "logicalName"}`` becomes the columns ``<attr>`` (the id, lower case) and
  ``<attr>_entitytype``.

The model also canonicalises values read back from SQLite or PostgreSQL (``canon``) so tests can
compare a destination table with :meth:`ReferenceModel.expected_rows` with ``==``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

LOOKUP_SUFFIX = "_entitytype"
SYSTEM_COLUMNS = ("Id", "SinkCreatedOn", "SinkModifiedOn", "versionnumber")

Json = Any  # a value that json.dumps accepts


@dataclass(frozen=True)
class Lookup:
    """A lookup value in a generated history (the wire form is ``{"id", "logicalName"}``)."""

    id: str
    logical_name: str

    def wire(self) -> dict[str, str]:
        return {"id": self.id, "logicalName": self.logical_name}


Value = None | bool | int | float | str | Lookup


@dataclass(frozen=True)
class Change:
    """One source event: a create, update or delete of one record at one version."""

    entity: str
    record_id: str  # as sent on the wire (any case)
    change_type: str  # "create" | "update" | "delete"
    version: int
    attributes: Mapping[str, Value] | None = None
    organization_id: str = "00000000-0000-4000-8000-000000000001"
    changed_on: str = "2026-11-21T10:00:00Z"

    @property
    def key(self) -> tuple[str, str]:
        return (self.entity, self.record_id.lower())

    @property
    def is_delete(self) -> bool:
        return self.change_type == "delete"

    def wire(self) -> dict[str, Json]:
        """The notification as a JSON object of contract v1."""
        body: dict[str, Json] = {
            "schemaVersion": 1,
            "organizationId": self.organization_id,
            "entity": self.entity,
            "recordId": self.record_id,
            "changeType": self.change_type,
            "version": self.version,
            "changedOn": self.changed_on,
        }
        if self.attributes is not None:
            body["attributes"] = {k: (v.wire() if isinstance(v, Lookup) else v) for k, v in self.attributes.items()}
        return body

    def body(self) -> str:
        return json.dumps(self.wire(), ensure_ascii=False)


def envelope(changes: Iterable[Change]) -> str:
    """A batch envelope: one message body holding a JSON array of notifications."""
    return json.dumps([c.wire() for c in changes], ensure_ascii=False)


def columns_of(attributes: Mapping[str, Value]) -> dict[str, Value]:
    """The destination columns an upsert writes, lookups expanded (``None`` for NULL)."""
    out: dict[str, Value] = {}
    for name, value in attributes.items():
        if isinstance(value, Lookup):
            out[name] = value.id.lower()
            out[name + LOOKUP_SUFFIX] = value.logical_name
        else:
            out[name] = value
    return out


@dataclass
class BatchCounts:
    applied: int = 0
    stale: int = 0


@dataclass
class _Row:
    version: int
    columns: dict[str, Value]


@dataclass
class ReferenceModel:
    """The destination as it must be after the batches given to :meth:`apply_batch`."""

    rows: dict[tuple[str, str], _Row] = field(default_factory=dict)
    tombstones: dict[tuple[str, str], int] = field(default_factory=dict)
    entities: set[str] = field(default_factory=set)
    # Every column a non-null value was ever sent for, per entity (the most the destination may have).
    possible_columns: dict[str, set[str]] = field(default_factory=dict)

    def _newer(self, c: Change) -> bool:
        row = self.rows.get(c.key)
        # A delete wins a tie with the live row's version, whatever the batching.
        if row is not None and (c.version < row.version or (c.version == row.version and not c.is_delete)):
            return False
        dead = self.tombstones.get(c.key)
        return dead is None or c.version > dead

    def apply_one(self, c: Change) -> bool:
        """Apply one change on its own; whether it took effect (else it is stale)."""
        self.entities.add(c.entity)
        if not c.is_delete:
            cols = self.possible_columns.setdefault(c.entity, set())
            cols.update(k for k, v in columns_of(c.attributes or {}).items() if v is not None)
        if not self._newer(c):
            return False
        if c.is_delete:
            self.rows.pop(c.key, None)
            self.tombstones[c.key] = c.version
        else:
            self.rows[c.key] = _Row(c.version, columns_of(c.attributes or {}))
        return True

    def apply_batch(self, changes: Iterable[Change]) -> BatchCounts:
        """One engine batch: collapse to the newest change per record, then apply the winners."""
        counts = BatchCounts()
        best: dict[tuple[str, str], Change] = {}
        for c in changes:
            self.entities.add(c.entity)
            if not c.is_delete:
                cols = self.possible_columns.setdefault(c.entity, set())
                cols.update(k for k, v in columns_of(c.attributes or {}).items() if v is not None)
            cur = best.get(c.key)
            if cur is None:
                best[c.key] = c
            else:
                # Equal versions are one source event delivered twice (either copy may win), or a
                # delete and an update of the same version: the delete wins.
                if (c.version, c.is_delete) > (cur.version, cur.is_delete):
                    best[c.key] = c
                counts.stale += 1
        for c in best.values():
            if self.apply_one(c):
                counts.applied += 1
            else:
                counts.stale += 1
        return counts

    def apply_in_version_order(self, changes: Iterable[Change]) -> None:
        """The serial truth concurrent writers must reach: every change once, oldest first."""
        unique = {(c.key, c.version): c for c in changes}
        for c in sorted(unique.values(), key=lambda c: (c.version, c.is_delete)):
            self.apply_one(c)

    # ------------------------------------------------------------------------------ expectations
    def expected_rows(self, entity: str) -> dict[str, dict[str, Value]]:
        """``{record id (lower case): {"versionnumber": v, column: value, ...}}`` for one entity.

        Columns the row's state does not mention are absent here: they must read back as NULL.
        """
        out: dict[str, dict[str, Value]] = {}
        for (ent, rid), row in self.rows.items():
            if ent == entity:
                out[rid] = {"versionnumber": row.version, **row.columns}
        return out

    def deleted(self, entity: str) -> dict[str, int]:
        """Record ids whose latest change is a delete, with that delete's version."""
        return {rid: v for (ent, rid), v in self.tombstones.items() if ent == entity and (ent, rid) not in self.rows}


def canon(value: object) -> Value:
    """A value read back from SQLite or PostgreSQL in the model's terms (compare with ``==``).

    Booleans become 0/1 (SQLite has no boolean type), UUIDs their lower-case text, and exact
    numerics an ``int`` when integral, else a ``float`` (the double they were written from).
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if value is None or isinstance(value, int | float | str):
        return value
    raise TypeError(f"unexpected value read back: {value!r}")


def canon_expected(value: Value) -> Value:
    return int(value) if isinstance(value, bool) else value


def table_state(rows: Iterable[Mapping[str, object]]) -> dict[str, dict[str, Value]]:
    """A destination table as ``{id: {"versionnumber": v, column: value}}``, NULL columns left out."""
    out: dict[str, dict[str, Value]] = {}
    for row in rows:
        rid = canon(row["Id"])
        assert isinstance(rid, str)
        assert row["SinkCreatedOn"] is not None
        assert row["SinkModifiedOn"] is not None
        out[rid] = {k: canon(v) for k, v in row.items() if k not in SYSTEM_COLUMNS[:3] and v is not None}
    return out


def expected_state(model: ReferenceModel, entity: str) -> dict[str, dict[str, Value]]:
    """:meth:`ReferenceModel.expected_rows` with NULLs left out and booleans as 0/1."""
    return {
        rid: {k: canon_expected(v) for k, v in cols.items() if v is not None}
        for rid, cols in model.expected_rows(entity).items()
    }


def diff(expected: Mapping[str, Mapping[str, Value]], actual: Mapping[str, Mapping[str, Value]]) -> Iterator[str]:
    """Readable differences between two table states (empty when equal)."""
    for rid in sorted(expected.keys() | actual.keys()):
        e, a = expected.get(rid), actual.get(rid)
        if e is None:
            yield f"{rid}: unexpected row {dict(a or {})}"
        elif a is None:
            yield f"{rid}: missing row, expected {dict(e)}"
        elif e != a:
            cols = sorted(e.keys() | a.keys())
            yield f"{rid}: " + ", ".join(
                f"{c}: expected {e.get(c)!r} got {a.get(c)!r}" for c in cols if e.get(c) != a.get(c)
            )
