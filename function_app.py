"""Azure Functions entry point (Python v2 programming model). Wiring only: bindings in, shared/ calls out."""

from __future__ import annotations

import azure.functions as func

from shared.api import build_app
from shared.config import (
    RETRY_POISON_SCHEDULE,
    RETRY_SWEEP_SCHEDULE,
    RETRY_TRIGGER_PATH,
    SOURCE_POLL_SCHEDULE,
    SOURCE_QUEUE_NAME,
    STORAGE_CONNECTION,
    AppConfig,
)
from shared.handlers import (
    handle_blob_poison,
    handle_retention,
    handle_retry_event,
    handle_retry_sweep,
    handle_service_bus,
    handle_source_page,
    handle_source_poll,
)
from shared.observability import configure_telemetry, invocation, quiet_azure_sdk_logs
from shared.root import check_settings, holding, root

# Azure SDK request/response lines at INFO would be one Application Insights trace per call.
quiet_azure_sdk_logs()

# The settings, parsed once at import: a configuration mistake (a bad value, a SQLite admin store in
# Azure) fails the app's indexing, so no trigger runs and no message is consumed, retried or
# dead-lettered until it is fixed; the host logs the error (docs/deploy.md).
CONFIG = AppConfig.from_env()
check_settings(CONFIG)  # and what can be checked without I/O: the blob key specs, the store's DSN form

# Azure Monitor OpenTelemetry when APPLICATIONINSIGHTS_CONNECTION_STRING is set (never imported otherwise).
configure_telemetry(CONFIG.telemetry)

# The v2 model allows one FunctionApp object: the admin HTTP API (FastAPI) is this app's HTTP
# function, and the other functions register on it too. Its auth level follows DES_AUTH_MODE: the
# host checks function keys in function-keys mode; otherwise the route is anonymous to the host and
# the app authenticates (Entra app role, or the local key). Every function gets the one process-wide
# composition root (shared/root.py), built on first use.
HTTP_AUTH_LEVEL = func.AuthLevel.FUNCTION if CONFIG.api.host_checks_function_keys else func.AuthLevel.ANONYMOUS
app = func.AsgiFunctionApp(app=build_app(root, hosted=True), http_auth_level=HTTP_AUTH_LEVEL)


@app.function_name("health")
@app.route(route="health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """``GET /health`` without a key in every auth mode: the admin API's readiness route through the
    same ASGI app, as its own anonymous function (the catch-all carries the admin API's auth level)."""
    return await app.middleware.handle_async(req, context)


@app.function_name("sync_notifications")
@app.service_bus_queue_trigger(
    arg_name="messages",
    queue_name="%ServiceBusQueueName%",
    connection="ServiceBusConnection",
    cardinality=func.Cardinality.MANY,
)
def sync_notifications(messages: list[func.ServiceBusMessage], context: func.Context) -> None:
    """Record-change notifications into every matching profile's destination (profile mode) or the
    one destination of ``DES_DESTINATION_DSN`` (single-destination mode); raising makes the host
    redeliver the batch."""
    with invocation(context):  # fan-out threads log under this invocation too
        handle_service_bus([(m.get_body(), m.application_properties) for m in messages], root, holding)


# Retries through blobs (shared/retry/). Event Grid source: works on Flex Consumption; locally
# (Azurite has no Event Grid) the retry sweeper below is the polling mode (docs/storage.md).
@app.function_name("retry_blobs")
@app.blob_trigger(
    arg_name="blob", path=RETRY_TRIGGER_PATH, connection="AzureWebJobsStorage", source=func.BlobSource.EVENT_GRID
)
def retry_blobs(blob: func.InputStream, context: func.Context) -> None:
    with invocation(context):
        handle_retry_event(blob.name or "", root)


@app.function_name("retry_sweeper")
@app.timer_trigger(arg_name="timer", schedule=RETRY_SWEEP_SCHEDULE)
def retry_sweeper(timer: func.TimerRequest, context: func.Context) -> None:
    with invocation(context):
        handle_retry_sweep(root())


# The blob trigger's poison queue (webjobs-blobtrigger-poison) is shared by every blob trigger on the
# storage account: a queue trigger would delete other apps' receipts, so a timer peeks it and removes
# only ours (shared/retry/poison.py).
@app.function_name("retry_poison")
@app.timer_trigger(arg_name="timer", schedule=RETRY_POISON_SCHEDULE)
def retry_poison(timer: func.TimerRequest, context: func.Context) -> None:
    with invocation(context):
        handle_blob_poison(root())


@app.function_name("blob_retention")
@app.timer_trigger(arg_name="timer", schedule="0 30 3 * * *")
def blob_retention(timer: func.TimerRequest, context: func.Context) -> None:
    with invocation(context):
        handle_retention(root())


# The Dataverse source (issue 9; docs/dataverse-app.md): one page per queue message,
# the cursor advanced after the page was published; the timer follows the delta links when due.
@app.function_name("source_pages")
@app.queue_trigger(arg_name="message", queue_name=f"%{SOURCE_QUEUE_NAME}%", connection=STORAGE_CONNECTION)
def source_pages(message: func.QueueMessage, context: func.Context) -> None:
    with invocation(context):
        handle_source_page(message.get_body(), root())


@app.function_name("source_poll")
@app.timer_trigger(arg_name="timer", schedule=f"%{SOURCE_POLL_SCHEDULE}%")
def source_poll(timer: func.TimerRequest, context: func.Context) -> None:
    with invocation(context):
        handle_source_poll(root())
