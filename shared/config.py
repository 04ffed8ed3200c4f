"""The one configuration object: every setting name, defined once, and :class:`AppConfig`, read once.

App settings in Azure, ``local.settings.json`` locally. Names are constants so the function app,
Bicep and docs agree. :meth:`AppConfig.from_env` parses them all (a mapping is passed explicitly in
tests; ``None`` means ``os.environ``, read, never written). A bad value fails fast with a message
that names the setting. The composition root (:mod:`shared.root`) is the one reader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from shared.identity import CredentialSettingsError, CredentialSpec, credential_spec
from shared.retry.policy import RetryPolicy
from shared.source.dataverse import settings as dataverse_settings
from shared.source.dataverse.settings import DataverseSettings

# --- the Service Bus trigger
SERVICE_BUS_QUEUE_NAME = "ServiceBusQueueName"
SERVICE_BUS_CONNECTION = "ServiceBusConnection"
SERVICE_BUS_NAMESPACE = f"{SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace"  # identity-based connection

# --- single-destination mode (README "Running the function app")
DESTINATION_DSN = "DES_DESTINATION_DSN"
DESTINATION_SCHEMA = "DES_DESTINATION_SCHEMA"
DESTINATION_PREFIX = "DES_DESTINATION_PREFIX"
WRITE_DELETE_LOG = "DES_WRITE_DELETE_LOG"
WRITE_ATTEMPTS = "DES_WRITE_ATTEMPTS"
REJECTS_DIR = "DES_REJECTS_DIR"
PROFILE_ID = "DES_PROFILE_ID"  # the implicit profile of the settings-configured destination
DEFAULT_WRITE_ATTEMPTS = 3
DEFAULT_REJECTS_DIR = "des-rejects"
DEFAULT_PROFILE_ID = "default"

# --- admin API, profile store and fan-out
ADMIN_STORE = "DES_ADMIN_STORE"  # DSN of the profile/metrics store (sqlite:///, postgresql://, mssql://)
ADMIN_STORE_SCHEMA = "DES_ADMIN_STORE_SCHEMA"  # PostgreSQL / SQL Server schema for the store's tables
ADMIN_API_KEY = "DES_ADMIN_API_KEY"  # the admin key outside Azure (x-functions-key or Bearer)
ADMIN_ROLE = "DES_ADMIN_ROLE"  # Entra app role required when App Service authentication is on
ALLOW_LITERAL_DESTINATIONS = "DES_ALLOW_LITERAL_DESTINATIONS"  # development only
PROFILE_CACHE_SECONDS = "DES_PROFILE_CACHE_SECONDS"
SECRET_CACHE_SECONDS = "DES_SECRET_CACHE_SECONDS"  # noqa: S105 - a setting name, not a secret
API_MAX_BODY_BYTES = "DES_API_MAX_BODY_BYTES"
API_URL = "DES_API_URL"  # where `des profiles|failures|metrics` find the API
WEBSITE_AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"  # set by App Service when its authentication (Easy Auth) is on
AUTH_MODE = "DES_AUTH_MODE"  # local-key (default) | function-keys | entra: see AuthMode
HOSTING = "DES_HOSTING"  # local (default) | azure (set by infra/): see Hosting
DEFAULT_ADMIN_STORE = "sqlite:///des-admin.db"
DEFAULT_ADMIN_ROLE = "DES.Admin"
DEFAULT_PROFILE_CACHE_SECONDS = 15.0
DEFAULT_SECRET_CACHE_SECONDS = 300.0
DEFAULT_API_MAX_BODY_BYTES = 1_048_576
DEFAULT_API_URL = "http://127.0.0.1:7072"

# --- Blob storage (claim checks, retries, failure log, unprocessables)
STORAGE_CONNECTION = "AzureWebJobsStorage"  # connection string, or __blobServiceUri / __accountName (identity)
STORAGE_BLOB_SERVICE_URI = f"{STORAGE_CONNECTION}__blobServiceUri"
STORAGE_ACCOUNT_NAME = f"{STORAGE_CONNECTION}__accountName"
BLOB_KEY = "DES_BLOB_KEY"  # current key-encryption key: Key Vault key URL, local-aes:..., local-rsa:...
BLOB_OLD_KEYS = "DES_BLOB_OLD_KEYS"  # comma-separated older keys, still used to decrypt (rotation)
RETRY_COUNT = "DES_RETRY_COUNT"  # 0-20, default 12 (a profile's retryCount)
RETRY_INTERVAL_SECONDS = "DES_RETRY_INTERVAL_SECONDS"  # 0-3600, default 5 (a profile's retryIntervalSeconds)
RETRY_INLINE_WAIT_SECONDS = "DES_RETRY_INLINE_WAIT_SECONDS"  # longest a retry invocation waits for an interval
SERVICEBUS_MAX_MESSAGE_BYTES = "DES_SERVICEBUS_MAX_MESSAGE_BYTES"  # 262144 Standard, 1048576+ Premium
# The retry blob trigger's path: a literal (a binding expression needs an app setting that a local
# run may lack); the container is shared/storage/blobs.py's RETRY (a unit test holds them equal).
RETRY_TRIGGER_PATH = "retry/{name}"
RETRY_SWEEP_SCHEDULE = "0 * * * * *"  # the retry sweeper timer: every minute
BLOB_POISON_QUEUE = "webjobs-blobtrigger-poison"  # where the Functions host puts blobs that kept failing
# The poison queue is shared by every blob trigger on the account: a timer peeks it (shared.retry.poison).
RETRY_POISON_SCHEDULE = "30 */5 * * * *"  # every 5 minutes

# --- the Dataverse source (issue 9; docs/dataverse-app.md). The DES_DATAVERSE_* and
# DES_SOURCE_POLL_* names are defined once in shared/source/dataverse/settings.py (read into
# AppConfig.dataverse); these are the function app's units of work around it.
SOURCE_QUEUE_NAME = "DES_SOURCE_QUEUE_NAME"  # Storage queue of page units (queue trigger binding)
SOURCE_POLL_SCHEDULE = dataverse_settings.DES_SOURCE_POLL_SCHEDULE  # NCRONTAB of the poll timer (binding)
DATAVERSE_TOKEN = dataverse_settings.DES_DATAVERSE_TOKEN  # a setting name (simulators, tests only)
STORAGE_QUEUE_SERVICE_URI = "AzureWebJobsStorage__queueServiceUri"  # identity-based queue endpoint
SOURCE_LOCAL_WORKER = "DES_SOURCE_LOCAL_WORKER"  # `des api`: drain the queue and poll in process (default on)
DEFAULT_SOURCE_QUEUE_NAME = "des-source-pages"
DEFAULT_SOURCE_POLL_SCHEDULE = dataverse_settings.DEFAULT_POLL_SCHEDULE  # every minute


class SettingsError(RuntimeError):
    pass


class Hosting(str, Enum):
    """Where the app runs: an explicit setting (``DES_HOSTING``), never guessed from the platform's
    variables. ``azure`` (set by infra/) refuses what cannot work there: a SQLite admin store."""

    LOCAL = "local"
    AZURE = "azure"


class AuthMode(str, Enum):
    """How the admin API authenticates (``DES_AUTH_MODE``; :mod:`shared.api.auth` applies it).

    * ``local-key`` (default): the app checks ``DES_ADMIN_API_KEY``; the Functions route is anonymous.
    * ``function-keys``: the Functions host checks function keys (``AuthLevel.FUNCTION``) before the
      app sees a request; only behind the Functions host.
    * ``entra``: App Service authentication validates Microsoft Entra tokens and the app requires the
      app role (``DES_ADMIN_ROLE``); the Functions route is anonymous (app-level security), so
      Entra-only callers need no function key.
    """

    LOCAL_KEY = "local-key"
    FUNCTION_KEYS = "function-keys"
    ENTRA = "entra"


def _choice(env: Mapping[str, str], name: str, kind: type[Enum], default: Enum) -> Enum:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise SettingsError(f"setting {name} is {raw!r}: use one of {allowed}") from None


def flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _text(env: Mapping[str, str], name: str) -> str | None:
    return (env.get(name) or "").strip() or None


def _int(env: Mapping[str, str], name: str, default: int, what: str = "a whole number") -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"setting {name} must be {what}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"setting {name} must be a number of seconds") from exc


@dataclass(frozen=True)
class DestinationConfig:
    """Single-destination mode: ``DES_DESTINATION_DSN`` and its layout."""

    destination_dsn: str
    destination_schema: str | None = None
    destination_prefix: str = ""
    write_delete_log: bool = False
    write_attempts: int = DEFAULT_WRITE_ATTEMPTS
    rejects_dir: str = DEFAULT_REJECTS_DIR
    profile_id: str = DEFAULT_PROFILE_ID

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DestinationConfig | None:
        """None when ``DES_DESTINATION_DSN`` is not set (profile mode)."""
        dsn = env.get(DESTINATION_DSN, "").strip()
        if not dsn:
            return None
        return cls(
            destination_dsn=dsn,
            destination_schema=env.get(DESTINATION_SCHEMA) or None,
            destination_prefix=env.get(DESTINATION_PREFIX, ""),
            write_delete_log=flag(env.get(WRITE_DELETE_LOG)),
            write_attempts=_int(env, WRITE_ATTEMPTS, DEFAULT_WRITE_ATTEMPTS),
            rejects_dir=env.get(REJECTS_DIR) or DEFAULT_REJECTS_DIR,
            profile_id=env.get(PROFILE_ID) or DEFAULT_PROFILE_ID,
        )


@dataclass(frozen=True)
class ProfilesConfig:
    """Profile mode and the admin API: the profile store, secrets and the fan-out's caches."""

    store_dsn: str = DEFAULT_ADMIN_STORE
    store_schema: str | None = None
    allow_literal: bool = False
    profile_cache_seconds: float = DEFAULT_PROFILE_CACHE_SECONDS
    secret_cache_seconds: float = DEFAULT_SECRET_CACHE_SECONDS
    write_attempts: int = DEFAULT_WRITE_ATTEMPTS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProfilesConfig:
        return cls(
            store_dsn=_text(env, ADMIN_STORE) or DEFAULT_ADMIN_STORE,
            store_schema=_text(env, ADMIN_STORE_SCHEMA),
            allow_literal=flag(env.get(ALLOW_LITERAL_DESTINATIONS)),
            profile_cache_seconds=_float(env, PROFILE_CACHE_SECONDS, DEFAULT_PROFILE_CACHE_SECONDS),
            secret_cache_seconds=_float(env, SECRET_CACHE_SECONDS, DEFAULT_SECRET_CACHE_SECONDS),
            write_attempts=_int(env, WRITE_ATTEMPTS, DEFAULT_WRITE_ATTEMPTS),
        )


