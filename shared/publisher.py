"""Sending notifications to Service Bus for a source: packed into few messages, large ones by claim check.

Many notifications travel in one message as a batch envelope (a JSON array: the contract's
message body), filled up to the message size limit of the tier (256 KB Standard, 1 MB or up to
100 MB Premium; ``DES_SERVICEBUS_MAX_MESSAGE_BYTES``). Messages go out in
``ServiceBusMessageBatch``es through a ``ServiceBusSender``. A notification that does not fit in a
message on its own is uploaded, encrypted, to ``data/`` and replaced by a small reference with a
``payloadRef`` (docs/storage.md); the processor resolves it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.exceptions import MessageSizeExceededError

from shared.config import SERVICE_BUS_CONNECTION, SERVICE_BUS_NAMESPACE, ServiceBusConfig
from shared.contract import exactjson
from shared.contract.models import Notification, notification_doc
from shared.storage.blobs import PayloadStore

log = logging.getLogger(__name__)

STANDARD_MAX_MESSAGE_BYTES = 256 * 1024
PREMIUM_MAX_MESSAGE_BYTES = 1024 * 1024
PREMIUM_LARGE_MAX_MESSAGE_BYTES = 100 * 1024 * 1024
# Room left in each message for the AMQP header, properties and framing around the body.
MESSAGE_OVERHEAD_BYTES = 2048
REFERENCE_FIELDS = ("schemaVersion", "organizationId", "entity", "recordId", "changeType", "version", "changedOn")


class PublishError(RuntimeError):
    """A notification could not be sent (too large and no blob storage, or not a notification at all)."""


class MessageSender(Protocol):
    """The part of ``azure.servicebus.ServiceBusSender`` the publisher uses."""

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch: ...

    def send_messages(self, message: ServiceBusMessageBatch, **kwargs: Any) -> None: ...


@dataclass
class PublishReport:
    notifications: int = 0
    messages: int = 0
    sends: int = 0  # send_messages calls (one ServiceBusMessageBatch each)
    spilled: int = 0  # notifications sent as a payloadRef to a blob in data/
    body_bytes: int = 0
    seconds: float = 0.0


def _encode(item: Mapping[str, Any] | Notification | str | bytes) -> tuple[bytes, Mapping[str, Any] | None]:
    """(compact JSON, the mapping when we have it)."""
    if isinstance(item, Notification):
        doc: Mapping[str, Any] = notification_doc(item)  # exact decimals written as the numbers they are
        return exactjson.dumps(doc, separators=exactjson.COMPACT).encode(), doc
    if isinstance(item, Mapping):
        return exactjson.dumps(item, separators=exactjson.COMPACT).encode(), item
    if isinstance(item, str):
        return item.encode(), None
    if isinstance(item, bytes | bytearray):
        return bytes(item), None
    raise PublishError(f"cannot publish a {type(item).__name__}: give notification dicts, models or JSON")


class NotificationPublisher:
    """Packs notifications into Service Bus messages up to ``max_message_bytes`` and sends them."""

    def __init__(
        self,
        sender: MessageSender,
        payloads: PayloadStore | None = None,
        *,
        max_message_bytes: int = STANDARD_MAX_MESSAGE_BYTES,
        overhead_bytes: int = MESSAGE_OVERHEAD_BYTES,
    ) -> None:
        if max_message_bytes <= overhead_bytes + 512:
            raise ValueError(f"max_message_bytes {max_message_bytes} leaves no room for a body")
        self.sender = sender
        self.payloads = payloads
        self.max_message_bytes = max_message_bytes
        self.body_budget = max_message_bytes - overhead_bytes

    # ------------------------------------------------------------------------------ packing
    def _reference(self, body: bytes, doc: Mapping[str, Any] | None) -> bytes:
        """Spill ``body`` to data/ and return the small reference notification that replaces it."""
        if self.payloads is None:
            raise PublishError(
                f"a notification of {len(body)} bytes does not fit in a {self.max_message_bytes}-byte message "
                "and no blob storage is configured for claim checks"
            )
        if doc is None:
            try:
                doc = json.loads(body)
            except ValueError as exc:
                raise PublishError(f"cannot publish a body that is not JSON: {exc}") from exc
        if not isinstance(doc, Mapping) or any(f not in doc for f in REFERENCE_FIELDS):
            raise PublishError(f"a body of {len(body)} bytes is too large and is not one notification")
        stored = self.payloads.put(body)
        ref = {f: doc[f] for f in REFERENCE_FIELDS}
        ref["payloadRef"] = {"blob": stored.blob, "size": stored.size, "sha256": stored.sha256}
        return json.dumps(ref, ensure_ascii=False, separators=(",", ":")).encode()

    def envelopes(
        self,
        notifications: Iterable[Mapping[str, Any] | Notification | str | bytes],
        report: PublishReport,
        budget: int | None = None,
    ) -> Iterator[bytes]:
        """Message bodies: JSON arrays of notifications, each within the body budget."""
        budget = budget or self.body_budget
        parts: list[bytes] = []
        size = 2  # the brackets
        for item in notifications:
            body, doc = _encode(item)
            report.notifications += 1
            if len(body) + 2 > budget:
                body = self._reference(body, doc)
                report.spilled += 1
            extra = len(body) + (1 if parts else 0)
            if parts and size + extra > budget:
                yield b"[" + b",".join(parts) + b"]"
                parts, size = [], 2
                extra = len(body)
            parts.append(body)
            size += extra
        if parts:
            yield b"[" + b",".join(parts) + b"]"

    # ------------------------------------------------------------------------------ sending
    def _new_batch(self) -> ServiceBusMessageBatch:
        try:
            return self.sender.create_message_batch(max_size_in_bytes=self.max_message_bytes)
        except ValueError:
            # The link allows less than configured (a Standard namespace with a Premium setting).
            return self.sender.create_message_batch()

    def publish(self, notifications: Iterable[Mapping[str, Any] | Notification | str | bytes]) -> PublishReport:
        """Send every notification; returns counts. Raises what the sender raises (nothing is half-sent
        silently: a failed send raises, and re-publishing is safe because the engine is idempotent)."""
        report = PublishReport()
        started = time.perf_counter()
        batch = self._new_batch()
        budget = self.body_budget
        if batch.max_size_in_bytes < self.max_message_bytes:
            log.warning(
                "the Service Bus link allows %s-byte batches, less than the configured %s: packing for the link",
                batch.max_size_in_bytes, self.max_message_bytes,
            )
            budget = batch.max_size_in_bytes - (self.max_message_bytes - self.body_budget)
        for body in self.envelopes(notifications, report, budget):
            message = ServiceBusMessage(body, content_type="application/json")
            try:
                batch.add_message(message)
            except MessageSizeExceededError:
                if len(batch) == 0:
                    raise PublishError(
                        f"a message body of {len(body)} bytes does not fit in a batch of {batch.max_size_in_bytes} "
                        "bytes: raise the overhead allowance or lower max_message_bytes"
                    ) from None
                self.sender.send_messages(batch)
                report.sends += 1
                batch = self._new_batch()
                batch.add_message(message)
            report.messages += 1
            report.body_bytes += len(body)
        if len(batch):
            self.sender.send_messages(batch)
            report.sends += 1
        report.seconds = time.perf_counter() - started
        log.info(
            "published %s notifications in %s messages (%s sends, %s by claim check)",
            report.notifications, report.messages, report.sends, report.spilled,
        )
        return report


def open_client(config: ServiceBusConfig, credential: Any = None) -> Any:
    """A ``ServiceBusClient``: the connection string (the emulator's included), or identity-based
    (``ServiceBusConnection__fullyQualifiedNamespace``) with managed identity. Use it in ``with``,
    and ``client.get_queue_sender(queue)`` for the sender."""
    from azure.servicebus import ServiceBusClient

    if config.connection_string:
        return ServiceBusClient.from_connection_string(config.connection_string)
    if not config.namespace:
        raise PublishError(
            f"setting {SERVICE_BUS_CONNECTION} (a connection string) or {SERVICE_BUS_NAMESPACE} (managed identity) "
            "is required"
        )
    if credential is None:  # the connection's own identity settings (shared/identity.py)
        from shared.config import IdentityConfig
        from shared.identity import build_credential

        credential = build_credential(IdentityConfig.from_env(os.environ).service_bus)
    return ServiceBusClient(config.namespace, credential)


class _CollectingBatch(ServiceBusMessageBatch):
    """A real ServiceBusMessageBatch (its size accounting) that also keeps the bodies added."""

    def __init__(self, max_size_in_bytes: int) -> None:
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.bodies: list[bytes] = []

    def add_message(self, message: Any) -> None:
        super().add_message(message)
        self.bodies.append(b"".join(message.body))


class InMemorySender:
    """A local stand-in for a queue sender where no Service Bus runs (the demo and the storage benchmark).

    Batches are real ``ServiceBusMessageBatch``es; what is "sent" is kept in memory, in order, as the
    message bodies the Service Bus trigger would receive.
    """

    def __init__(self, max_size_in_bytes: int = STANDARD_MAX_MESSAGE_BYTES) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.bodies: list[bytes] = []
        self.sends = 0

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        return _CollectingBatch(min(max_size_in_bytes or self.max_size_in_bytes, self.max_size_in_bytes))

    def send_messages(self, message: ServiceBusMessageBatch, **kwargs: Any) -> None:
        if not isinstance(message, _CollectingBatch):
            raise TypeError("InMemorySender sends only batches it created")
        self.bodies.extend(message.bodies)
        self.sends += 1
