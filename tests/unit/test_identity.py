"""The credential factory (issue 10): every identity-setting combination, and the built credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

from shared.identity import (
    AZURE_CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT,
    MANAGED,
    Credentials,
    CredentialSettingsError,
    CredentialSpec,
    build_credential,
    credential_spec,
)

pytestmark = pytest.mark.unit

UAMI = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-8888-7777-6666-555555555555"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
RID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-des"


def test_flex_consumption_settings_pick_the_user_assigned_identity() -> None:
    env = {
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": UAMI,
        "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net/",
    }
    spec = credential_spec(env, "AzureWebJobsStorage")
    assert spec == CredentialSpec(MANAGED, client_id=UAMI, decided_by="AzureWebJobsStorage__credential")
    assert "user-assigned" in spec.describe()


def test_managed_identity_without_client_id_is_the_system_assigned_one() -> None:
    spec = credential_spec({"ServiceBusConnection__credential": "ManagedIdentity"}, "ServiceBusConnection")
    assert spec.kind == MANAGED
    assert spec.client_id is None
    assert spec.resource_id is None
    assert "system-assigned" in spec.describe()


def test_managed_identity_by_resource_id() -> None:
    env = {"C__credential": "managedidentity", "C__managedIdentityResourceId": RID}
    assert credential_spec(env, "C") == CredentialSpec(MANAGED, resource_id=RID, decided_by="C__credential")


def test_connection_settings_win_over_azure_client_id() -> None:
    env = {AZURE_CLIENT_ID: OTHER, "C__credential": "managedidentity", "C__clientId": UAMI}
    assert credential_spec(env, "C").client_id == UAMI
    assert credential_spec(env, None).client_id == OTHER  # clients without a connection: AZURE_CLIENT_ID


def test_service_principal_with_a_secret() -> None:
    env = {"C__tenantId": TENANT, "C__clientId": UAMI, "C__clientSecret": "s3cret"}
    spec = credential_spec(env, "C")
    assert spec == CredentialSpec(
        CLIENT_SECRET, client_id=UAMI, tenant_id=TENANT, secret_setting="C__clientSecret", decided_by="C__clientSecret",
        secret="s3cret",
    )  # fmt: skip
    assert "s3cret" not in repr(spec)
    assert "s3cret" not in spec.describe()


@pytest.mark.parametrize(
    ("env", "connection"),
    [
        ({}, None),
        ({}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "AzureWebJobsStorage"),
    ],
)
def test_nothing_set_is_default_credential_without_client_id(env: Mapping[str, str], connection: str | None) -> None:
    spec = credential_spec(env, connection)
    assert spec.kind == DEFAULT
    assert spec.client_id is None


def test_azure_client_id_is_the_default_credentials_managed_identity() -> None:
    spec = credential_spec({AZURE_CLIENT_ID: UAMI}, "ServiceBusConnection")
    assert spec == CredentialSpec(DEFAULT, client_id=UAMI, decided_by=AZURE_CLIENT_ID)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"C__credential": "connectionstring"}, "C__credential is 'connectionstring'"),
        ({"C__credential": "managedidentity", "C__clientId": UAMI, "C__managedIdentityResourceId": RID}, "set one"),
        ({"C__clientSecret": "x", "C__clientId": UAMI}, "needs C__tenantId"),
        ({"C__clientSecret": "x"}, "needs C__tenantId and C__clientId"),
        ({"C__clientId": UAMI}, "without C__credential=managedidentity"),
    ],
)
def test_unusable_combinations_are_refused_with_the_setting_named(env: Mapping[str, str], message: str) -> None:
    with pytest.raises(CredentialSettingsError, match=message):
        credential_spec(env, "C")


def test_built_credentials_are_the_azure_identity_classes() -> None:
    env = {"C__clientSecret": "s3cret", "C__tenantId": TENANT, "C__clientId": UAMI}
    assert isinstance(build_credential(CredentialSpec(MANAGED, client_id=UAMI)), ManagedIdentityCredential)
    assert isinstance(build_credential(CredentialSpec(MANAGED, resource_id=RID)), ManagedIdentityCredential)
    assert isinstance(build_credential(credential_spec(env, "C")), ClientSecretCredential)
    assert isinstance(build_credential(CredentialSpec(DEFAULT, client_id=UAMI)), DefaultAzureCredential)


def test_one_credential_per_distinct_decision_shared_by_clients() -> None:
    built: list[CredentialSpec] = []

    def build(spec: CredentialSpec) -> Any:
        built.append(spec)
        return object()

    env = {
        AZURE_CLIENT_ID: UAMI,
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": UAMI,
        "ServiceBusConnection__credential": "managedidentity",
        "ServiceBusConnection__clientId": UAMI,
    }
    creds = Credentials(build=build)
    storage = creds.get(credential_spec(env, "AzureWebJobsStorage"))
    assert creds.get(credential_spec(env, "AzureWebJobsStorage")) is storage
    default = creds.factory(credential_spec(env, None))
    assert default() is default()  # Key Vault keys, secrets, SQL
    assert creds.get(credential_spec(env, "ServiceBusConnection")) is not default()
    assert len(built) == 3  # storage and Service Bus decide alike but name different settings