def retry_policy_from_env(env: Mapping[str, str]) -> RetryPolicy:
    """The settings' retry policy (single-destination mode; the inline wait in both modes)."""
    try:
        return RetryPolicy(
            count=int(env.get(RETRY_COUNT, "12")),
            interval_seconds=float(env.get(RETRY_INTERVAL_SECONDS, "5")),
            inline_wait_seconds=float(env.get(RETRY_INLINE_WAIT_SECONDS, "30")),
        )
    except ValueError as exc:
        raise SettingsError(f"retry settings ({RETRY_COUNT}, {RETRY_INTERVAL_SECONDS}): {exc}") from exc


@dataclass(frozen=True)
class StorageConfig:
    """The storage account (``AzureWebJobsStorage``) and the blob key-encryption keys."""

    connection_string: str | None = None
    blob_service_uri: str | None = None
    account_name: str | None = None
    blob_key: str = ""
    old_keys: tuple[str, ...] = ()

    def __repr__(self) -> str:  # a connection string can hold an account key
        where = "connection string" if self.connection_string else (self.blob_service_uri or self.account_name)
        return f"StorageConfig({where}, old_keys={len(self.old_keys)})"

    @property
    def account_url(self) -> str:
        return self.blob_service_uri or f"https://{self.account_name}.blob.core.windows.net"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StorageConfig | None:
        """None when no storage account is configured. ``DES_BLOB_KEY`` is required with one: every
        blob holding record data is encrypted."""
        conn, uri, account = _text(env, STORAGE_CONNECTION), _text(env, STORAGE_BLOB_SERVICE_URI), _text(
            env, STORAGE_ACCOUNT_NAME
        )
        if not (conn or uri or account):
            return None
        spec = env.get(BLOB_KEY, "").strip()
        if not spec:
            raise SettingsError(
                f"setting {BLOB_KEY} is required with {STORAGE_CONNECTION}: every blob holding record data is "
                "encrypted (a Key Vault key URL, or local-aes:<kid>:<base64 32 bytes> for development)"
            )
        old = tuple(s.strip() for s in (env.get(BLOB_OLD_KEYS, "") or "").split(",") if s.strip())
        return cls(conn, uri, account, spec, old)


