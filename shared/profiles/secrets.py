"""Destination connection strings from Key Vault secrets (azure-keyvault-secrets, managed identity).

A profile's ``destination`` is a Key Vault secret URI; the secret's value is the connection string.
Values are cached for a few minutes per URI (rotation: a new secret version is picked up when the
entry expires, or at once for a URI that names the version). A literal connection string is used
as is only when the development setting allows it.

The resolved value is a secret: it is never logged, and errors never quote it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.profiles.model import DestinationKind, KeyVaultSecretRef, destination_kind

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 300.0


class SecretError(RuntimeError):
    """The destination's connection string could not be had. ``transient``: worth retrying later."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class LiteralNotAllowed(SecretError):
    def __init__(self) -> None:
        super().__init__(
            "literal connection strings as destinations are allowed only in development "
            "(DES_ALLOW_LITERAL_DESTINATIONS); store the connection string in Key Vault and give the "
            "secret URI",
            transient=False,
        )


@dataclass
class _Entry:
    value: str
    expires: float


def default_vault_credential() -> Any:
    """Without a credential from the composition root: the settings' default one (shared/identity.py:
    DefaultAzureCredential with ``AZURE_CLIENT_ID``'s user-assigned identity)."""
    from shared.identity import build_credential, credential_spec

    return build_credential(credential_spec(os.environ, None))


class SecretResolver:
    """Turns a profile's destination into a connection string."""

    def __init__(
        self,
        *,
        allow_literal: bool = False,
        credential: Callable[[], Any] | None = None,
        client_factory: Callable[[str, Any], Any] | None = None,
        ttl_seconds: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow_literal = allow_literal
        self._credential_factory = credential or default_vault_credential
        self._client_factory = client_factory or _secret_client
        self.ttl = ttl_seconds
        self.clock = clock
        self._credential: Any = None
        self._clients: dict[str, Any] = {}
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def check_allowed(self, destination: str) -> None:
        """Raise :class:`LiteralNotAllowed` for a literal where only Key Vault references are allowed."""
        if destination_kind(destination) is DestinationKind.LITERAL and not self.allow_literal:
            raise LiteralNotAllowed()

    def resolve(self, destination: str) -> str:
        if destination_kind(destination) is DestinationKind.LITERAL:
            self.check_allowed(destination)
            return destination
        ref = KeyVaultSecretRef.parse(destination)
        if ref is None:
            raise SecretError("destination is not a Key Vault secret URI", transient=False)
        now = self.clock()
        with self._lock:
            hit = self._cache.get(ref.uri)
            if hit is not None and hit.expires > now:
                return hit.value
        value = self._fetch(ref)
        with self._lock:
            self._cache[ref.uri] = _Entry(value, now + self.ttl)
        return value

    def forget(self, destination: str) -> None:
        """Drop a cached value (after the destination refused the credentials, say)."""
        ref = KeyVaultSecretRef.parse(destination)
        if ref is not None:
            with self._lock:
                self._cache.pop(ref.uri, None)

    def _client(self, vault_url: str) -> Any:
        with self._lock:
            client = self._clients.get(vault_url)
            if client is None:
                if self._credential is None:
                    self._credential = self._credential_factory()
                client = self._clients[vault_url] = self._client_factory(vault_url, self._credential)
            return client

    def _fetch(self, ref: KeyVaultSecretRef) -> str:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        where = f"Key Vault secret {ref.name!r} in {ref.vault_url}"
        try:
            secret = self._client(ref.vault_url).get_secret(ref.name, ref.version)
        except ResourceNotFoundError as exc:
            raise SecretError(f"{where} does not exist", transient=False) from exc
        except ClientAuthenticationError as exc:
            raise SecretError(
                f"cannot authenticate to Key Vault for {where} (managed identity): {type(exc).__name__}",
                transient=True,
            ) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise SecretError(f"Key Vault did not answer for {where}: {type(exc).__name__}", transient=True) from exc
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 403:
                raise SecretError(
                    f"the app's identity may not read {where} (403): grant it 'Key Vault Secrets User'",
                    transient=False,
                ) from exc
            raise SecretError(
                f"Key Vault refused {where} ({status})", transient=status in (429, 500, 502, 503, 504)
            ) from exc
        except ValueError as exc:  # the SDK's own refusals, e.g. a challenge for another cloud's vault domain
            raise SecretError(
                f"Key Vault could not be used for {where}: {str(exc).split('. ')[0]}", transient=False
            ) from exc
        value = getattr(secret, "value", None)
        if not value:
            raise SecretError(f"{where} is empty", transient=False)
        log.info("resolved destination from %s", where)
        return str(value)


def _secret_client(vault_url: str, credential: Any) -> Any:
    from azure.keyvault.secrets import SecretClient

    # A vault that does not answer must not hold an admin request (or a batch) for minutes: azure-core's
    # defaults are 10 retries with a backoff up to 2 minutes and 300 s socket timeouts. A failure here
    # is transient to the caller, which has its own retries (the batch's retry blob, the admin's click).
    return SecretClient(
        vault_url=vault_url, credential=credential, retry_total=2, retry_backoff_max=4,
        connection_timeout=10, read_timeout=30,
    )  # fmt: skip
