"""Fakes of what the Functions host hands a function (named as fakes)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeContext:
    """A fake of ``azure.functions.Context``: the invocation id and the worker's thread-local storage
    (the Python worker reads ``thread_local_storage.invocation_id`` to attribute a log record), and
    what the ASGI middleware reads."""

    invocation_id: str = "00000000-0000-0000-0000-000000000001"
    function_name: str = "test"
    function_directory: str = str(Path(__file__).resolve().parents[2])
    trace_context: Any = None
    retry_context: Any = None
    thread_local_storage: threading.local = field(default_factory=threading.local)
