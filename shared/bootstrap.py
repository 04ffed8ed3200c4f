"""Composition root: builds the clients from settings once and hands them to the handlers.

Tests call :func:`bootstrap` with real local parts (a SQLite file, a PostgreSQL database, Azurite)
instead of patching deep paths; the function app calls :func:`container`.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from shared.contract.parse import Unprocessable
from shared.destinations import Destination, Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import RecordFailure
from shared.metrics import MetricsSink
from shared.rejects import RejectFiles
from shared.retry import RetryPolicy
from shared.settings import DEFAULT_PROFILE_ID, PROFILE_ID, Settings

if TYPE_CHECKING:
    from shared.storage.config import Storage

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
    # Blob storage (claim checks, retries, failure log, unprocessables); None: local files, and a
    # transient destination error makes the host redeliver the batch instead.
    storage: Storage | None = None
    metrics: MetricsSink | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    profile_id: str = DEFAULT_PROFILE_ID

    def policy_for(self, profile_id: str) -> RetryPolicy:
        """The retry policy of a profile (from settings until the profile store supplies its own)."""
        return self.retry_policy


def bootstrap(
    settings: Settings | None = None,
    *,
    destination: Destination | None = None,
    rejects: RejectSink | None = None,
    storage: Storage | None = None,
    metrics: MetricsSink | None = None,
    retry_policy: RetryPolicy | None = None,
    profile_id: str | None = None,
) -> Container:
    from_env = settings is None
    settings = settings or Settings.from_env()
    if from_env and storage is None:
        from shared.storage.config import storage_from_env

        storage = storage_from_env()
    if retry_policy is None:
        retry_policy = RetryPolicy.from_env() if from_env else RetryPolicy()
    if profile_id is None:
        profile_id = (os.environ.get(PROFILE_ID) if from_env else None) or DEFAULT_PROFILE_ID
    if destination is None:
        layout = Layout(settings.destination_schema, settings.destination_prefix, settings.write_delete_log)
        destination = open_destination(settings.destination_dsn, layout)
    engine = SyncEngine(destination, attempts=settings.write_attempts)
    if rejects is None:
        rejects = storage.rejects(profile_id) if storage is not None else RejectFiles(Path(settings.rejects_dir))
    return Container(
        settings, destination, engine, rejects,
        storage=storage, metrics=metrics, retry_policy=retry_policy, profile_id=profile_id,
    )


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