@dataclass(frozen=True)
class ApiConfig:
    """The admin HTTP API and the ``des`` client."""

    api_key: str | None = None
    role: str = DEFAULT_ADMIN_ROLE
    max_body_bytes: int = DEFAULT_API_MAX_BODY_BYTES
    url: str = DEFAULT_API_URL
    auth_mode: AuthMode = AuthMode.LOCAL_KEY
    easy_auth_enabled: bool = False  # WEBSITE_AUTH_ENABLED true: App Service authentication is on

    def __repr__(self) -> str:  # never show the key
        return (
            f"ApiConfig(api_key={'set' if self.api_key else 'unset'}, role={self.role!r}, "
            f"max_body_bytes={self.max_body_bytes}, url={self.url!r}, auth_mode={self.auth_mode.value})"
        )

    @property
    def host_checks_function_keys(self) -> bool:
        """The admin API's Functions route requires a function key (``AuthLevel.FUNCTION``);
        otherwise it is anonymous and the app authenticates every call itself."""
        return self.auth_mode is AuthMode.FUNCTION_KEYS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiConfig:
        max_body = _int(env, API_MAX_BODY_BYTES, DEFAULT_API_MAX_BODY_BYTES, "a whole number of bytes")
        if max_body < 1024:
            raise SettingsError(f"setting {API_MAX_BODY_BYTES} must be at least 1024")
        mode = _choice(env, AUTH_MODE, AuthMode, AuthMode.LOCAL_KEY)
        assert isinstance(mode, AuthMode)
        return cls(
            api_key=env.get(ADMIN_API_KEY) or None,
            role=env.get(ADMIN_ROLE) or DEFAULT_ADMIN_ROLE,
            max_body_bytes=max_body,
            url=(env.get(API_URL) or DEFAULT_API_URL).rstrip("/"),
            auth_mode=mode,
            easy_auth_enabled=env.get(WEBSITE_AUTH_ENABLED, "").strip().lower() == "true",
        )


