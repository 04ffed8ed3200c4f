"""The composition root: one per process, built from :class:`~shared.config.AppConfig` once; it
builds every client once and hands narrow dependencies to the handlers.

* :func:`root` — the process-wide root (the function app, ``des api``), built on first use from the
  environment (never at import time); :func:`reset_root` replaces it (tests, configuration reload).
* :func:`build_root` — a root from an explicit :class:`AppConfig` (tests build roots this way with
  real local parts: a SQLite file, a PostgreSQL database, Azurite; nothing patches deep paths).
* :func:`single_destination_root` / :func:`profiles_root` — a root around parts a test already has
  (a destination, a profile runtime, a storage account, a metrics sink).

The two modes (README "Running the function app", docs/api.md "Single-destination mode") are two
routers of one kind (:class:`~shared.routing.FanOutRouter`, one batch path):
``DES_DESTINATION_DSN`` set — a :class:`FixedRouter`, a fan-out to one fixed target; otherwise a
:class:`ProfileRouter` over the profile runtime (store, secret resolver, profile cache, per-profile
engines, fan-out, profile service), which the admin API shares, so a change made through the API is
seen by the fan-out of the same instance at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shared.config import (
    ADMIN_STORE,
    BLOB_KEY,
    BLOB_OLD_KEYS,
    BLOB_POISON_QUEUE,
    DEFAULT_REJECTS_DIR,
    DESTINATION_DSN,
    STORAGE_QUEUE_SERVICE_URI,
    AppConfig,
    DestinationConfig,
    IdentityConfig,
    ProfilesConfig,
    SettingsError,
    StorageConfig,
)
from shared.contract.parse import parse_bodies
from shared.destinations import Destination, Layout, open_destination, registry
from shared.destinations.redaction import install_log_redaction
from shared.engine.engine import SyncEngine
from shared.identity import Credentials
from shared.metrics import MetricsSink
from shared.profiles.checks import check_destination
from shared.profiles.fanout import EngineRegistry, FanOut, ProfileDirectory
from shared.profiles.model import Profile
from shared.profiles.ports import FailureLogReader, ParkedFailureReader, ProfileBlobs
from shared.profiles.secrets import SecretResolver
from shared.profiles.service import Checker, ProfileService
from shared.rejects import LocalRejects, RejectFiles, RejectSink
from shared.retry.policy import RetryPolicy
from shared.retry.ports import RetryDeps
from shared.routing import FanOutRouter, FixedRouter, ProfileRouter
from shared.storage.account import Storage
from shared.storage.blobs import BlobStores
from shared.storage.claimcheck import resolve_references
from shared.storage.crypto import EncryptionKeyError, key_ring_from_specs
from shared.store import open_store
from shared.store.base import Store
from shared.store.sql import SqlStore

if TYPE_CHECKING:  # the Dataverse source (httpx) is imported when a root attaches it, never at import
    from shared.pull.queue import WorkQueue
    from shared.pull.work import ClientFactory, Sink, SourceWork
    from shared.retry.poison import PoisonQueue
    from shared.source.dataverse.push import RereadFor

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- storage account
def open_storage(
    config: StorageConfig | None, identity: IdentityConfig | None = None, credentials: Credentials | None = None
) -> Storage | None:
    """The storage account of the settings (:class:`~shared.config.StorageConfig`), or None when none
    is configured: a connection string (``UseDevelopmentStorage=true`` for Azurite), or identity-based
    (``AzureWebJobsStorage__blobServiceUri`` / ``__accountName``) with the credential its
    ``AzureWebJobsStorage__credential`` / ``__clientId`` settings name; the Key Vault key with the
    default one (``AZURE_CLIENT_ID``)."""
    if config is None:
        return None
    identity = identity or IdentityConfig()
    credentials = credentials or Credentials()
    try:
        keys = key_ring_from_specs(
            config.blob_key, list(config.old_keys), vault_credential=credentials.factory(identity.default)
        )
    except EncryptionKeyError as exc:
        raise SettingsError(f"setting {BLOB_KEY}/{BLOB_OLD_KEYS}: {exc}") from exc
    if config.connection_string:
        return Storage.from_connection_string(config.connection_string, keys)
    return Storage(BlobStores.from_account_url(config.account_url, credentials.get(identity.storage), keys))


def check_settings(config: AppConfig) -> None:
    """What can be checked of the settings without I/O, checked when the function app is indexed (a
    mistake then stops every trigger, so no message is consumed, retried or dead-lettered): the blob
    key specs parse (a local key's bytes, a Key Vault key URL's form; the vault is not called) and the
    destination or admin store DSN is a supported form. Raises SettingsError with the setting's name."""
    if config.storage is not None:
        try:  # the credential is never called: constructing a Key Vault key's client is offline
            key_ring_from_specs(config.storage.blob_key, list(config.storage.old_keys), vault_credential=object)
        except EncryptionKeyError as exc:
            raise SettingsError(f"setting {BLOB_KEY}/{BLOB_OLD_KEYS}: {exc}") from exc
    if config.destination is not None:
        dsn, setting = config.destination.destination_dsn, DESTINATION_DSN
    else:
        dsn, setting = config.profiles.store_dsn, ADMIN_STORE
    if registry.find(dsn) is None:
        raise SettingsError(
            f"setting {setting} is {registry.redact(dsn)!r}: use sqlite:///path.db, postgresql://... or mssql://..."
        )


