"""Per-profile, per-entity sync counters: the interface the sync paths report every outcome through.

The SQL implementation lives with the profile store (issue 4); the sync paths (the Service Bus
handler, the retry processor) only know this protocol.

Counting rules (they keep the conservation law true in the store at all times):

- ``result`` reports notifications whose outcome is final: applied, stale, failed, unprocessable.
  ``result.received`` counts exactly those, so ``result.conserved`` holds for every call.
- ``pending_retry`` is the change of the number of notifications parked in retry blobs: a delivery
  that hit a transient destination error reports ``+k`` for the ``k`` notifications it parked
  (they are *not* in ``result``); when a retry blob resolves, its ``k`` notifications are reported in
  ``result`` (applied, stale, failed after the last attempt, unprocessable for a missing payload)
  with ``pending_retry=-k``.

Summed over all calls: received = applied + stale + failed + unprocessable, and the pending gauge
is what is still in ``retry/``. (Everything delivered = received + pending.) The pending gauge is
advisory across crashes between a blob write and the metrics call; the retry blobs' own metadata
(``shared.storage.blobs.RetryStore.pending``) is the exact figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from shared.engine.outcomes import BatchResult

if TYPE_CHECKING:
    from shared.store.base import MetricsEntry


class MetricsSink(Protocol):
    """Where outcome counts go (per profile; per entity through ``result.per_entity``)."""

    def record(self, profile_id: str, result: BatchResult, *, pending_retry: int = 0) -> None:
        """Add one processed delivery's final outcomes and the change of the pending-retry gauge."""

    def record_batch(self, entries: Sequence[MetricsEntry]) -> None:
        """Add many profiles' outcomes of one batch (a router's one call per batch; entries made by
        :class:`~shared.store.base.MetricsEntry`)."""
