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
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

AZURE_SDK_LOGGERS = ("azure", "azure.core.pipeline.policies.http_logging_policy")


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
