"""Where a page's notifications go (dv-source's :class:`~shared.source.dataverse.runner.Sink`):

* :class:`ServiceBusSink` - the app with Service Bus (``ServiceBusConnection`` and
  ``ServiceBusQueueName`` set): the existing publisher (:mod:`shared.publisher`) packs them into
  messages (claim checks for large ones); ``sync_notifications`` applies them like any others.
* :class:`DirectSink` - no Service Bus configured (the embedded default, ``des api``, the demo):
  applied straight through the app's router (the handler the Service Bus function calls).

Both read the destination's record ids for the re-sync's reconcile from the profile's own destination.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from shared.destinations.inspect import table_rows
from shared.engine.outcomes import BatchResult
from shared.profiles.fanout import EngineRegistry
from shared.profiles.model import Profile


def destination_ids(engines: EngineRegistry, profile: Profile, entity: str) -> set[str]:
    """Record ids (lower case) the profile's destination holds for ``entity``."""
    slot = engines.slot(profile)
    with slot.lock:
        dest = slot.engine.destination
        table = dest.layout.entity_table(entity)
        with dest.transaction() as tx:
            if tx.columns(table) is None:
                return set()
        return {str(row["Id"]).lower() for row in table_rows(dest, table)}


class DirectSink:
    """Applied through the router before ``publish`` returns (parked in a retry blob on a transient
    destination error where Blob storage is configured, raised otherwise: the cursor stays)."""

    def __init__(self, deliver: Callable[[Sequence[bytes]], Any], ids: Callable[[str], set[str]]) -> None:
        self.deliver = deliver
        self.ids = ids

    def publish(self, entity: str, bodies: Sequence[bytes]) -> BatchResult | None:
        result = self.deliver(bodies)
        return result if isinstance(result, BatchResult) else None

    def existing_ids(self, entity: str) -> set[str]:
        return self.ids(entity)


class ServiceBusSink:
    """Accepted by Service Bus before ``publish`` returns (a failed send raises: the cursor stays)."""

    def __init__(self, publisher: Callable[[], Any], ids: Callable[[str], set[str]]) -> None:
        self.publisher = publisher  # -> shared.publisher.NotificationPublisher
        self.ids = ids

    def publish(self, entity: str, bodies: Sequence[bytes]) -> BatchResult | None:
        self.publisher().publish(bodies)
        return None

    def existing_ids(self, entity: str) -> set[str]:
        return self.ids(entity)


class LazyPublisher:
    """One Service Bus sender per process, opened on first publish."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self._value: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._value is None:
                self._value = self.make()
            return self._value
