"""Where a page's notifications go (dv-source's :class:`~shared.source.dataverse.runner.Sink`):

* :class:`ServiceBusSink` - the app with Service Bus (``ServiceBusConnection`` and
  ``ServiceBusQueueName`` set): the existing publisher (:mod:`shared.publisher`) packs them into
  messages (claim checks for large ones); ``sync_notifications`` applies them like any others.
* :class:`DirectSink` - no Service Bus configured (the embedded default, ``des api``, the demo):
  applied straight through the app's router (the handler the Service Bus function calls).

Both read back from the profile's own destination (:class:`ProfileDestination`): the versions it holds
for deleted ids (a delete must be newer) and its ids in chunks for the re-sync's reconcile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from shared.destinations.inspect import id_versions_after, record_versions
from shared.engine.outcomes import BatchResult
from shared.profiles.fanout import EngineRegistry
from shared.profiles.model import Profile


class ProfileDestination:
    """Reads back from a profile's destination, under its engine's lock (one connection per slot)."""

    def __init__(self, engines: EngineRegistry, profile: Profile) -> None:
        self.engines = engines
        self.profile = profile

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]:
        slot = self.engines.slot(self.profile)
        with slot.lock:
            return record_versions(slot.engine.destination, entity, ids)

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        slot = self.engines.slot(self.profile)
        with slot.lock:
            return id_versions_after(slot.engine.destination, entity, after, limit)


class DestinationReads(Protocol):
    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]: ...

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]: ...


class DirectSink:
    """Applied through the router before ``publish`` returns (parked in a retry blob on a transient
    destination error where Blob storage is configured, raised otherwise: the cursor stays)."""

    def __init__(self, deliver: Callable[[Sequence[bytes]], Any], reads: DestinationReads) -> None:
        self.deliver = deliver
        self.reads = reads

    def publish(self, entity: str, bodies: Sequence[bytes]) -> BatchResult | None:
        result = self.deliver(bodies)
        return result if isinstance(result, BatchResult) else None

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]:
        return self.reads.held(entity, ids)

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        return self.reads.existing(entity, after, limit)


class ServiceBusSink:
    """Accepted by Service Bus before ``publish`` returns (a failed send raises: the cursor stays)."""

    def __init__(self, publisher: Callable[[], Any], reads: DestinationReads) -> None:
        self.publisher = publisher  # -> shared.publisher.NotificationPublisher
        self.reads = reads

    def publish(self, entity: str, bodies: Sequence[bytes]) -> BatchResult | None:
        self.publisher().publish(bodies)
        return None

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]:
        return self.reads.held(entity, ids)

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        return self.reads.existing(entity, after, limit)


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
