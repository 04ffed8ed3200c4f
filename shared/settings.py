"""All settings, read once from the environment (app settings in Azure, local.settings.json locally).

Names are constants so the function app, Bicep and docs agree. A missing required setting fails
fast with a message that names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

SERVICE_BUS_QUEUE_NAME = "ServiceBusQueueName"
SERVICE_BUS_CONNECTION = "ServiceBusConnection"
DESTINATION_DSN = "DES_DESTINATION_DSN"
DESTINATION_SCHEMA = "DES_DESTINATION_SCHEMA"
DESTINATION_PREFIX = "DES_DESTINATION_PREFIX"
WRITE_DELETE_LOG = "DES_WRITE_DELETE_LOG"
WRITE_ATTEMPTS = "DES_WRITE_ATTEMPTS"
REJECTS_DIR = "DES_REJECTS_DIR"

# Admin API, profile store and fan-out (issue 4; read by shared/profiles/runtime.py and shared/api).
ADMIN_STORE = "DES_ADMIN_STORE"  # DSN of the profile/metrics store (sqlite:///, postgresql://, mssql://)
ADMIN_STORE_SCHEMA = "DES_ADMIN_STORE_SCHEMA"  # PostgreSQL / SQL Server schema for the store's tables
ADMIN_API_KEY = "DES_ADMIN_API_KEY"  # the admin key outside Azure (x-functions-key or Bearer)
ADMIN_ROLE = "DES_ADMIN_ROLE"  # Entra app role required when App Service authentication is on
ALLOW_LITERAL_DESTINATIONS = "DES_ALLOW_LITERAL_DESTINATIONS"  # development only
PROFILE_CACHE_SECONDS = "DES_PROFILE_CACHE_SECONDS"
SECRET_CACHE_SECONDS = "DES_SECRET_CACHE_SECONDS"  # noqa: S105 - a setting name, not a secret
MANAGED_IDENTITY_CLIENT_ID = "DES_MANAGED_IDENTITY_CLIENT_ID"  # user-assigned identity for Key Vault
KEYVAULT_DEFAULT_CREDENTIAL = "DES_KEYVAULT_DEFAULT_CREDENTIAL"  # development: DefaultAzureCredential
API_MAX_BODY_BYTES = "DES_API_MAX_BODY_BYTES"
API_URL = "DES_API_URL"  # where `des profiles|failures|metrics` find the API
DEFAULT_ADMIN_STORE = "sqlite:///des-admin.db"
DEFAULT_ADMIN_ROLE = "DES.Admin"
DEFAULT_PROFILE_CACHE_SECONDS = 15.0
DEFAULT_SECRET_CACHE_SECONDS = 300.0
DEFAULT_API_MAX_BODY_BYTES = 1_048_576
DEFAULT_API_URL = "http://127.0.0.1:7072"

# Blob storage paths (issue 3; read by shared/storage/config.py and shared/retry.py).
STORAGE_CONNECTION = "AzureWebJobsStorage"  # connection string, or __blobServiceUri / __accountName (identity)
BLOB_KEY = "DES_BLOB_KEY"  # current key-encryption key: Key Vault key URL, local-aes:..., local-rsa:...
BLOB_OLD_KEYS = "DES_BLOB_OLD_KEYS"  # comma-separated older keys, still used to decrypt (rotation)
PROFILE_ID = "DES_PROFILE_ID"  # the profile of the settings-configured destination (until the profile store)
RETRY_COUNT = "DES_RETRY_COUNT"  # 0-20, default 12 (a profile's retryCount)
RETRY_INTERVAL_SECONDS = "DES_RETRY_INTERVAL_SECONDS"  # 0-3600, default 5 (a profile's retryIntervalSeconds)
RETRY_INLINE_WAIT_SECONDS = "DES_RETRY_INLINE_WAIT_SECONDS"  # longest a retry invocation waits for an interval
RETRY_BLOB_PATH = "DES_RETRY_BLOB_PATH"  # blob trigger path, default retry/{name}
SERVICEBUS_MAX_MESSAGE_BYTES = "DES_SERVICEBUS_MAX_MESSAGE_BYTES"  # 262144 Standard, 1048576+ Premium
DEFAULT_PROFILE_ID = "default"
DEFAULT_RETRY_BLOB_PATH = "retry/{name}"
RETRY_SWEEP_SCHEDULE = "0 * * * * *"  # the retry sweeper timer: every minute
BLOB_POISON_QUEUE = "webjobs-blobtrigger-poison"  # where the Functions host puts blobs that kept failing

DEFAULT_WRITE_ATTEMPTS = 3
DEFAULT_REJECTS_DIR = "des-rejects"


class SettingsError(RuntimeError):
    pass


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    destination_dsn: str
    destination_schema: str | None = None
    destination_prefix: str = ""
    write_delete_log: bool = False
    write_attempts: int = DEFAULT_WRITE_ATTEMPTS
    rejects_dir: str = DEFAULT_REJECTS_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        dsn = env.get(DESTINATION_DSN, "").strip()
        if not dsn:
            raise SettingsError(
                f"setting {DESTINATION_DSN} is required (for example sqlite:///des.db or postgresql://...)"
            )
        try:
            attempts = int(env.get(WRITE_ATTEMPTS, DEFAULT_WRITE_ATTEMPTS))
        except ValueError as exc:
            raise SettingsError(f"setting {WRITE_ATTEMPTS} must be a whole number") from exc
        return cls(
            destination_dsn=dsn,
            destination_schema=env.get(DESTINATION_SCHEMA) or None,
            destination_prefix=env.get(DESTINATION_PREFIX, ""),
            write_delete_log=_flag(env.get(WRITE_DELETE_LOG)),
            write_attempts=attempts,
            rejects_dir=env.get(REJECTS_DIR) or DEFAULT_REJECTS_DIR,
        )
