"""Settings of the Dataverse source: names once, defaults once, read from a mapping (the environment).

Until ``shared/config.py`` (issue 8) lands this is the source's own frozen settings object; the lead
folds it into ``AppConfig``. Every name here is an app setting (or environment variable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DES_SOURCE_POLL_SCHEDULE = "DES_SOURCE_POLL_SCHEDULE"  # NCRONTAB of the delta timer (function app binding)
DES_SOURCE_POLL_INTERVAL_SECONDS = "DES_SOURCE_POLL_INTERVAL_SECONDS"  # next-poll estimate; des sync's pause
DES_DATAVERSE_TOKEN = "DES_DATAVERSE_TOKEN"  # noqa: S105 - a setting name; a bearer token (simulators, tests); else azure-identity
DES_DATAVERSE_PAGE_SIZE = "DES_DATAVERSE_PAGE_SIZE"  # Prefer: odata.maxpagesize (1..5000)
DES_DATAVERSE_MAX_CONCURRENCY = "DES_DATAVERSE_MAX_CONCURRENCY"  # requests in flight per environment
DES_DATAVERSE_MAX_ATTEMPTS = "DES_DATAVERSE_MAX_ATTEMPTS"  # per request: 5xx, connection errors, 429
DES_DATAVERSE_MAX_RETRY_AFTER_SECONDS = "DES_DATAVERSE_MAX_RETRY_AFTER_SECONDS"  # longer 429 waits end the unit
DES_DATAVERSE_TIMEOUT_SECONDS = "DES_DATAVERSE_TIMEOUT_SECONDS"
DES_DATAVERSE_VERIFY_DELETES = "DES_DATAVERSE_VERIFY_DELETES"  # re-read deleted ids by id (docs/dataverse.md)
DES_DATAVERSE_LEASE_SECONDS = "DES_DATAVERSE_LEASE_SECONDS"  # how long one unit of work owns a cursor
# Authentication when DES_DATAVERSE_TOKEN is not set (the profile's source fields replace these later).
DES_DATAVERSE_AUTH = "DES_DATAVERSE_AUTH"  # managed-identity | client-secret | certificate | workload-identity
DES_DATAVERSE_TENANT_ID = "DES_DATAVERSE_TENANT_ID"
DES_DATAVERSE_CLIENT_ID = "DES_DATAVERSE_CLIENT_ID"
DES_DATAVERSE_CLIENT_SECRET_URI = "DES_DATAVERSE_CLIENT_SECRET_URI"  # noqa: S105 - a Key Vault secret URI
DES_DATAVERSE_CERTIFICATE_PATH = "DES_DATAVERSE_CERTIFICATE_PATH"

DEFAULT_POLL_SCHEDULE = "0 */1 * * * *"  # every minute (DES took about 15)
AUTH_KINDS = ("managed-identity", "client-secret", "certificate", "workload-identity")
MAX_PAGE_SIZE = 5000  # Dataverse's limit for odata.maxpagesize


class SettingsError(ValueError):
    """A setting with a value that cannot be used (the message names the setting)."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How to get a token for ``<environment-url>/.default`` when no bearer token is given."""

    kind: str = "managed-identity"
    tenant_id: str | None = None
    client_id: str | None = None  # the app registration, or a user-assigned managed identity
    client_secret_uri: str | None = None  # Key Vault secret URI holding the client secret
    certificate_path: str | None = None

    def __repr__(self) -> str:  # nothing here is a secret, but keep it short in logs
        return f"AuthSettings(kind={self.kind!r}, tenant_id={self.tenant_id!r}, client_id={self.client_id!r})"


@dataclass(frozen=True, slots=True)
class DataverseSettings:
    page_size: int = MAX_PAGE_SIZE
    max_concurrency: int = 4
    max_attempts: int = 6
    max_retry_after_seconds: float = 300.0
    timeout_seconds: float = 60.0
    verify_deletes: bool = True
    lease_seconds: int = 600
    poll_schedule: str = DEFAULT_POLL_SCHEDULE
    poll_interval_seconds: int = 60
    token: str | None = None
    auth: AuthSettings = AuthSettings()

    def __repr__(self) -> str:  # the token never reaches a log line
        token = "***" if self.token else None
        return (
            f"DataverseSettings(page_size={self.page_size}, max_concurrency={self.max_concurrency}, "
            f"max_attempts={self.max_attempts}, verify_deletes={self.verify_deletes}, "
            f"token={token}, auth={self.auth!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DataverseSettings:
        kind = env.get(DES_DATAVERSE_AUTH, "").strip() or "managed-identity"
        if kind not in AUTH_KINDS:
            raise SettingsError(f"{DES_DATAVERSE_AUTH} must be one of {', '.join(AUTH_KINDS)}; got {kind!r}")
        auth = AuthSettings(
            kind=kind,
            tenant_id=env.get(DES_DATAVERSE_TENANT_ID) or None,
            client_id=env.get(DES_DATAVERSE_CLIENT_ID) or None,
            client_secret_uri=env.get(DES_DATAVERSE_CLIENT_SECRET_URI) or None,
            certificate_path=env.get(DES_DATAVERSE_CERTIFICATE_PATH) or None,
        )
        return cls(
            page_size=_int(env, DES_DATAVERSE_PAGE_SIZE, MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE),
            max_concurrency=_int(env, DES_DATAVERSE_MAX_CONCURRENCY, 4, 1, 52),
            max_attempts=_int(env, DES_DATAVERSE_MAX_ATTEMPTS, 6, 1, 50),
            max_retry_after_seconds=float(_int(env, DES_DATAVERSE_MAX_RETRY_AFTER_SECONDS, 300, 0, 3600)),
            timeout_seconds=float(_int(env, DES_DATAVERSE_TIMEOUT_SECONDS, 60, 1, 600)),
            verify_deletes=_bool(env, DES_DATAVERSE_VERIFY_DELETES, True),
            lease_seconds=_int(env, DES_DATAVERSE_LEASE_SECONDS, 600, 10, 86_400),
            poll_schedule=env.get(DES_SOURCE_POLL_SCHEDULE, "").strip() or DEFAULT_POLL_SCHEDULE,
            poll_interval_seconds=_int(env, DES_SOURCE_POLL_INTERVAL_SECONDS, 60, 1, 86_400),
            token=env.get(DES_DATAVERSE_TOKEN) or None,
            auth=auth,
        )
