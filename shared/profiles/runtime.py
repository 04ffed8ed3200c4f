"""One process's profile machinery, built once from settings: the store, the secret resolver, the
profile cache, the per-profile engines, the fan-out and the profile service.

The admin API and the Service Bus handler of one function app share it, so a change made through
the API is seen by the fan-out of the same instance at once (other instances within the cache's
few seconds).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared import settings as S
from shared.destinations import Destination, Layout, open_destination
from shared.profiles.checks import check_destination
from shared.profiles.fanout import EngineRegistry, FanOut, ProfileDirectory
from shared.profiles.ports import FailureLogReader, ParkedFailures, ProfileBlobs
from shared.profiles.secrets import SecretResolver, managed_identity_credential
from shared.profiles.service import Checker, ProfileService
from shared.store import SqlStore, open_store

if TYPE_CHECKING:
    from shared.storage.config import Storage

log = logging.getLogger(__name__)


def flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise S.SettingsError(f"setting {name} must be a number of seconds") from exc


@dataclass(frozen=True)
class ProfileSettings:
    store_dsn: str = S.DEFAULT_ADMIN_STORE
    store_schema: str | None = None
    allow_literal: bool = False
    profile_cache_seconds: float = S.DEFAULT_PROFILE_CACHE_SECONDS
    secret_cache_seconds: float = S.DEFAULT_SECRET_CACHE_SECONDS
    managed_identity_client_id: str | None = None
    keyvault_default_credential: bool = False
    write_attempts: int = S.DEFAULT_WRITE_ATTEMPTS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProfileSettings:
        env = os.environ if env is None else env
        try:
            attempts = int(env.get(S.WRITE_ATTEMPTS, S.DEFAULT_WRITE_ATTEMPTS))
        except ValueError as exc:
            raise S.SettingsError(f"setting {S.WRITE_ATTEMPTS} must be a whole number") from exc
        return cls(
            store_dsn=(env.get(S.ADMIN_STORE) or "").strip() or S.DEFAULT_ADMIN_STORE,
            store_schema=(env.get(S.ADMIN_STORE_SCHEMA) or "").strip() or None,
            allow_literal=flag(env.get(S.ALLOW_LITERAL_DESTINATIONS)),
            profile_cache_seconds=_float(env, S.PROFILE_CACHE_SECONDS, S.DEFAULT_PROFILE_CACHE_SECONDS),
            secret_cache_seconds=_float(env, S.SECRET_CACHE_SECONDS, S.DEFAULT_SECRET_CACHE_SECONDS),
            managed_identity_client_id=(env.get(S.MANAGED_IDENTITY_CLIENT_ID) or "").strip() or None,
            keyvault_default_credential=flag(env.get(S.KEYVAULT_DEFAULT_CREDENTIAL)),
            write_attempts=attempts,
        )


@dataclass
class ProfileRuntime:
    store: SqlStore
    resolver: SecretResolver
    directory: ProfileDirectory
    engines: EngineRegistry
    fanout: FanOut
    service: ProfileService
    settings: ProfileSettings = field(default_factory=ProfileSettings)
    # Blob storage (issue 3) when configured: the failure log, parked failures and retry blobs of the
    # profiles; the Service Bus handler and the retry functions use the same account.
    storage: Storage | None = None

    def close(self) -> None:
        self.engines.close()
        self.store.close()


def build_runtime(
    settings: ProfileSettings | None = None,
    *,
    store: SqlStore | None = None,
    resolver: SecretResolver | None = None,
    checker: Checker = check_destination,
    failure_log: FailureLogReader | None = None,
    parked: ParkedFailures | None = None,
    blobs: ProfileBlobs | None = None,
    storage: Storage | None = None,
    opener: Callable[[str, Layout], Destination] = open_destination,
) -> ProfileRuntime:
    """The machinery; with ``storage`` the failure-log, parked-failure and profile-blob ports are
    wired to it (unless given), and ``opener`` opens each profile's destination."""
    settings = settings or ProfileSettings.from_env()
    if storage is not None:
        from shared.profiles.blobs import BlobFailureLog, BlobParkedFailures, BlobProfileBlobs

        failure_log = failure_log or BlobFailureLog(storage)
        parked = parked or BlobParkedFailures(storage)
        blobs = blobs or BlobProfileBlobs(storage)
    store = store or open_store(settings.store_dsn, schema=settings.store_schema)
    if resolver is None:
        client_id, use_default = settings.managed_identity_client_id, settings.keyvault_default_credential
        resolver = SecretResolver(
            allow_literal=settings.allow_literal,
            credential=lambda: managed_identity_credential(client_id, use_default=use_default),
            ttl_seconds=settings.secret_cache_seconds,
        )
    directory = ProfileDirectory(store, ttl_seconds=settings.profile_cache_seconds)
    engines = EngineRegistry(resolver, opener=opener, write_attempts=settings.write_attempts)
    fanout = FanOut(directory, engines)

    def changed(profile_id: str) -> None:
        directory.invalidate()
        engines.discard(profile_id)

    service = ProfileService(
        store,
        resolver,
        checker=checker,
        fanout=fanout,
        failure_log=failure_log,
        parked=parked,
        blobs=blobs,
        on_change=changed,
    )
    log.info("profile runtime on %s", store)
    return ProfileRuntime(store, resolver, directory, engines, fanout, service, settings, storage)


_runtime: ProfileRuntime | None = None
_runtime_lock = threading.Lock()


def runtime() -> ProfileRuntime:
    """The process-wide profile runtime, built from settings on first use (never at import time),
    with the app's Blob storage (``AzureWebJobsStorage``) when one is configured.

    The admin API and the Service Bus handler of one function app share it."""
    global _runtime  # noqa: PLW0603
    with _runtime_lock:
        if _runtime is None:
            from shared.storage.config import storage_from_env

            _runtime = build_runtime(storage=storage_from_env())
        return _runtime


def reset_runtime(new: ProfileRuntime | None = None) -> None:
    """Replace the process-wide runtime (tests, configuration reload); closes the old one."""
    global _runtime  # noqa: PLW0603
    with _runtime_lock:
        if _runtime is not None and _runtime is not new:
            _runtime.close()
        _runtime = new
