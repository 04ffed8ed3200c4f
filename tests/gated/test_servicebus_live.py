"""The publisher against a real Service Bus namespace or the Service Bus emulator.

Runs when ``ServiceBusConnection`` (a connection string; the emulator's has
``UseDevelopmentEmulator=true``) and ``ServiceBusQueueName`` are set; the queue must exist and be
empty of other traffic. Large notifications go by claim check through Azurite. Skipped visibly otherwise.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from shared.config import SERVICE_BUS_CONNECTION, SERVICE_BUS_QUEUE_NAME, AppConfig
from shared.contract.parse import ParsedBatch, parse_body
from shared.publisher import NotificationPublisher, open_client
from shared.storage.account import Storage
from tests.support.metrics import note

pytestmark = [
    pytest.mark.azure,
    pytest.mark.skipif(
        not (os.environ.get(SERVICE_BUS_CONNECTION) and os.environ.get(SERVICE_BUS_QUEUE_NAME)),
        reason=f"{SERVICE_BUS_CONNECTION} and {SERVICE_BUS_QUEUE_NAME} are not set: give a namespace or emulator "
        "connection string and an empty queue to run the live Service Bus suite",
    ),
]


def test_publish_and_receive(storage: Storage) -> None:
    queue = os.environ[SERVICE_BUS_QUEUE_NAME]
    run = uuid.uuid4().hex[:8]
    notifications = [note(i, 1, "create", name=f"{run} {i}") for i in range(1, 1001)]
    notifications.append(note(5000, 1, "create", name=f"{run} big", description="x" * 300_000))
    with open_client(AppConfig.from_env().service_bus) as client:
        with client.get_queue_sender(queue) as sender:
            report = NotificationPublisher(sender, storage.payloads).publish(notifications)
        assert report.spilled == 1
        assert report.messages < 20
        out = ParsedBatch()
        with client.get_queue_receiver(queue, max_wait_time=10) as receiver:
            while out.received < len(notifications):
                batch = receiver.receive_messages(max_message_count=50, max_wait_time=10)
                if not batch:
                    break
                for m in batch:
                    parse_body(b"".join(m.body), out)
                    receiver.complete_message(m)
    assert out.unprocessable == []
    names = {n.attributes.get("name") for n in out.notifications if n.attributes}
    assert {f"{run} {i}" for i in range(1, 1001)} <= names
    [ref] = [n.payloadRef for n in out.notifications if n.payloadRef is not None]
    assert json.loads(storage.payloads.get(ref.blob))["attributes"]["name"] == f"{run} big"
