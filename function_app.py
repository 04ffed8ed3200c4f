"""Azure Functions entry point (Python v2 programming model). Wiring only: bindings in, shared/ calls out."""

from __future__ import annotations

import azure.functions as func

from shared.bootstrap import container
from shared.handlers import handle_notifications

app = func.FunctionApp()


@app.function_name("sync_notifications")
@app.service_bus_queue_trigger(
    arg_name="messages",
    queue_name="%ServiceBusQueueName%",
    connection="ServiceBusConnection",
    cardinality=func.Cardinality.MANY,
)
def sync_notifications(messages: list[func.ServiceBusMessage]) -> None:
    """Record-change notifications into the destination; raising makes the host redeliver the batch."""
    handle_notifications([m.get_body() for m in messages], container())
