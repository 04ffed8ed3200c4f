"""Composition root: builds the clients from settings once and hands them to the handlers.

Tests call :func:`bootstrap` with real local parts (a SQLite file, a PostgreSQL database, Azurite)
instead of patching deep paths; the function app calls :func:`container`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shared.contract.parse import Unprocessable
from shared.destinations import Destination, Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import RecordFailure
from shared.rejects import RejectFiles
from shared.settings import Settings

log = logging.getLogger(__name__)


class RejectSink(Protocol):
    """Where failed records (the failure log) and unprocessable bodies are kept."""

    def failures(self, items: list[RecordFailure]) -> None: ...

    def unprocessable(self, items: list[Unprocessable]) -> None: ...


@dataclass
class Container:
    settings: Settings
    destination: Destination
    engine: SyncEngine
    rejects: RejectSink
    # One batch at a time per process: a destination connection is not shared between threads.
    lock: threading.Lock = field(default_factory=threading.Lock)


def bootstrap(
    settings: Settings | None = None,
    *,
    destination: Destination | None = None,
    rejects: RejectSink | None = None,
) -> Container:
    settings = settings or Settings.from_env()
    if destination is None:
        layout = Layout(settings.destination_schema, settings.destination_prefix, settings.write_delete_log)
        destination = open_destination(settings.destination_dsn, layout)
    engine = SyncEngine(destination, attempts=settings.write_attempts)
    if rejects is None:
        rejects = RejectFiles(Path(settings.rejects_dir))
    return Container(settings, destination, engine, rejects)


_container: Container | None = None
_container_lock = threading.Lock()


def container() -> Container:
    """The process-wide container, built on first use (never at import time)."""
    global _container  # noqa: PLW0603
    with _container_lock:
        if _container is None:
            _container = bootstrap()
        return _container


def reset_container(new: Container | None = None) -> None:
    """Replace the process-wide container (tests, configuration reload)."""
    global _container  # noqa: PLW0603
    with _container_lock:
        if _container is not None and _container is not new:
            _container.destination.close()
        _container = new
