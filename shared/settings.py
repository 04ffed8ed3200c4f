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
