"""Helpers for the blob-path tests: notifications, and a metrics recorder.

``RecordedMetrics`` is a TEST DOUBLE for the metrics store (issue 4 implements ``MetricsSink`` on
SQL): it keeps the calls in memory so a test can check the conservation law across them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.engine.outcomes import BatchResult, Outcome
from shared.store.base import PROFILE_LEVEL, MetricsEntry

ORG = "11111111-1111-1111-1111-111111111111"


def rid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def note(i: int, version: int, change: str = "update", entity: str = "account", **attrs: object) -> dict[str, Any]:
    n: dict[str, Any] = {
        "schemaVersion": 1,
        "organizationId": ORG,
        "entity": entity,
        "recordId": rid(i),
        "changeType": change,
        "version": version,
        "changedOn": "2026-11-21T10:00:00Z",
    }
    if change != "delete":
        n["attributes"] = attrs
    return n


@dataclass
class RecordedMetrics:
    """Test double for the SQL metrics store: sums what the sync paths report."""

    totals: BatchResult = field(default_factory=BatchResult)
    pending: int = 0
    calls: int = 0
    skipped: int = 0
    fail_next: int = 0  # raise on the next N calls (a process dying right there)

    def record(self, profile_id: str, result: BatchResult, *, pending_retry: int = 0) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the process died here (simulated by the test)")
        assert result.conserved, result.counts()
        self.calls += 1
        self.totals.merge(
            BatchResult(
                received=result.received, applied=result.applied, stale=result.stale, failed=result.failed,
                unprocessable=result.unprocessable, per_entity=dict(result.per_entity),
            )
        )
        self.pending += pending_retry

    def record_batch(self, entries: Sequence[MetricsEntry]) -> None:
        """The routers' one call per batch: every profile's (and the unrouted bucket's) entries."""
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the process died here (simulated by the test)")
        self.calls += 1
        for e in entries:
            for entity, d in e.entities.items():
                self.pending += d.pending_retry
                self.skipped += d.skipped
                received = d.received - d.skipped  # skipped notifications have no outcome here
                assert received == d.applied + d.stale + d.failed + d.unprocessable, (e.profile_id, entity, d)
                if entity == PROFILE_LEVEL:
                    continue
                self.totals.received += received
                for outcome, n in ((Outcome.APPLIED, d.applied), (Outcome.STALE, d.stale),
                                   (Outcome.FAILED, d.failed), (Outcome.UNPROCESSABLE, d.unprocessable)):  # fmt: skip
                    if n:
                        self.totals.count(outcome, entity, n)
                self.totals.receive(entity, received)

    def conserved(self) -> bool:
        t = self.totals
        return t.received == t.applied + t.stale + t.failed + t.unprocessable and self.pending >= 0
