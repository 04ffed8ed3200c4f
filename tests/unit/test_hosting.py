"""Hosting and auth mode are explicit settings (issue 10): parsing, and the SQLite admin store
refused in Azure with what to do instead."""

from __future__ import annotations

import pytest

from shared import config as S
from shared.config import AppConfig, AuthMode, Hosting, SettingsError

pytestmark = pytest.mark.unit

AZURE_SQL = "mssql://id@sql-x.database.windows.net:1433/db?authentication=ActiveDirectoryManagedIdentity"


def test_defaults_are_local_with_the_local_key() -> None:
    cfg = AppConfig.from_env({})
    assert cfg.hosting is Hosting.LOCAL
    assert cfg.api.auth_mode is AuthMode.LOCAL_KEY
    assert not cfg.api.host_checks_function_keys


def test_the_platforms_instance_variables_decide_nothing() -> None:
    env = {"WEBSITE_INSTANCE_ID": "abc", "WEBSITE_SITE_NAME": "func-x", "FUNCTIONS_WORKER_RUNTIME": "python"}
    cfg = AppConfig.from_env(env)
    assert cfg.hosting is Hosting.LOCAL
    assert cfg.api.auth_mode is AuthMode.LOCAL_KEY


@pytest.mark.parametrize(
    ("value", "mode", "host_checks"),
    [
        ("function-keys", AuthMode.FUNCTION_KEYS, True),
        ("ENTRA", AuthMode.ENTRA, False),
        ("local-key", AuthMode.LOCAL_KEY, False),
    ],
)
def test_auth_modes(value: str, mode: AuthMode, host_checks: bool) -> None:
    cfg = AppConfig.from_env({S.AUTH_MODE: value, S.HOSTING: "azure", S.ADMIN_STORE: AZURE_SQL})
    assert cfg.api.auth_mode is mode
    assert cfg.hosting is Hosting.AZURE
    assert cfg.api.host_checks_function_keys is host_checks


@pytest.mark.parametrize(("name", "value"), [(S.AUTH_MODE, "keys"), (S.AUTH_MODE, "anonymous"), (S.HOSTING, "cloud")])
def test_unknown_values_are_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"setting {name} is '{value}': use one of"):
        AppConfig.from_env({name: value})


@pytest.mark.parametrize("store", [None, "sqlite:///des-admin.db", "SQLITE:////home/site/wwwroot/des-admin.db"])
def test_sqlite_admin_store_is_refused_in_azure_with_the_fix(store: str | None) -> None:
    env = {S.HOSTING: "azure"} | ({S.ADMIN_STORE: store} if store else {})  # None: the embedded default
    with pytest.raises(SettingsError) as err:
        AppConfig.from_env(env)
    message = str(err.value)
    assert "DES_HOSTING=azure" in message
    assert "DES_ADMIN_STORE" in message
    assert "Azure SQL" in message


def test_sqlite_admin_store_stays_the_local_default() -> None:
    assert AppConfig.from_env({}).profiles.store_dsn.startswith("sqlite")
    assert AppConfig.from_env({S.HOSTING: "azure", S.ADMIN_STORE: AZURE_SQL}).profiles.store_dsn == AZURE_SQL


# ------------------------------------------------------------------ credentials from the settings
UAMI = "11111111-2222-3333-4444-555555555555"
FLEX = {
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": UAMI,
    "AzureWebJobsStorage__blobServiceUri": "https://stdes.blob.core.windows.net/",
    "ServiceBusConnection__credential": "managedidentity",
    "ServiceBusConnection__clientId": UAMI,
    "ServiceBusConnection__fullyQualifiedNamespace": "sb-des.servicebus.windows.net",
    "AZURE_CLIENT_ID": UAMI,
    "DES_BLOB_KEY": "local-aes:k1:aGBgz1rJzvdHE1b1d_x138hnsgQ-EMHmK-3B6-uJmHI",
}


def test_the_flex_settings_give_every_client_the_user_assigned_identity() -> None:
    from shared.identity import MANAGED

    identity = AppConfig.from_env(FLEX).identity
    assert (identity.storage.kind, identity.storage.client_id) == (MANAGED, UAMI)
    assert (identity.service_bus.kind, identity.service_bus.client_id) == (MANAGED, UAMI)
    assert identity.default.client_id == UAMI  # Key Vault keys and secrets, SQL: DefaultAzureCredential


def test_an_unusable_identity_setting_fails_the_configuration() -> None:
    with pytest.raises(SettingsError, match="AzureWebJobsStorage__clientId is set without"):
        AppConfig.from_env({"AzureWebJobsStorage__clientId": UAMI})


class FakeTokenCredential:
    """A fake azure-core TokenCredential (never asked for a token here: no request is made)."""

    def __init__(self, spec: object) -> None:
        self.spec = spec

    def get_token(self, *scopes: str, **kwargs: object) -> object:  # pragma: no cover - not called
        raise AssertionError("no token is needed to build the clients")


def test_the_root_opens_storage_with_the_storage_connections_credential() -> None:
    from shared.identity import Credentials, CredentialSpec
    from shared.root import open_storage

    built: list[CredentialSpec] = []

    def build(spec: CredentialSpec) -> FakeTokenCredential:
        built.append(spec)
        return FakeTokenCredential(spec)

    cfg = AppConfig.from_env(FLEX)
    storage = open_storage(cfg.storage, cfg.identity, Credentials(build=build))
    assert storage is not None
    assert built == [cfg.identity.storage]  # a local key needs no vault credential
    vault = dict(FLEX, DES_BLOB_KEY="https://kv-des.vault.azure.net/keys/des-blob-kek")
    cfg = AppConfig.from_env(vault)
    built.clear()
    open_storage(cfg.storage, cfg.identity, Credentials(build=build))
    assert set(built) == {cfg.identity.storage, cfg.identity.default}
