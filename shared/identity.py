"""One credential factory for every Azure client: Blob storage, Service Bus, Key Vault keys and
secrets, Azure SQL tokens.

What a client authenticates with is decided by settings only, never guessed from the environment:

* An identity-based connection named ``C`` (``AzureWebJobsStorage``, ``ServiceBusConnection``) uses
  Microsoft's documented settings for it:

  - ``C__credential=managedidentity`` with ``C__clientId`` (a user-assigned identity; the Flex
    Consumption setup) or ``C__managedIdentityResourceId``, or neither (the system-assigned one);
  - ``C__tenantId`` + ``C__clientId`` + ``C__clientSecret``: a service principal (local development);
  - none of those: the default below.

* Everything else (Key Vault keys and secrets, SQL with ``ActiveDirectoryDefault``) and connections
  without their own settings use ``DefaultAzureCredential``; its managed identity is the
  user-assigned one whose client id is ``AZURE_CLIENT_ID`` when that is set (the Bicep sets it to the
  app's identity), and locally it is the developer's ``az``/``azd`` login.

:func:`credential_spec` is the decision (pure, tested for each combination); :class:`Credentials`
builds and caches one azure-identity credential per decision, so token caches are shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

AZURE_CLIENT_ID = "AZURE_CLIENT_ID"  # azure-identity's own setting: the user-assigned managed identity
MANAGED_IDENTITY = "managedidentity"  # the one documented value of <connection>__credential

DEFAULT = "default"
MANAGED = "managed_identity"
CLIENT_SECRET = "client_secret"  # noqa: S105 - a kind of credential, not a secret


class CredentialSettingsError(ValueError):
    """Identity settings that cannot be used as they are (names the setting)."""


@dataclass(frozen=True)
class CredentialSpec:
    """Which credential a client gets. Holds the *name* of the secret setting, never the secret."""

    kind: str  # DEFAULT, MANAGED or CLIENT_SECRET
    client_id: str | None = None
    resource_id: str | None = None
    tenant_id: str | None = None
    secret_setting: str | None = None
    decided_by: str = ""  # the settings that decided, for logs and error messages
    secret: str | None = field(default=None, repr=False)  # the service principal's secret (never shown)

    def describe(self) -> str:
        if self.kind == MANAGED:
            which = (
                f"user-assigned {self.client_id}"
                if self.client_id
                else (f"resource {self.resource_id}" if self.resource_id else "system-assigned")
            )
            return f"managed identity ({which}) from {self.decided_by}"
        if self.kind == CLIENT_SECRET:
            return f"service principal {self.client_id} (tenant {self.tenant_id}) from {self.decided_by}"
        who = f", managed identity {self.client_id}" if self.client_id else ""
        return f"DefaultAzureCredential{who} ({self.decided_by})"


def _get(env: Mapping[str, str], name: str) -> str | None:
    return (env.get(name) or "").strip() or None


def credential_spec(env: Mapping[str, str], connection: str | None = None) -> CredentialSpec:
    """The credential for the identity-based connection ``connection`` (None: a client without one)."""
    default_client = _get(env, AZURE_CLIENT_ID)
    default = CredentialSpec(
        DEFAULT, client_id=default_client, decided_by=AZURE_CLIENT_ID if default_client else "no identity settings"
    )
    if not connection:
        return default
    prefix = f"{connection}__"
    credential = _get(env, f"{prefix}credential")
    client_id = _get(env, f"{prefix}clientId")
    resource_id = _get(env, f"{prefix}managedIdentityResourceId")
    tenant_id = _get(env, f"{prefix}tenantId")
    secret = _get(env, f"{prefix}clientSecret")
    if credential is not None:
        if credential.lower() != MANAGED_IDENTITY:
            raise CredentialSettingsError(
                f"setting {prefix}credential is {credential!r}: the only value is {MANAGED_IDENTITY!r} "
                f"(leave it unset for a service principal or DefaultAzureCredential)"
            )
        if client_id and resource_id:
            raise CredentialSettingsError(
                f"settings {prefix}clientId and {prefix}managedIdentityResourceId both name a managed identity: "
                "set one"
            )
        return CredentialSpec(MANAGED, client_id=client_id, resource_id=resource_id, decided_by=f"{prefix}credential")
    if secret is not None:
        missing = [f"{prefix}{n}" for n, v in (("tenantId", tenant_id), ("clientId", client_id)) if not v]
        if missing:
            raise CredentialSettingsError(f"setting {prefix}clientSecret needs {' and '.join(missing)}")
        return CredentialSpec(
            CLIENT_SECRET,
            client_id=client_id,
            tenant_id=tenant_id,
            secret_setting=f"{prefix}clientSecret",
            decided_by=f"{prefix}clientSecret",
            secret=secret,
        )
    if client_id is not None:
        # Functions reads __clientId only together with __credential=managedidentity (or a secret);
        # alone it would silently be ignored by the host while we used it: refuse the ambiguity.
        raise CredentialSettingsError(
            f"setting {prefix}clientId is set without {prefix}credential={MANAGED_IDENTITY} "
            f"(a user-assigned identity) or {prefix}clientSecret (a service principal)"
        )
    return default


def build_credential(spec: CredentialSpec) -> Any:
    """The azure-identity credential for ``spec`` (imported here: only Azure paths need it)."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

    if spec.kind == MANAGED:
        if spec.resource_id:
            return ManagedIdentityCredential(identity_config={"resource_id": spec.resource_id})
        return ManagedIdentityCredential(client_id=spec.client_id) if spec.client_id else ManagedIdentityCredential()
    if spec.kind == CLIENT_SECRET:
        if not (spec.tenant_id and spec.client_id and spec.secret):
            raise CredentialSettingsError(f"a service principal needs a tenant, a client id and a secret: {spec}")
        return ClientSecretCredential(spec.tenant_id, spec.client_id, spec.secret)
    # Passed even when None: the decision is the settings', not the process environment's.
    return DefaultAzureCredential(
        exclude_interactive_browser_credential=True, managed_identity_client_id=spec.client_id
    )


class Credentials:
    """Credentials built once per distinct :class:`CredentialSpec` and shared by every client that
    gets the same decision (one token cache each). The composition root owns one."""

    def __init__(self, *, build: Callable[[CredentialSpec], Any] = build_credential) -> None:
        self._build = build
        self._made: dict[CredentialSpec, Any] = {}
        self._lock = threading.Lock()

    def get(self, spec: CredentialSpec) -> Any:
        with self._lock:
            made = self._made.get(spec)
            if made is None:
                made = self._made[spec] = self._build(spec)
            return made

    def factory(self, spec: CredentialSpec) -> Callable[[], Any]:
        """A lazy getter (clients that need a credential only on their first Azure call)."""
        return lambda: self.get(spec)