# ------------------------------------------------------------------------ the profile runtime
@dataclass
class ProfileRuntime:
    """One process's profile machinery: shared by the admin API and the profile router."""

    store: Store
    resolver: SecretResolver
    directory: ProfileDirectory
    engines: EngineRegistry
    fanout: FanOut
    service: ProfileService
    config: ProfilesConfig = field(default_factory=ProfilesConfig)
    # Blob storage when configured: the failure log, parked failures and retry blobs of the profiles.
    storage: Storage | None = None

    def close(self) -> None:
        self.engines.close()
        self.store.close()


def build_runtime(
    config: ProfilesConfig | None = None,
    *,
    store: Store | None = None,
    resolver: SecretResolver | None = None,
    checker: Checker = check_destination,
    failure_log: FailureLogReader | None = None,
    parked: ParkedFailureReader | None = None,
    blobs: ProfileBlobs | None = None,
    storage: Storage | None = None,
    rejects_dir: str | Path | None = None,
    opener: Callable[[str, Layout], Destination] = open_destination,
    identity: IdentityConfig | None = None,
    credentials: Credentials | None = None,
) -> ProfileRuntime:
    """The profile machinery from ``config`` (defaults: an embedded SQLite store); with ``storage``
    the failure-log, parked-failure and profile-blob ports are wired to it (unless given), else
    with ``rejects_dir`` to the local reject store there (what :class:`LocalRejects` writes), and
    ``opener`` opens each profile's destination."""
    config = config or ProfilesConfig()
    if storage is not None:
        from shared.profiles.blob_ports import BlobFailureLog, BlobParkedFailureReader, BlobProfileBlobs

        failure_log = failure_log or BlobFailureLog(storage)
        parked = parked or BlobParkedFailureReader(storage)
        blobs = blobs or BlobProfileBlobs(storage)
    elif rejects_dir is not None:
        from shared.profiles.local_ports import LocalFailures

        local = LocalFailures(Path(rejects_dir))
        failure_log, parked, blobs = failure_log or local, parked or local, blobs or local
    store = store or open_store(config.store_dsn, schema=config.store_schema)
    if resolver is None:  # Key Vault secrets: the default credential (AZURE_CLIENT_ID's identity)
        credentials = credentials or Credentials()
        resolver = SecretResolver(
            allow_literal=config.allow_literal,
            credential=credentials.factory((identity or IdentityConfig()).default),
            ttl_seconds=config.secret_cache_seconds,
        )
    directory = ProfileDirectory(store, ttl_seconds=config.profile_cache_seconds)
    engines = EngineRegistry(resolver, opener=opener, write_attempts=config.write_attempts)
    fanout = FanOut(directory, engines)

    def changed(profile_id: str) -> None:
        directory.invalidate()
        engines.discard(profile_id)

    service = ProfileService(
        store, resolver, checker=checker, fanout=fanout, failure_log=failure_log, parked=parked, blobs=blobs,
        on_change=changed,
    )  # fmt: skip
    log.info("profile runtime on %s", store)
    return ProfileRuntime(store, resolver, directory, engines, fanout, service, config, storage)


