"""A profile source's bearer tokens: azure-identity credentials for ``<environment-url>/.default``.

Secrets never live in the profile: the client secret and the certificate come from Key Vault secret
URIs (the profile runtime's :class:`~shared.profiles.secrets.SecretResolver`). ``developmentToken``
takes ``DES_DATAVERSE_TOKEN`` (simulators and tests only) and is refused when that setting is unset.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Protocol

from shared.profiles.model import DataverseSource, SourceAuth, SourceAuthKind
from shared.source.dataverse.client import AzureToken, StaticToken, TokenProvider
from shared.source.dataverse.settings import DES_DATAVERSE_TOKEN, DataverseSettings


class SecretSource(Protocol):
    def resolve(self, reference: str) -> str: ...


class SourceAuthError(RuntimeError):
    """The source's credential cannot be built (a missing setting, an unreadable secret)."""


def certificate_bytes(text: str) -> bytes:
    """A certificate with its key as Key Vault keeps it: PEM text, or base64 PFX (a certificate's secret)."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        return stripped.encode("ascii", errors="strict")
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SourceAuthError("the certificate secret is neither PEM nor base64 PFX") from exc


def credential(auth: SourceAuth, secrets: SecretSource) -> Any:  # pragma: no cover - Azure (tests/gated)
    """The azure-identity credential of ``auth`` (thin: checked against Azure in tests/gated)."""
    from azure.identity import (
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    if auth.kind is SourceAuthKind.MANAGED_IDENTITY:
        return ManagedIdentityCredential(client_id=auth.clientId) if auth.clientId else ManagedIdentityCredential()
    if auth.kind is SourceAuthKind.WORKLOAD_IDENTITY:
        return WorkloadIdentityCredential(tenant_id=auth.tenantId, client_id=auth.clientId)
    assert auth.tenantId  # the model requires them for the two kinds below
    assert auth.clientId
    if auth.kind is SourceAuthKind.CLIENT_SECRET:
        assert auth.clientSecretUri
        return ClientSecretCredential(auth.tenantId, auth.clientId, secrets.resolve(auth.clientSecretUri))
    assert auth.certificateUri
    data = certificate_bytes(secrets.resolve(auth.certificateUri))
    return CertificateCredential(auth.tenantId, auth.clientId, certificate_data=data)


def token_provider(source: DataverseSource, settings: DataverseSettings, secrets: SecretSource) -> TokenProvider:
    """Bearer tokens for the source's environment."""
    if source.auth.kind is SourceAuthKind.DEVELOPMENT_TOKEN:
        if not settings.token:
            raise SourceAuthError(
                f"developmentToken authentication needs the setting {DES_DATAVERSE_TOKEN} (simulators and tests "
                "only); in Azure use managedIdentity, workloadIdentity, clientSecret or certificate"
            )
        return StaticToken(settings.token)
    return AzureToken(credential(source.auth, secrets), source.scope)
