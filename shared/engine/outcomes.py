"""What became of each notification: applied, stale, failed or unprocessable. Nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from shared.contract.models import Notification, changed_on_iso
from shared.contract.parse import Unprocessable
from shared.engine import failure_schema as F


class Outcome(str, Enum):
    """A notification's outcome; every count goes through :meth:`BatchResult.count`."""

    APPLIED = "applied"
    STALE = "stale"
    FAILED = "failed"
    UNPROCESSABLE = "unprocessable"


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """A notification the destination rejected, with the reason (DES's failure-log line)."""

    notification: Notification
    reason: str

    @property
    def entity(self) -> str:
        return self.notification.entity

    @property
    def record_id(self) -> str:
        return self.notification.recordId.lower()

    def log_row(self) -> dict[str, str]:
        n = self.notification
        return {
            F.ENTITY: n.entity,
            F.RECORD_ID: n.recordId.lower(),
            F.NOTIFICATION_TIME: changed_on_iso(n.changedOn),
            F.CHANGE_TYPE: n.changeType.value,
            F.VERSION: str(n.version),
            F.FAILURE_REASON: self.reason,
        }


@dataclass(slots=True)
class EntityCounts:
    received: int = 0
    applied: int = 0
    stale: int = 0
    failed: int = 0
    unprocessable: int = 0
    last_changed_on: datetime | None = None  # changedOn of the newest applied notification

    def add(self, other: EntityCounts) -> None:
        self.received += other.received
        self.applied += other.applied
        self.stale += other.stale
        self.failed += other.failed
        self.unprocessable += other.unprocessable
        if other.last_changed_on and (
            self.last_changed_on is None or other.last_changed_on > self.last_changed_on
        ):
            self.last_changed_on = other.last_changed_on


@dataclass(slots=True)
class BatchResult:
    received: int = 0
    applied: int = 0
    stale: int = 0
    failed: int = 0
    unprocessable: int = 0
    failures: list[RecordFailure] = field(default_factory=list)
    unprocessables: list[Unprocessable] = field(default_factory=list)
    per_entity: dict[str, EntityCounts] = field(default_factory=dict)

    def entity(self, name: str) -> EntityCounts:
        counts = self.per_entity.get(name)
        if counts is None:
            counts = self.per_entity[name] = EntityCounts()
        return counts

    def count(self, outcome: Outcome, entity: str | None, n: int = 1, *, received: bool = False) -> None:
        """``n`` notifications of ``entity`` (None: not known) had ``outcome``; ``received``: they are
        received by this result too (the engine counts what it received when the batch arrives)."""
        field_name = outcome.value
        setattr(self, field_name, getattr(self, field_name) + n)
        if received:
            self.received += n
        if entity:
            counts = self.entity(entity)
            setattr(counts, field_name, getattr(counts, field_name) + n)
            if received:
                counts.received += n

    def receive(self, entity: str, n: int = 1) -> None:
        """``n`` notifications of ``entity`` are in the per-entity received count (the batch total is
        set when the result is made); their outcomes are counted with :meth:`count`."""
        self.entity(entity).received += n

    def add_unprocessable(self, items: Iterable[Unprocessable]) -> None:
        """Count bodies that fail the contract (received and unprocessable) and keep them."""
        for u in items:
            self.count(Outcome.UNPROCESSABLE, u.entity, received=True)
            self.unprocessables.append(u)

    @property
    def conserved(self) -> bool:
        """The conservation law: every notification received has exactly one outcome."""
        return self.received == self.applied + self.stale + self.failed + self.unprocessable

    def merge(self, other: BatchResult) -> None:
        self.received += other.received
        self.applied += other.applied
        self.stale += other.stale
        self.failed += other.failed
        self.unprocessable += other.unprocessable
        self.failures.extend(other.failures)
        self.unprocessables.extend(other.unprocessables)
        for name, counts in other.per_entity.items():
            self.entity(name).add(counts)

    def counts(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "applied": self.applied,
            "stale": self.stale,
            "failed": self.failed,
            "unprocessable": self.unprocessable,
        }