@dataclass(frozen=True)
class ServiceBusConfig:
    """The queue and its connection (the trigger's binding reads the same settings; the publisher
    and the gated live suite use this): a connection string, or the namespace with managed identity."""

    queue_name: str | None = None
    connection_string: str | None = None
    namespace: str | None = None

    def __repr__(self) -> str:  # a connection string holds a key
        return f"ServiceBusConfig(queue={self.queue_name!r}, namespace={self.namespace!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServiceBusConfig:
        return cls(
            _text(env, SERVICE_BUS_QUEUE_NAME), _text(env, SERVICE_BUS_CONNECTION), _text(env, SERVICE_BUS_NAMESPACE)
        )


@dataclass(frozen=True)
class SourceConfig:
    """The Dataverse source in the app: the page queue (``AzureWebJobsStorage``; an in-process queue
    where no storage is configured), the poll schedule, and the local worker of ``des api``."""

    queue_name: str = DEFAULT_SOURCE_QUEUE_NAME
    poll_schedule: str = DEFAULT_SOURCE_POLL_SCHEDULE
    local_worker: bool = True
    queue_service_uri: str | None = None  # identity-based storage: the account's queue endpoint

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SourceConfig:
        queue = _text(env, SOURCE_QUEUE_NAME) or DEFAULT_SOURCE_QUEUE_NAME
        if not (3 <= len(queue) <= 63) or not all(c.islower() or c.isdigit() or c == "-" for c in queue) or (
            queue.startswith("-") or queue.endswith("-") or "--" in queue
        ):
            raise SettingsError(
                f"setting {SOURCE_QUEUE_NAME} must be a Storage queue name: 3-63 lower-case letters, digits and "
                f"single hyphens, not at either end; got {queue!r}"
            )
        raw = (env.get(SOURCE_LOCAL_WORKER) or "").strip()
        return cls(
            queue_name=queue,
            poll_schedule=_text(env, SOURCE_POLL_SCHEDULE) or DEFAULT_SOURCE_POLL_SCHEDULE,
            local_worker=flag(raw) if raw else True,
            queue_service_uri=_text(env, STORAGE_QUEUE_SERVICE_URI),
        )


def dataverse_from_env(env: Mapping[str, str]) -> DataverseSettings:
    try:
        return DataverseSettings.from_env(env)
    except dataverse_settings.SettingsError as exc:
        raise SettingsError(f"setting {exc}") from exc