# -------------------------------------------------------------------------------------- the root
@dataclass
class Root:
    """What the handlers and the API get: the router, the storage account and the profile runtime."""

    router: FanOutRouter
    storage: Storage | None = None
    config: AppConfig = field(default_factory=AppConfig)
    # The profile runtime: the profile router's; in single-destination mode built when the API
    # first asks (:meth:`profiles`). ``owns_runtime``: closed with the root.
    runtime: ProfileRuntime | None = None
    owns_runtime: bool = False
    # The Dataverse source (profile mode): page units on the work queue, the poll timer.
    source: SourceWork | None = None
    # The push re-read (docs/dataverse-push.md): a Dataverse message's organization -> the re-read
    # source of its profiles (None: Dataverse messages without a full post-image are unprocessable).
    rereads: RereadFor | None = None
    credentials: Credentials = field(default_factory=Credentials)  # one per process: shared token caches
    # The blob trigger's (shared) poison queue, opened on first use (:meth:`poison_queue`).
    poison: PoisonQueue | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def mode(self) -> str:
        return "profiles" if isinstance(self.router, ProfileRouter) else "single destination"

    @property
    def retries(self) -> RetryDeps | None:
        """The retry code's dependencies; None without Blob storage (nothing can be parked)."""
        return RetryDeps.of(self.storage, self.router) if self.storage is not None else None

    def poison_queue(self) -> PoisonQueue | None:
        """``webjobs-blobtrigger-poison`` on the storage account; None without one."""
        with self._lock:
            if self.poison is None and self.config.storage is not None:
                self.poison = open_poison_queue(self.config, self.credentials)
            return self.poison

    def profiles(self) -> ProfileRuntime:
        """The profile runtime (the admin API's), built from the configuration on first use."""
        with self._lock:
            if self.runtime is None:
                self.runtime = build_runtime(
                    self.config.profiles, storage=self.storage, identity=self.config.identity,
                    credentials=self.credentials, rejects_dir=self.config.rejects_dir,
                )  # fmt: skip
                self.owns_runtime = True
            return self.runtime

    def close(self) -> None:
        """Close what this root opened: the router's destination and local reject files, and the
        profile runtime if it built it."""
        self.router.close()
        if self.source is not None:
            self.source.close()
        if self.poison is not None:
            self.poison.close()
        if self.owns_runtime and self.runtime is not None:
            self.runtime.close()


def single_destination_root(
    config: DestinationConfig,
    *,
    destination: Destination | None = None,
    rejects: RejectSink | None = None,
    storage: Storage | None = None,
    metrics: MetricsSink | None = None,
    retry_policy: RetryPolicy | None = None,
    profile_id: str | None = None,
    app: AppConfig | None = None,
) -> Root:
    """Single-destination mode: ``config.destination_dsn`` as the implicit profile ``profile_id``
    (default ``config.profile_id``), a :class:`FixedRouter`."""
    profile_id = profile_id or config.profile_id
    if destination is None:
        layout = Layout(config.destination_schema, config.destination_prefix, config.write_delete_log)
        destination = open_destination(config.destination_dsn, layout)
    engine = SyncEngine(destination, attempts=config.write_attempts)
    if rejects is None:
        rejects = storage.rejects(profile_id) if storage is not None else RejectFiles(Path(config.rejects_dir))
    router = FixedRouter(
        profile_id, engine, retry_policy or RetryPolicy(), rejects, metrics,
        rejects_for=storage.rejects if storage is not None else None,
    )  # fmt: skip
    return Root(router, storage, app or AppConfig(destination=config))


