"""Composition root: builds the clients from settings once and hands them to the handlers.

Two modes (README "Running the function app", docs/api.md "Single-destination mode"):

* **Profile mode** (no ``DES_DESTINATION_DSN``): the Service Bus function fans each notification out
  to every active export profile of its organization that exports its entity
  (:mod:`shared.profiles`); profiles, their destinations and retry policies come from the admin
  store, managed through the admin API. The container holds the process-wide
  :class:`~shared.profiles.runtime.ProfileRuntime` the API uses too (:func:`bootstrap_profiles`).
* **Single-destination mode** (``DES_DESTINATION_DSN`` set): every notification goes to that one
  destination, as an implicit profile ``DES_PROFILE_ID`` (default ``default``) with the layout and
  retry policy of the settings (:func:`bootstrap`). Useful locally, for tests and like the replay CLI.

Tests call :func:`bootstrap` / :func:`bootstrap_profiles` with real local parts (a SQLite file, a
PostgreSQL database, Azurite) instead of patching deep paths; the function app calls
:func:`container`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
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
from shared.settings import (
    DEFAULT_PROFILE_ID,
    DEFAULT_REJECTS_DIR,
    DESTINATION_DSN,
    PROFILE_ID,
    REJECTS_DIR,
    Settings,
)

if TYPE_CHECKING:
    from shared.profiles.model import Profile
    from shared.profiles.runtime import ProfileRuntime
    from shared.storage.config import Storage

log = logging.getLogger(__name__)


class RejectSink(Protocol):
    """Where failed records (the failure log) and unprocessable bodies are kept."""

    def failures(self, items: list[RecordFailure]) -> None: ...

    def unprocessable(self, items: list[Unprocessable]) -> None: ...


class LocalRejects:
    """Profile mode without Blob storage: ``<rejects dir>/<profile>/`` per profile (``unrouted/``
    for what belongs to none), in the replay CLI's file formats."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sinks: dict[str, RejectFiles] = {}
        self._lock = threading.Lock()

    def __call__(self, profile_id: str) -> RejectSink:
        with self._lock:
            sink = self._sinks.get(profile_id)
            if sink is None:
                sink = self._sinks[profile_id] = RejectFiles(self.directory / profile_id)
            return sink

    def close(self) -> None:
        with self._lock:
            for sink in self._sinks.values():
                sink.close()
            self._sinks.clear()


@dataclass
class Container:
    settings: Settings | None  # single-destination mode: its settings; None in profile mode
    destination: Destination | None  # single-destination mode only
    engine: SyncEngine | None  # single-destination mode only
    # Single-destination mode: the destination's failures and unprocessables. Profile mode: the
    # unprocessables of the batches (under the unrouted folder).
    rejects: RejectSink
    # One batch at a time per process: a destination connection is not shared between threads.
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Blob storage (claim checks, retries, failure log, unprocessables); None: local files, and a
    # transient destination error makes the host redeliver the batch instead.
    storage: Storage | None = None
    metrics: MetricsSink | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)  # single mode; profile mode: the inline wait
    profile_id: str = DEFAULT_PROFILE_ID  # the implicit profile of single-destination mode
    # Profile mode: the profile machinery (store, fan-out, profile engines), shared with the admin API.
    runtime: ProfileRuntime | None = None
    # Profile mode: where a profile's failures go (default: its Blob storage folders, or LocalRejects).
    rejects_for: Callable[[str], RejectSink] | None = None

    @property
    def mode(self) -> str:
        return "profiles" if self.runtime is not None else "single destination"

    def rejects_of(self, profile_id: str) -> RejectSink:
        """Where one profile's failed records and unprocessable bodies go."""
        if self.rejects_for is not None:
            return self.rejects_for(profile_id)
        if self.storage is not None:
            return self.storage.rejects(profile_id)
        return self.rejects

    def policy_of(self, profile: Profile) -> RetryPolicy:
        """A profile's own retry count and interval (profile mode)."""
        return RetryPolicy.of_profile(profile, self.retry_policy.inline_wait_seconds)

    def policy_for(self, profile_id: str) -> RetryPolicy:
        """The retry policy of a profile: its own in profile mode (the settings' policy when it
        cannot be read), the settings' in single-destination mode."""
        if self.runtime is None:
            return self.retry_policy
        from shared.profiles.service import ProfileError
        from shared.store.base import StoreError

        try:
            return self.policy_of(self.runtime.service.get(profile_id))
        except (ProfileError, StoreError) as exc:
            log.info("retry policy of profile %s not readable (%s); using the settings' policy", profile_id, exc)
            return self.retry_policy

    def close(self) -> None:
        """Close what this container opened (the single destination; local reject files). The
        profile runtime belongs to whoever built it (the process, shared with the admin API)."""
        if self.destination is not None:
            self.destination.close()
        if isinstance(self.rejects_for, LocalRejects):
            self.rejects_for.close()


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
    """Single-destination mode: ``settings.destination_dsn`` (from ``DES_DESTINATION_DSN`` when no
    settings are given) as the implicit profile ``profile_id``."""
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
    )  # fmt: skip


def bootstrap_profiles(
    runtime: ProfileRuntime,
    *,
    storage: Storage | None = None,
    retry_policy: RetryPolicy | None = None,
    rejects_dir: str | Path = DEFAULT_REJECTS_DIR,
    rejects_for: Callable[[str], RejectSink] | None = None,
) -> Container:
    """Profile mode: notifications fan out to the runtime's profiles (``storage`` defaults to the
    runtime's). Without Blob storage, failures go to ``rejects_dir/<profile>/`` and a profile whose
    destination is unavailable makes the function raise (Service Bus redelivers)."""
    from shared.profiles.fanout import UNROUTED_FOLDER

    storage = storage if storage is not None else runtime.storage
    if rejects_for is None and storage is None:
        rejects_for = LocalRejects(Path(rejects_dir))
    if rejects_for is not None:
        unrouted = rejects_for(UNROUTED_FOLDER)
    else:
        assert storage is not None
        unrouted = storage.rejects(UNROUTED_FOLDER)
    return Container(
        None, None, None, unrouted,
        storage=storage, metrics=runtime.store, retry_policy=retry_policy or RetryPolicy(), runtime=runtime,
        rejects_for=rejects_for,
    )  # fmt: skip


def bootstrap_from_env() -> Container:
    """The function app's container: single-destination mode when ``DES_DESTINATION_DSN`` is set,
    profile mode (the process-wide profile runtime) otherwise."""
    if os.environ.get(DESTINATION_DSN, "").strip():
        c = bootstrap()
    else:
        from shared.profiles.runtime import runtime

        c = bootstrap_profiles(
            runtime(),
            retry_policy=RetryPolicy.from_env(),
            rejects_dir=os.environ.get(REJECTS_DIR) or DEFAULT_REJECTS_DIR,
        )
    log.info("function app in %s mode", c.mode)
    return c


_container: Container | None = None
_container_lock = threading.Lock()


def container() -> Container:
    """The process-wide container, built on first use (never at import time)."""
    global _container  # noqa: PLW0603
    with _container_lock:
        if _container is None:
            _container = bootstrap_from_env()
        return _container


def reset_container(new: Container | None = None) -> None:
    """Replace the process-wide container (tests, configuration reload)."""
    global _container  # noqa: PLW0603
    with _container_lock:
        if _container is not None and _container is not new:
            _container.close()
        _container = new
