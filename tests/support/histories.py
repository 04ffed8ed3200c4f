"""Random source histories and hostile deliveries of them, for the property and concurrency tests.

A *history* is what the source did: creates, updates with random attribute subsets (full state each
time), deletes and re-creations of a few records of one or two entities, with strictly increasing
versions per record. A *delivery* is what Service Bus does to it: duplicates, reordering, batch
envelopes (JSON arrays), splitting into engine batches and redelivery of whole batches.

Every attribute keeps one value type throughout (type misfits are tested on their own), so the
reference model's final tables are the only possible right answer.

The generators take a :class:`Chooser`, so the same code runs under hypothesis (``draw``, which
shrinks failures) and under a seeded :class:`random.Random` (the concurrency rounds).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from shared.engine import coltypes
from shared.engine.coltypes import ColumnType
from tests.support.model import Change, Lookup, Value, envelope

T = TypeVar("T")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ENTITIES = ("account", "contact")
LOOKUP_TARGETS = ("account", "contact", "systemuser")

# The column type each attribute (and lookup companion column) must end up with.
COLUMN_TYPES: dict[str, ColumnType] = {
    "name": coltypes.TEXT,
    "description": coltypes.TEXT,
    "revenue": coltypes.FLOAT,
    "numberofemployees": coltypes.INTEGER,
    "donotemail": coltypes.BOOLEAN,
    "primarycontactid": coltypes.GUID,
    "primarycontactid_entitytype": coltypes.TEXT,
}
ATTRIBUTES = ("name", "description", "revenue", "numberofemployees", "donotemail", "primarycontactid")


class Chooser(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...
    def boolean(self) -> bool: ...
    def choice(self, options: Sequence[T]) -> T: ...
    def floating(self) -> float: ...
    def text(self, max_size: int) -> str: ...
    def shuffled(self, items: Sequence[T]) -> list[T]: ...


_TEXT_ALPHABET = st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00")


class DrawChooser:
    """Choices drawn by hypothesis (shrinkable)."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def boolean(self) -> bool:
        return bool(self.draw(st.booleans()))

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))  # type: ignore[no-any-return]

    def floating(self) -> float:
        return float(self.draw(st.floats(allow_nan=False, allow_infinity=False)))

    def text(self, max_size: int) -> str:
        return str(self.draw(st.text(_TEXT_ALPHABET, max_size=max_size)))

    def shuffled(self, items: Sequence[T]) -> list[T]:
        return list(self.draw(st.permutations(items)))


class RandomChooser:
    """Choices from a seeded :class:`random.Random` (reproducible by seed)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def boolean(self) -> bool:
        return self.rng.random() < 0.5

    def choice(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def floating(self) -> float:
        return self.rng.choice([0.0, -0.0, 1.5, 1e308, -2.25e-308, self.rng.uniform(-1e9, 1e9)])

    def text(self, max_size: int) -> str:
        pool = "abcXYZ 'é;\"--ü😀\u200b\\%_"
        return "".join(self.rng.choice(pool) for _ in range(self.rng.randint(0, max_size)))

    def shuffled(self, items: Sequence[T]) -> list[T]:
        out = list(items)
        self.rng.shuffle(out)
        return out


def random_guid(ch: Chooser) -> str:
    return str(uuid.UUID(int=ch.integer(0, 2**128 - 1), version=4))


def distinct_guids(ch: Chooser, n: int) -> list[str]:
    out: list[str] = []
    for _ in range(n):
        guid = uuid.UUID(random_guid(ch))
        while str(guid) in out:
            guid = uuid.UUID(int=(guid.int + 1) % 2**128, version=4)
        out.append(str(guid))
    return out


def wire_case(ch: Chooser, guid: str) -> str:
    """GUIDs may arrive in upper case; the destination stores them lower case."""
    return guid.upper() if ch.integer(0, 3) == 0 else guid


def attribute_value(ch: Chooser, name: str, lookup_ids: Sequence[str]) -> Value:
    if ch.integer(0, 5) == 0:
        return None  # an explicit null: the column stays or becomes NULL
    if name in ("name", "description"):
        return ch.text(12)
    if name == "revenue":
        return ch.floating()
    if name == "numberofemployees":
        return ch.choice([0, 1, -1, 42, INT64_MAX, INT64_MIN, 2**62 + 1, ch.integer(-(2**40), 2**40)])
    if name == "donotemail":
        return ch.boolean()
    if name == "primarycontactid":
        return Lookup(wire_case(ch, ch.choice(lookup_ids)), ch.choice(LOOKUP_TARGETS))
    raise AssertionError(name)


def full_state(ch: Chooser, lookup_ids: Sequence[str]) -> dict[str, Value]:
    """A record's full state: a random subset of the attributes (the others are NULL)."""
    return {a: attribute_value(ch, a, lookup_ids) for a in ATTRIBUTES if ch.boolean()}


def history(
    ch: Chooser,
    *,
    entities: Sequence[str] | None = None,
    max_records: int = 3,
    max_changes: int = 6,
    record_ids: Sequence[str] | None = None,
) -> list[Change]:
    """What the source did, in source order per record."""
    if entities is None:
        entities = ENTITIES[: ch.integer(1, 2)]
    lookup_ids = [random_guid(ch) for _ in range(2)]
    changes: list[Change] = []
    for entity in entities:
        ids = list(record_ids) if record_ids is not None else distinct_guids(ch, ch.integer(1, max_records))
        assert len(set(ids)) == len(ids), "one record id per record: versions are per record"
        for rid in ids:
            version = ch.integer(0, 3)
            exists = False
            for _ in range(ch.integer(1, max_changes)):
                version += ch.integer(1, 3)
                if exists:
                    kind = ch.choice(("update", "update", "delete"))
                else:
                    # A delete of a record never seen (created before the sync) or a (re-)creation.
                    kind = "delete" if ch.integer(0, 5) == 0 else "create"
                attrs = None if kind == "delete" else full_state(ch, lookup_ids)
                changes.append(Change(entity, rid, kind, version, attrs))
                exists = kind != "delete"
    return changes


@dataclass(frozen=True)
class Body:
    """One Service Bus message body and the notifications it carries."""

    text: str
    changes: tuple[Change, ...]


Batch = list[Body]


def delivery(ch: Chooser, changes: Sequence[Change], *, max_batch: int = 6, redeliveries: int = 2) -> list[Batch]:
    """Service Bus at its worst: every change at least once, duplicated, reordered, enveloped, split
    into engine batches, and some whole batches delivered again later."""
    copies = [
        dataclasses.replace(c, record_id=wire_case(ch, c.record_id)) for c in changes for _ in range(ch.integer(1, 2))
    ]
    order = ch.shuffled(copies)
    bodies: list[Body] = []
    i = 0
    while i < len(order):
        k = ch.integer(1, 4)
        chunk = tuple(order[i : i + k])
        i += k
        if len(chunk) == 1 and ch.boolean():
            bodies.append(Body(chunk[0].body(), chunk))
        else:
            bodies.append(Body(envelope(chunk), chunk))
    batches: list[Batch] = []
    i = 0
    while i < len(bodies):
        k = ch.integer(1, max_batch)
        batches.append(bodies[i : i + k])
        i += k
    for _ in range(ch.integer(0, redeliveries)):
        j = ch.integer(0, len(batches) - 1)
        later = ch.integer(j + 1, len(batches))
        batches.insert(later, list(batches[j]))
    return batches


def batch_changes(batch: Batch) -> list[Change]:
    return [c for body in batch for c in body.changes]


def batch_texts(batch: Batch) -> list[str]:
    return [body.text for body in batch]
