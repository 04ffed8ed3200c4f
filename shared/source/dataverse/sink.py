"""The engine-direct sink (``des sync``): a page's notifications applied straight to a destination.

The function app publishes to Service Bus instead (the lead's wiring); both satisfy
:class:`shared.source.dataverse.runner.Sink`.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.destinations.inspect import id_versions_after, record_versions
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.metrics import MetricsSink
from shared.rejects import RejectFiles


class EngineSink:
    """Applies bodies through :class:`SyncEngine`; failures and unprocessables go to the reject files.

    ``publish`` returns after the destination committed (the engine retries transient errors and
    then raises :class:`~shared.destinations.TransientDestinationError`: the cursor stays put).
    """

    def __init__(
        self,
        engine: SyncEngine,
        *,
        rejects: RejectFiles | None = None,
        metrics: MetricsSink | None = None,
        profile_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.rejects = rejects
        self.metrics = metrics
        self.profile_id = profile_id
        self.total = BatchResult()

    def publish(self, entity: str, bodies: Sequence[bytes]) -> BatchResult:
        result = self.engine.apply_bodies(bodies)
        if self.rejects is not None:
            self.rejects.failures(result.failures)
            self.rejects.unprocessable(result.unprocessables)
        if self.metrics is not None and self.profile_id is not None:
            self.metrics.record(self.profile_id, result)
        kept = BatchResult()
        kept.merge(result)
        result.failures.clear()
        result.unprocessables.clear()
        self.total.merge(result)
        return kept

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]:
        return record_versions(self.engine.destination, entity, ids)

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        return id_versions_after(self.engine.destination, entity, after, limit)
