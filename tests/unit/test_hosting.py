"""Hosting and auth mode are explicit settings (issue 10): parsing, the SQLite refusal in Azure, and
the function-keys mode refused where no Functions host checks keys."""

from __future__ import annotations

import pytest

from shared.hosting import AUTH_MODE, HOSTING, AuthMode, Hosting, HostingConfig, HostingError

pytestmark = pytest.mark.unit


def test_defaults_are_local_with_the_local_key() -> None:
    cfg = HostingConfig.from_env({})
    assert cfg == HostingConfig(Hosting.LOCAL, AuthMode.LOCAL_KEY)
    assert not cfg.in_azure
    assert not cfg.host_checks_function_keys


def test_instance_variables_of_the_platform_decide_nothing() -> None:
    env = {"WEBSITE_INSTANCE_ID": "abc", "WEBSITE_AUTH_ENABLED": "True", "FUNCTIONS_WORKER_RUNTIME": "python"}
    assert HostingConfig.from_env(env) == HostingConfig()


@pytest.mark.parametrize(
    ("value", "mode", "host_checks"),
    [
        ("function-keys", AuthMode.FUNCTION_KEYS, True),
        ("ENTRA", AuthMode.ENTRA, False),
        ("local-key", AuthMode.LOCAL_KEY, False),
    ],
)
def test_auth_modes(value: str, mode: AuthMode, host_checks: bool) -> None:
    cfg = HostingConfig.from_env({AUTH_MODE: value, HOSTING: "azure"})
    assert cfg.auth_mode is mode
    assert cfg.in_azure
    assert cfg.host_checks_function_keys is host_checks


@pytest.mark.parametrize(("name", "value"), [(AUTH_MODE, "keys"), (AUTH_MODE, "anonymous"), (HOSTING, "cloud")])
def test_unknown_values_are_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(HostingError, match=f"setting {name} is '{value}': use one of"):
        HostingConfig.from_env({name: value})


@pytest.mark.parametrize("dsn", ["sqlite:///des-admin.db", "SQLITE:////home/site/wwwroot/des-admin.db"])
def test_sqlite_admin_store_is_refused_in_azure_with_the_fix(dsn: str) -> None:
    with pytest.raises(HostingError) as err:
        HostingConfig(Hosting.AZURE).check_admin_store(dsn)
    message = str(err.value)
    assert "DES_HOSTING=azure" in message
    assert "DES_ADMIN_STORE" in message
    assert "Azure SQL" in message


def test_sqlite_admin_store_stays_the_local_default() -> None:
    HostingConfig(Hosting.LOCAL).check_admin_store("sqlite:///des-admin.db")
    HostingConfig(Hosting.AZURE).check_admin_store(
        "mssql://id@sql-x.database.windows.net:1433/db?authentication=ActiveDirectoryManagedIdentity"
    )


def test_function_keys_need_the_functions_host() -> None:
    cfg = HostingConfig(auth_mode=AuthMode.FUNCTION_KEYS)
    cfg.check_served_by(behind_functions_host=True)
    with pytest.raises(HostingError, match="use DES_AUTH_MODE=local-key"):
        cfg.check_served_by(behind_functions_host=False)
    HostingConfig(auth_mode=AuthMode.ENTRA).check_served_by(behind_functions_host=False)
