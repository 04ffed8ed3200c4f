"""Logs that stay attributable and quiet in Application Insights.

* **Invocation id on every line, fan-out threads included.** The Functions Python worker attributes a
  log record to an invocation through the invocation's ``context.thread_local_storage`` (a
  ``threading.local``): set in the thread that runs the function, missing in threads the function
  starts. Microsoft's documented fix is to set ``thread_local_storage.invocation_id`` in each new
  thread. :func:`invocation` remembers the running invocation (a context variable);
  :func:`propagating` wraps work handed to a thread pool so that it sets the id in its thread first.
* **azure-core request logs at WARNING.** Every Azure SDK call logs its request and response at
  INFO on the ``azure`` loggers; in Azure that is one Application Insights trace per blob, message
  and token call. :func:`quiet_azure_sdk_logs` keeps warnings and errors.
* **Azure Monitor OpenTelemetry when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set.**
  :func:`configure_telemetry` calls ``configure_azure_monitor`` once per process (the function app
  at import, its composition step), signing in with Entra ID when
  ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` says ``Authorization=AAD`` (the Bicep turns
  Application Insights' local auth off). Without the setting the package is never imported. Its log
  handler carries :class:`InvocationIdFilter`: every record exported gets the invocation's id as
  the ``InvocationId`` custom dimension (the host's name for it), fan-out threads included.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from shared.config import TelemetryConfig

P = ParamSpec("P")
R = TypeVar("R")

AZURE_SDK_LOGGERS = ("azure", "azure.core.pipeline.policies.http_logging_policy")
INVOCATION_ATTRIBUTE = "InvocationId"  # a record attribute: a custom dimension in Application Insights

log = logging.getLogger(__name__)


class InvocationContext(Protocol):
    """What we use of ``azure.functions.Context``."""

    @property
    def invocation_id(self) -> str: ...

    @property
    def thread_local_storage(self) -> Any: ...


@dataclass(frozen=True)
class _Invocation:
    invocation_id: str
    storage: Any  # the worker's threading.local for this invocation


_current: ContextVar[_Invocation | None] = ContextVar("des_invocation", default=None)


@contextlib.contextmanager
def invocation(context: InvocationContext | None) -> Iterator[None]:
    """Within this block, :func:`propagating` hands ``context``'s invocation id to worker threads."""
    if context is None:
        yield
        return
    token = _current.set(_Invocation(context.invocation_id, context.thread_local_storage))
    try:
        yield
    finally:
        _current.reset(token)


def current_invocation_id() -> str | None:
    current = _current.get()
    return current.invocation_id if current else None


def propagating(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` for a pool thread: it first sets the submitting invocation's id in the thread's
    ``thread_local_storage`` (and clears it after), so the worker attributes its logs."""
    current = _current.get()
    if current is None:
        return fn

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        storage = current.storage
        before = getattr(storage, "invocation_id", None)
        storage.invocation_id = current.invocation_id
        token = _current.set(current)
        try:
            return fn(*args, **kwargs)
        finally:
            _current.reset(token)
            if before is None:
                with contextlib.suppress(AttributeError):
                    del storage.invocation_id
            else:
                storage.invocation_id = before

    return run


def quiet_azure_sdk_logs(level: int = logging.WARNING) -> None:
    """Azure SDK loggers (azure-core's HTTP request/response lines among them) at ``level``."""
    for name in AZURE_SDK_LOGGERS:
        logging.getLogger(name).setLevel(level)


class InvocationIdFilter(logging.Filter):
    """Puts the running invocation's id on a record as ``InvocationId`` (nothing outside an
    invocation: OpenTelemetry attributes cannot be None). Attached to a handler, so it sees the
    records of every logger that propagates to it, in the thread that logs them."""

    def filter(self, record: logging.LogRecord) -> bool:
        invocation_id = current_invocation_id()
        if invocation_id is not None and not hasattr(record, INVOCATION_ATTRIBUTE):
            setattr(record, INVOCATION_ATTRIBUTE, invocation_id)
        return True


_telemetry_on = False


def configure_telemetry(config: TelemetryConfig, *, logger_name: str = "") -> bool:
    """Azure Monitor OpenTelemetry for this process when ``config`` has a connection string; once
    (a second call is a no-op). Returns whether telemetry is on. The Azure SDK loggers go to WARNING
    first, so the exporter's own request logs are never exported (nor flood)."""
    global _telemetry_on  # noqa: PLW0603
    if not config.connection_string:
        return False
    if _telemetry_on:
        return True
    from azure.monitor.opentelemetry import configure_azure_monitor

    quiet_azure_sdk_logs()
    kwargs: dict[str, Any] = {"connection_string": config.connection_string, "logger_name": logger_name}
    if config.entra:
        from shared.identity import DEFAULT, MANAGED, CredentialSpec, build_credential

        spec = CredentialSpec(MANAGED, client_id=config.client_id) if config.client_id else CredentialSpec(DEFAULT)
        kwargs["credential"] = build_credential(spec)
    configure_azure_monitor(**kwargs)
    attached = 0
    for handler in logging.getLogger(logger_name or None).handlers:
        if type(handler).__module__.startswith("opentelemetry") and not any(
            isinstance(f, InvocationIdFilter) for f in handler.filters
        ):
            handler.addFilter(InvocationIdFilter())
            attached += 1
    _telemetry_on = True
    log.info("telemetry to Application Insights (%s auth), invocation ids on %s handler(s)",
             "Entra" if config.entra else "key", attached)  # fmt: skip
    return True
