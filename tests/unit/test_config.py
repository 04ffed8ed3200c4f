"""The one configuration object: every setting read from an explicit mapping, bad values named."""

from __future__ import annotations

import os

import pytest

from shared import config as S
from shared.retry.policy import RetryPolicy


def test_an_empty_environment_is_profile_mode_with_the_defaults() -> None:
    c = S.AppConfig.from_env({})
    assert c.mode == "profiles"
    assert (c.destination, c.storage) == (None, None)
    assert c.profiles == S.ProfilesConfig()
    assert c.retry == RetryPolicy()
    assert (c.api.max_body_bytes, c.api.role, c.api.auth_mode) == (
        S.DEFAULT_API_MAX_BODY_BYTES, "DES.Admin", S.AuthMode.LOCAL_KEY
    )
    assert c.rejects_dir == S.DEFAULT_REJECTS_DIR
    assert c.batch_bytes == S.DEFAULT_BATCH_BYTES == 2 * 2**20


def test_every_area_reads_its_settings() -> None:
    env = {
        S.DESTINATION_DSN: "sqlite:///x.db", S.DESTINATION_SCHEMA: "crm", S.DESTINATION_PREFIX: "p",
        S.WRITE_DELETE_LOG: "yes", S.WRITE_ATTEMPTS: "5", S.PROFILE_ID: "local", S.REJECTS_DIR: "r",
        S.ADMIN_STORE: "postgresql://h/db", S.ADMIN_STORE_SCHEMA: "des", S.ALLOW_LITERAL_DESTINATIONS: "true",
        S.PROFILE_CACHE_SECONDS: "2.5", S.SECRET_CACHE_SECONDS: "60",
        S.RETRY_COUNT: "3", S.RETRY_INTERVAL_SECONDS: "7", S.RETRY_INLINE_WAIT_SECONDS: "1",
        S.STORAGE_CONNECTION: "UseDevelopmentStorage=true;AccountKey=c2VjcmV0", S.BLOB_KEY: "local-aes:k:AAAA",
        S.BLOB_OLD_KEYS: " old1 , ,old2", S.ADMIN_API_KEY: "Zq-key-9", S.API_MAX_BODY_BYTES: "2048",
        S.AUTH_MODE: "entra", S.WEBSITE_AUTH_ENABLED: "True", S.SERVICE_BUS_QUEUE_NAME: "q",
        S.BATCH_BYTES: "1048576",
    }  # fmt: skip
    c = S.AppConfig.from_env(env)
    assert c.batch_bytes == 1048576
    assert c.mode == "single destination"
    assert c.destination == S.DestinationConfig("sqlite:///x.db", "crm", "p", True, 5, "r", "local")
    assert c.profiles == S.ProfilesConfig("postgresql://h/db", "des", True, 2.5, 60.0, 5)
    assert c.retry == RetryPolicy(3, 7.0, 1.0)
    assert c.storage is not None
    assert (c.storage.blob_key, c.storage.old_keys) == ("local-aes:k:AAAA", ("old1", "old2"))
    assert (c.api.api_key, c.api.max_body_bytes, c.api.auth_mode, c.api.easy_auth_enabled) == (
        "Zq-key-9", 2048, S.AuthMode.ENTRA, True
    )
    assert c.service_bus.queue_name == "q"
    for secret in ("Zq-key-9", "c2VjcmV0"):  # keys never in a repr (logs, tracebacks)
        assert secret not in repr(c)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({S.WRITE_ATTEMPTS: "three"}, S.WRITE_ATTEMPTS),
        ({S.PROFILE_CACHE_SECONDS: "soon"}, S.PROFILE_CACHE_SECONDS),
        ({S.API_MAX_BODY_BYTES: "12"}, S.API_MAX_BODY_BYTES),
        ({S.BATCH_BYTES: "1000"}, S.BATCH_BYTES),
        ({S.BATCH_BYTES: "2MB"}, S.BATCH_BYTES),
        ({S.RETRY_COUNT: "99"}, S.RETRY_COUNT),
        ({S.STORAGE_CONNECTION: "UseDevelopmentStorage=true"}, S.BLOB_KEY),
    ],
)
def test_a_bad_setting_fails_naming_it(env: dict[str, str], named: str) -> None:
    with pytest.raises(S.SettingsError, match=named):
        S.AppConfig.from_env(env)


def test_the_environment_is_read_not_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(S.DESTINATION_DSN, "sqlite:///from-env.db")
    before = dict(os.environ)
    c = S.AppConfig.from_env()
    assert c.destination is not None
    assert c.destination.destination_dsn == "sqlite:///from-env.db"
    assert dict(os.environ) == before
