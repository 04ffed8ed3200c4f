"""The publisher packs notifications into Service Bus messages within the size limit, up to the SDK boundary.

Real ``ServiceBusMessage``/``ServiceBusMessageBatch`` objects (their AMQP size accounting included);
``RecordingSender`` is a TEST DOUBLE standing in only for the broker connection (no Service Bus runs
here): it hands out real batches and records what would be sent. The suite against a real namespace
or the emulator is tests/gated/test_servicebus_live.py; claim checks against Azurite are in
tests/integration/test_storage_claimcheck.py.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch

from shared.config import DestinationConfig
from shared.contract.parse import ParsedBatch, parse_body
from shared.handlers import handle_notifications
from shared.publisher import (
    PREMIUM_MAX_MESSAGE_BYTES,
    STANDARD_MAX_MESSAGE_BYTES,
    NotificationPublisher,
    PublishError,
)
from shared.root import single_destination_root
from tests.support.metrics import note

pytestmark = pytest.mark.unit


class RecordingBatch(ServiceBusMessageBatch):
    """A real ServiceBusMessageBatch that also remembers the messages added (public API only)."""

    def __init__(self, max_size_in_bytes: int | None = None) -> None:
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.messages: list[ServiceBusMessage] = []

    def add_message(self, message: Any) -> None:
        super().add_message(message)  # raises MessageSizeExceededError when full
        self.messages.append(message)


class RecordingSender:
    """TEST DOUBLE for ``ServiceBusSender``: the broker does not run here; the batches are real."""

    def __init__(self, link_max: int = STANDARD_MAX_MESSAGE_BYTES) -> None:
        self.link_max = link_max
        self.sent: list[RecordingBatch] = []

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> RecordingBatch:
        if max_size_in_bytes and max_size_in_bytes > self.link_max:
            raise ValueError(f"Max message size: {max_size_in_bytes} is too large")  # as the SDK says
        return RecordingBatch(max_size_in_bytes or self.link_max)

    def send_messages(self, message: ServiceBusMessageBatch, **kwargs: Any) -> None:
        assert isinstance(message, RecordingBatch)  # only batches this sender made
        self.sent.append(message)

    def bodies(self) -> list[bytes]:
        return [b"".join(m.body) for batch in self.sent for m in batch.messages]


def stream(n: int, width: int = 10) -> list[dict[str, Any]]:
    return [
        note(i, 1 + i, "create", name=f"Company {i} - Ünïcode", revenue=i * 1.5, employees=i, code="x" * width)
        for i in range(n)
    ]


def test_packs_many_notifications_per_message_within_the_limit() -> None:
    sender = RecordingSender()
    notifications = stream(3000)
    report = NotificationPublisher(sender).publish(notifications)
    bodies = sender.bodies()
    assert report.notifications == 3000
    assert report.messages == len(bodies)
    assert 3 <= report.messages <= 10  # ~300 bytes each: ~800 per 256 KB message, not 3000 messages
    assert report.spilled == 0
    assert all(len(b) <= STANDARD_MAX_MESSAGE_BYTES for b in bodies)
    assert max(len(b) for b in bodies) > STANDARD_MAX_MESSAGE_BYTES * 0.9  # filled, not half empty
    # Every body is a contract batch envelope; every notification arrives once, in order.
    out = ParsedBatch()
    for body in bodies:
        assert body.startswith(b"[")
        parse_body(body, out)
    assert out.unprocessable == []
    assert [n.recordId for n in out.notifications] == [n["recordId"] for n in notifications]
    assert report.sends == len(sender.sent) >= 1


def test_a_larger_premium_limit_means_fewer_messages() -> None:
    standard, premium = RecordingSender(), RecordingSender(link_max=PREMIUM_MAX_MESSAGE_BYTES)
    NotificationPublisher(standard).publish(stream(3000))
    NotificationPublisher(premium, max_message_bytes=PREMIUM_MAX_MESSAGE_BYTES).publish(stream(3000))
    assert len(premium.bodies()) < len(standard.bodies())
    assert max(len(b) for b in premium.bodies()) > STANDARD_MAX_MESSAGE_BYTES


def test_a_configured_limit_above_the_links_falls_back_to_the_link() -> None:
    sender = RecordingSender(link_max=STANDARD_MAX_MESSAGE_BYTES)
    report = NotificationPublisher(sender, max_message_bytes=PREMIUM_MAX_MESSAGE_BYTES).publish(stream(5000))
    # Configured for Premium, connected to a Standard namespace: packed for what the link takes.
    assert report.notifications == 5000
    assert report.spilled == 0
    assert all(len(b) <= STANDARD_MAX_MESSAGE_BYTES for b in sender.bodies())


def test_batches_are_sent_when_full() -> None:
    sender = RecordingSender(link_max=16 * 1024)
    report = NotificationPublisher(sender, max_message_bytes=16 * 1024).publish(stream(500))
    assert report.sends == len(sender.sent) > 5
    assert sum(len(b.messages) for b in sender.sent) == report.messages


def test_too_large_without_blob_storage_is_a_clear_error() -> None:
    sender = RecordingSender()
    big = note(1, 1, "create", description="y" * (STANDARD_MAX_MESSAGE_BYTES + 10))
    with pytest.raises(PublishError, match="does not fit in a 262144-byte message and no blob storage"):
        NotificationPublisher(sender).publish([note(2, 1, "create", name="ok"), big])


def test_only_notifications_are_accepted() -> None:
    with pytest.raises(PublishError, match="cannot publish a int"):
        NotificationPublisher(RecordingSender()).publish([42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="no room"):
        NotificationPublisher(RecordingSender(), max_message_bytes=1024)


def test_published_messages_apply_through_the_function_handler(tmp_path: Path) -> None:
    sender = RecordingSender(link_max=32 * 1024)
    notifications = [*stream(400), note(7, 10_000, "update", name="newest"), note(8, 10_000, "delete")]
    NotificationPublisher(sender, max_message_bytes=32 * 1024).publish(notifications)
    db = tmp_path / "dest.db"
    c = single_destination_root(
        DestinationConfig(destination_dsn=f"sqlite:///{db}", rejects_dir=str(tmp_path / "rejects"))
    )
    try:
        result = handle_notifications(sender.bodies(), c).final()
    finally:
        c.close()
    assert result.conserved
    assert (result.received, result.applied, result.stale, result.failed, result.unprocessable) == (402, 400, 2, 0, 0)
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute('SELECT "Id", name FROM account').fetchall())
    assert len(rows) == 399
    assert rows["00000000-0000-0000-0000-000000000007"] == "newest"
    assert json.loads(sender.bodies()[0])[0]["entity"] == "account"
