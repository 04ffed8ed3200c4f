"""Destination secrets from Key Vault: the real SecretClient and azure-core pipeline against
:class:`tests.support.admin.KeyVaultDouble` (a test double of the service at the HTTP boundary),
the cache, error classification, the literal policy, and no secret in any log line."""

from __future__ import annotations

import logging

import pytest

from shared.profiles.secrets import LiteralNotAllowed, SecretError, SecretResolver
from tests.support.admin import KeyVaultDouble, secret_uri, vault_resolver

pytestmark = pytest.mark.unit

SECRET = "postgresql://des:Very-Secret-Pw-9@db.internal:5432/crm"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_resolves_through_the_bearer_challenge_and_caches(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    vault = KeyVaultDouble({"reporting-db": SECRET})
    clock = Clock()
    resolver = vault_resolver(vault, ttl=60, clock=clock)
    assert resolver.resolve(secret_uri("reporting-db")) == SECRET
    assert resolver.resolve(secret_uri("reporting-db")) == SECRET
    assert vault.gets == 1  # the second came from the cache
    clock.now += 61
    vault.secrets["reporting-db"] = SECRET.replace("crm", "crm2")  # rotated
    assert resolver.resolve(secret_uri("reporting-db")).endswith("/crm2")
    assert vault.gets == 2
    assert "Very-Secret-Pw-9" not in caplog.text


def test_a_versioned_uri_is_cached_apart() -> None:
    vault = KeyVaultDouble({"db": SECRET})
    resolver = vault_resolver(vault)
    resolver.resolve(secret_uri("db"))
    resolver.resolve(secret_uri("db") + "/0123456789abcdef0123456789abcdef")
    assert vault.gets == 2


def test_missing_secret_is_permanent_and_named() -> None:
    resolver = vault_resolver(KeyVaultDouble())
    with pytest.raises(SecretError) as info:
        resolver.resolve(secret_uri("nope"))
    assert not info.value.transient
    assert "'nope'" in str(info.value)


def test_forbidden_is_permanent_and_says_which_role() -> None:
    vault = KeyVaultDouble({"db": SECRET})
    vault.status = 403
    with pytest.raises(SecretError) as info:
        vault_resolver(vault).resolve(secret_uri("db"))
    assert not info.value.transient
    assert "Key Vault Secrets User" in str(info.value)


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_outage_are_transient(status: int) -> None:
    vault = KeyVaultDouble({"db": SECRET})
    vault.status = status
    with pytest.raises(SecretError) as info:
        vault_resolver(vault).resolve(secret_uri("db"))
    assert info.value.transient


def test_unreachable_vault_is_transient() -> None:
    vault = KeyVaultDouble({"db": SECRET})
    vault.down = True
    with pytest.raises(SecretError) as info:
        vault_resolver(vault).resolve(secret_uri("db"))
    assert info.value.transient


def test_forget_drops_the_cached_value() -> None:
    vault = KeyVaultDouble({"db": SECRET})
    resolver = vault_resolver(vault)
    resolver.resolve(secret_uri("db"))
    resolver.forget(secret_uri("db"))
    resolver.resolve(secret_uri("db"))
    assert vault.gets == 2


def test_literal_connection_strings_only_where_allowed() -> None:
    with pytest.raises(LiteralNotAllowed) as info:
        SecretResolver(allow_literal=False).resolve(SECRET)
    assert "Very-Secret" not in str(info.value)
    assert "DES_ALLOW_LITERAL_DESTINATIONS" in str(info.value)
    assert SecretResolver(allow_literal=True).resolve(SECRET) == SECRET


def test_the_default_credential_is_the_settings_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity import DefaultAzureCredential

    from shared.profiles.secrets import default_vault_credential

    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    assert isinstance(default_vault_credential(), DefaultAzureCredential)