def profiles_root(
    runtime: ProfileRuntime,
    *,
    storage: Storage | None = None,
    retry_policy: RetryPolicy | None = None,
    rejects_dir: str | Path = DEFAULT_REJECTS_DIR,
    rejects_for: Callable[[str], RejectSink] | None = None,
    app: AppConfig | None = None,
    owns_runtime: bool = False,
) -> Root:
    """Profile mode: notifications fan out to the runtime's profiles (``storage`` defaults to the
    runtime's). Without Blob storage, failures go to ``rejects_dir/<profile>/`` and a profile whose
    destination is unavailable makes the function raise (Service Bus redelivers)."""
    storage = storage if storage is not None else runtime.storage
    if rejects_for is None:
        rejects_for = storage.rejects if storage is not None else LocalRejects(Path(rejects_dir))
    router = ProfileRouter(runtime, rejects_for, retry_policy or RetryPolicy())
    r = Root(router, storage, app or AppConfig(profiles=runtime.config), runtime, owns_runtime)
    attach_source(r)
    return r


# ------------------------------------------------------------------------ the Dataverse source
def open_work_queue(config: AppConfig, credentials: Credentials | None = None) -> WorkQueue:
    """The page queue: on the storage account (``AzureWebJobsStorage``: a connection string, or
    identity-based with ``AzureWebJobsStorage__queueServiceUri`` / ``__accountName``), else in process."""
    from shared.pull.queue import InMemoryWorkQueue, StorageWorkQueue

    if config.storage is None:
        return InMemoryWorkQueue()
    name = config.source.queue_name
    conn, url, credential = _queue_endpoint(config, credentials)
    if conn:
        return StorageWorkQueue.from_connection_string(conn, name)
    return StorageWorkQueue.from_account_url(url, name, credential)


def open_poison_queue(config: AppConfig, credentials: Credentials | None = None) -> PoisonQueue:
    """The blob trigger's poison queue on the storage account (shared with other apps: shared.retry.poison)."""
    from shared.retry.poison import StoragePoisonQueue

    conn, url, credential = _queue_endpoint(config, credentials)
    if conn:
        return StoragePoisonQueue.from_connection_string(conn, BLOB_POISON_QUEUE)
    return StoragePoisonQueue.from_account_url(url, BLOB_POISON_QUEUE, credential)


def _queue_endpoint(config: AppConfig, credentials: Credentials | None) -> tuple[str | None, str, object]:
    """The queue service of ``AzureWebJobsStorage``: a connection string, or identity-based with
    ``AzureWebJobsStorage__queueServiceUri`` / ``__accountName`` and its credential."""
    storage = config.storage
    assert storage is not None
    if storage.connection_string:
        return storage.connection_string, "", None
    url = config.source.queue_service_uri or (
        f"https://{storage.account_name}.queue.core.windows.net" if storage.account_name else None
    )
    if url is None:
        raise SettingsError(f"setting {STORAGE_QUEUE_SERVICE_URI} is required with an identity-based blob endpoint")
    credential = (credentials or Credentials()).get(config.identity.storage)  # AzureWebJobsStorage's identity
    return None, url, credential