@dataclass(frozen=True)
class IdentityConfig:
    """Which credential each Azure client gets (:mod:`shared.identity`): the identity-based
    connections' own settings (``AzureWebJobsStorage__credential``/``__clientId``, the same for
    ``ServiceBusConnection``), and for Key Vault keys and secrets and Azure SQL tokens
    ``DefaultAzureCredential`` with ``AZURE_CLIENT_ID``'s user-assigned identity."""

    storage: CredentialSpec = field(default_factory=lambda: CredentialSpec("default"))
    service_bus: CredentialSpec = field(default_factory=lambda: CredentialSpec("default"))
    default: CredentialSpec = field(default_factory=lambda: CredentialSpec("default"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdentityConfig:
        try:
            return cls(
                credential_spec(env, STORAGE_CONNECTION),
                credential_spec(env, SERVICE_BUS_CONNECTION),
                credential_spec(env, None),
            )
        except CredentialSettingsError as exc:
            raise SettingsError(str(exc)) from exc


APPINSIGHTS_CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"  # set: export telemetry (Azure Monitor)
# "Authorization=AAD;ClientId=<identity>": Entra authentication to Application Insights (local auth off)
APPINSIGHTS_AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"


@dataclass(frozen=True)
class TelemetryConfig:
    """Application Insights (:func:`shared.observability.configure_telemetry`): off without a connection
    string; with ``Authorization=AAD`` the exporter signs in as the named managed identity."""

    connection_string: str | None = None
    entra: bool = False
    client_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelemetryConfig:
        parts: dict[str, str] = {}
        for item in (env.get(APPINSIGHTS_AUTHENTICATION_STRING) or "").split(";"):
            key, sep, value = item.partition("=")
            if sep:
                parts[key.strip().lower()] = value.strip()
        auth = parts.get("authorization", "")
        if auth and auth.upper() != "AAD":
            raise SettingsError(
                f"setting {APPINSIGHTS_AUTHENTICATION_STRING}: Authorization={auth!r}, the only value is AAD"
            )
        return cls(_text(env, APPINSIGHTS_CONNECTION_STRING), bool(auth), parts.get("clientid") or None)


@dataclass(frozen=True)
class AppConfig:
    """Every setting of the function app, the admin API and the ``des`` commands."""

    destination: DestinationConfig | None = None  # set: single-destination mode
    profiles: ProfilesConfig = field(default_factory=ProfilesConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    storage: StorageConfig | None = None
    api: ApiConfig = field(default_factory=ApiConfig)
    service_bus: ServiceBusConfig = field(default_factory=ServiceBusConfig)
    rejects_dir: str = DEFAULT_REJECTS_DIR
    source: SourceConfig = field(default_factory=SourceConfig)
    dataverse: DataverseSettings = field(default_factory=DataverseSettings)
    hosting: Hosting = Hosting.LOCAL
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def __post_init__(self) -> None:
        check_admin_store(self.hosting, self.profiles.store_dsn)

    @property
    def mode(self) -> str:
        return "single destination" if self.destination is not None else "profiles"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppConfig:
        env = os.environ if env is None else env
        hosting = _choice(env, HOSTING, Hosting, Hosting.LOCAL)
        assert isinstance(hosting, Hosting)
        return cls(
            destination=DestinationConfig.from_env(env),
            profiles=ProfilesConfig.from_env(env),
            retry=retry_policy_from_env(env),
            storage=StorageConfig.from_env(env),
            api=ApiConfig.from_env(env),
            service_bus=ServiceBusConfig.from_env(env),
            rejects_dir=env.get(REJECTS_DIR) or DEFAULT_REJECTS_DIR,
            source=SourceConfig.from_env(env),
            dataverse=dataverse_from_env(env),
            hosting=hosting,
            identity=IdentityConfig.from_env(env),
            telemetry=TelemetryConfig.from_env(env),
        )


def check_admin_store(hosting: Hosting, store_dsn: str) -> None:
    """In Azure the admin store cannot be SQLite: Flex Consumption runs the HTTP, blob and Service Bus
    functions on separate instances from a read-only package, so a file store would be one private,
    unwritable copy per instance. The embedded SQLite default stays for local runs."""
    if hosting is Hosting.AZURE and store_dsn.strip().lower().startswith("sqlite"):
        where = store_dsn.split("?", maxsplit=1)[0]
        raise SettingsError(
            f"{HOSTING}=azure: the admin store cannot be SQLite ({ADMIN_STORE}={where!r}). Flex Consumption "
            "runs functions on separate instances from a read-only package, so each would have its own "
            f"unwritable copy. Set {ADMIN_STORE} to the deployment's Azure SQL database "
            "(mssql://<identity client id>@<server>.database.windows.net:1433/<database>"
            "?authentication=ActiveDirectoryManagedIdentity; infra/ sets it)."
        )
