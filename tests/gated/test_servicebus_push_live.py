"""Dataverse push messages through a real Service Bus queue (issue 13): sent with the real
azure-servicebus SDK in the captured shape of reference C (a RemoteExecutionContext JSON body with
a UTF-8 BOM, the ``Claims/*`` application properties, a truncated message flagged
``MessageMaxSizeExceeded``), received back, and parsed as the Service Bus function parses a batch
(:func:`shared.source.dataverse.push.parse_messages` on the body and the application properties as
the SDK returns them). A contract v1 body on the same queue keeps its own path.

Runs when ``ServiceBusConnection`` (a connection string; the emulator's has
``UseDevelopmentEmulator=true``) or ``ServiceBusConnection__fullyQualifiedNamespace`` (identity)
and ``ServiceBusQueueName`` are set; the queue must exist and be empty of other traffic. Skipped
visibly otherwise.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, cast

import pytest

from shared.config import SERVICE_BUS_CONNECTION, SERVICE_BUS_NAMESPACE, SERVICE_BUS_QUEUE_NAME, AppConfig
from shared.contract.models import ChangeType
from shared.publisher import open_client
from shared.source.dataverse.push import parse_messages
from tests.support.dataverse_push import (
    ACCOUNT,
    ALL_TYPES,
    body,
    create_message,
    properties,
    truncated,
    update_message,
)
from tests.support.metrics import note

pytestmark = [
    pytest.mark.azure,
    pytest.mark.skipif(
        not ((os.environ.get(SERVICE_BUS_CONNECTION) or os.environ.get(SERVICE_BUS_NAMESPACE))
             and os.environ.get(SERVICE_BUS_QUEUE_NAME)),
        reason=f"{SERVICE_BUS_CONNECTION} (or {SERVICE_BUS_NAMESPACE}) and {SERVICE_BUS_QUEUE_NAME} are not set: give "
        "a namespace or emulator connection and an empty queue to run the live Dataverse push suite",
    ),
]  # fmt: skip


def test_dataverse_messages_survive_the_broker_and_parse() -> None:
    from azure.servicebus import ServiceBusMessage

    queue = os.environ[SERVICE_BUS_QUEUE_NAME]
    run = uuid.uuid4().hex[:8]
    sent: dict[str, tuple[bytes, dict[str, Any]]] = {
        f"{run}-create": (body(create_message(), bom=True), properties("Create", "account")),
        f"{run}-truncated": (body(truncated(update_message({"name": "x"}, None)), bom=True),
                             properties("Update", "account", MessageMaxSizeExceeded=True)),
        f"{run}-contract": (json.dumps(note(77, 1, "create", name=f"{run} contract")).encode(), {}),
    }  # fmt: skip
    received: dict[str, tuple[bytes, Any]] = {}
    with open_client(AppConfig.from_env().service_bus) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([
                ServiceBusMessage(raw, application_properties=cast("dict[str | bytes, Any]", props) or None,
                                  message_id=mid, content_type="application/json")
                for mid, (raw, props) in sent.items()
            ])  # fmt: skip
        with client.get_queue_receiver(queue, max_wait_time=10) as receiver:
            while len(received) < len(sent):
                batch = receiver.receive_messages(max_message_count=10, max_wait_time=10)
                if not batch:
                    break
                for m in batch:
                    if str(m.message_id).startswith(run):
                        received[str(m.message_id)] = (b"".join(m.body), m.application_properties)
                    receiver.complete_message(m)
    assert set(received) == set(sent)
    assert received[f"{run}-create"][0] == sent[f"{run}-create"][0]  # the body byte for byte, BOM included
    parsed = parse_messages([received[mid] for mid in sent])  # what sync_notifications does, no source
    assert parsed.received == 3
    assert parsed.dataverse_messages == 2
    create = next(n for n in parsed.notifications if n.recordId == ACCOUNT)
    assert create.changeType is ChangeType.CREATE
    assert create.version == 2 * ALL_TYPES["versionnumber"]
    assert create.attributes is not None
    assert create.attributes["name"] == ALL_TYPES["name"]
    [kept] = parsed.unprocessable  # truncated, no re-read source: kept with the reason
    assert "truncated" in kept.reason
    assert "register a post-image on the step" in kept.reason
    assert "MessageMaxSizeExceeded" in kept.body  # the application properties are kept with it
    assert any(n.attributes and n.attributes.get("name") == f"{run} contract" for n in parsed.notifications)