def attach_source(
    r: Root, *, queue: WorkQueue | None = None, client_factory: ClientFactory | None = None
) -> SourceWork | None:
    """Give a profile-mode root its Dataverse source and the profile service its hooks (checks,
    initial sync on activation, status). Notifications go to Service Bus where it is configured
    (``ServiceBusConnection`` + ``ServiceBusQueueName``), else straight through the root's router."""
    rt = r.runtime
    if rt is None or not isinstance(r.router, ProfileRouter) or not isinstance(rt.store, SqlStore):
        return None
    from shared.pull.sinks import DirectSink, LazyPublisher, ProfileDestination, ServiceBusSink
    from shared.pull.work import SourceWork
    from shared.source.dataverse.cursors import CursorStore

    config = r.config
    sb = config.service_bus
    engines = rt.engines

    def ids(profile: Profile) -> ProfileDestination:
        return ProfileDestination(engines, profile)

    if sb.queue_name and (sb.connection_string or sb.namespace):
        from shared.publisher import NotificationPublisher, open_client

        payloads = r.storage.payloads if r.storage is not None else None
        queue_name = sb.queue_name
        publisher = LazyPublisher(lambda: NotificationPublisher(open_client(sb).get_queue_sender(queue_name), payloads))

        def sink_for(profile: Profile) -> Sink:
            return ServiceBusSink(publisher, ids(profile))
    else:

        def deliver(bodies: object) -> object:
            parsed = parse_bodies(bodies)  # type: ignore[arg-type]
            resolution = resolve_references(parsed, r.storage.payloads if r.storage is not None else None)
            return r.router.apply_batch(parsed, resolution, r.retries)

        def sink_for(profile: Profile) -> Sink:
            return DirectSink(deliver, ids(profile))

    work = SourceWork(
        profiles=rt.service, cursors=CursorStore(rt.store), queue=queue or open_work_queue(config, r.credentials),
        sink_for=sink_for,
        settings=config.dataverse, secrets=rt.resolver, client_factory=client_factory,
    )  # fmt: skip
    r.source = work
    rt.service.source = work
    from shared.pull.reread import ProfileRereads

    r.rereads = ProfileRereads(for_org=rt.directory.for_org, engines=engines, cursors=work.cursors,
                               client_for=work.client)  # fmt: skip
    return work


def build_root(config: AppConfig) -> Root:
    """The root of a configuration: single-destination mode when it has a destination, profile
    mode otherwise; the storage account (if configured) opened once and shared."""
    install_log_redaction()
    credentials = Credentials()
    storage = open_storage(config.storage, config.identity, credentials)
    if config.destination is not None:
        r = single_destination_root(config.destination, storage=storage, retry_policy=config.retry, app=config)
    else:
        rt = build_runtime(
            config.profiles, storage=storage, identity=config.identity, credentials=credentials,
            rejects_dir=config.rejects_dir,
        )  # fmt: skip
        r = profiles_root(rt, retry_policy=config.retry, rejects_dir=config.rejects_dir, app=config, owns_runtime=True)
    r.credentials = credentials
    log.info("function app in %s mode", r.mode)
    return r


_root: Root | None = None
_root_lock = threading.Lock()


def root() -> Root:
    """The process-wide root, built from the environment on first use (never at import time)."""
    global _root  # noqa: PLW0603
    with _root_lock:
        if _root is None:
            _root = build_root(AppConfig.from_env())
        return _root


@dataclass(frozen=True)
class Holding:
    """What holding a batch needs when no root can be built (the admin store is unreachable when the
    process starts): the storage account and the settings' retry interval."""

    storage: Storage | None
    interval_seconds: float


_holding: Holding | None = None


def holding() -> Holding:
    """The process's storage account without the rest of the root (opened once; the root's when built)."""
    global _holding  # noqa: PLW0603
    with _root_lock:
        if _root is not None:
            return Holding(_root.storage, _root.config.retry.interval_seconds)
        if _holding is None:
            config = AppConfig.from_env()
            _holding = Holding(open_storage(config.storage, config.identity), config.retry.interval_seconds)
        return _holding


def reset_root(new: Root | None = None) -> None:
    """Replace the process-wide root (tests, configuration reload); closes the old one."""
    global _root, _holding  # noqa: PLW0603
    with _root_lock:
        if _root is not None and _root is not new:
            _root.close()
        _root = new
        _holding = None


def api_root(config: AppConfig) -> Root:
    """A root for the admin API alone (``des api``): the profile runtime of ``config`` with its
    storage account, and no destination opened."""
    credentials = Credentials()
    storage = open_storage(config.storage, config.identity, credentials)
    rt = build_runtime(
        config.profiles, storage=storage, identity=config.identity, credentials=credentials,
        rejects_dir=config.rejects_dir,
    )  # fmt: skip
    r = profiles_root(rt, retry_policy=config.retry, rejects_dir=config.rejects_dir, app=config, owns_runtime=True)
    r.credentials = credentials
    return r
