"""Helpers for the admin API, profile and store tests.

:class:`KeyVaultDouble` is a **test double** of the Azure Key Vault service (no vault runs here):
a ``requests`` transport adapter that speaks Key Vault's secret protocol (the 401 bearer challenge,
then ``GET /secrets/<name>[/<version>]``). The real ``SecretClient`` and azure-core pipeline run
against it, so everything on our side of the HTTP boundary is the production code.
:class:`CredentialDouble` is a test double of a managed identity credential.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from azure.core.credentials import AccessToken

from shared.profiles.secrets import SecretResolver

ADMIN_KEY = "test-admin-key-0123456789"
VAULT = "https://desvault.vault.azure.net"
_SECRET_PATH = re.compile(r"^/secrets/([0-9A-Za-z-]+)(?:/([0-9a-fA-F]{32}))?/?$")


class CredentialDouble:
    """Test double of ManagedIdentityCredential: hands out a fixed token, counts requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.requests.append(scopes)
        return AccessToken("token-double", int(time.time()) + 3600)

    def close(self) -> None:
        pass


class KeyVaultDouble(requests.adapters.HTTPAdapter):
    """Test double of the Key Vault service at the HTTP boundary (see the module docstring)."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.secrets: dict[str, str] = dict(secrets or {})
        self.status: int | None = None  # answer every authorized request with this status
        self.down = False  # refuse connections
        self.gets = 0  # authorized secret reads served

    def _answer(self, request: requests.PreparedRequest, status: int, body: Any, **headers: str) -> requests.Response:
        data = json.dumps(body).encode()
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(data),
            headers={"content-type": "application/json", "content-length": str(len(data)), **headers},
            status=status,
            preload_content=False,
        )
        return self.build_response(request, raw)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if self.down:
            raise requests.exceptions.ConnectionError("connection refused (Key Vault double is down)")
        if not request.headers.get("Authorization"):
            challenge = (
                'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001", '
                'resource="https://vault.azure.net"'
            )
            body = {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer"}}
            return self._answer(request, 401, body, **{"WWW-Authenticate": challenge})
        if self.status is not None:
            return self._answer(request, self.status, {"error": {"code": "Forbidden", "message": "denied"}})
        m = _SECRET_PATH.match(urlsplit(str(request.url)).path)
        if request.method != "GET" or m is None or m.group(1) not in self.secrets:
            return self._answer(request, 404, {"error": {"code": "SecretNotFound", "message": "not found"}})
        self.gets += 1
        name, version = m.group(1), m.group(2) or "0123456789abcdef0123456789abcdef"
        secret: dict[str, Any] = {"value": self.secrets[name], "id": f"{VAULT}/secrets/{name}/{version}"}
        secret["attributes"] = {"enabled": True}
        return self._answer(request, 200, secret)


def vault_resolver(
    vault: KeyVaultDouble, *, allow_literal: bool = False, ttl: float = 300.0, clock: Any = time.monotonic
) -> SecretResolver:
    """A resolver whose real SecretClient talks to ``vault`` through azure-core's RequestsTransport."""
    from azure.core.pipeline.transport import RequestsTransport
    from azure.keyvault.secrets import SecretClient

    def client(vault_url: str, credential: Any) -> SecretClient:
        session = requests.Session()
        session.mount("https://", vault)
        return SecretClient(vault_url, credential, transport=RequestsTransport(session=session), retry_total=0)

    return SecretResolver(
        allow_literal=allow_literal, credential=CredentialDouble, client_factory=client, ttl_seconds=ttl, clock=clock
    )


def secret_uri(name: str) -> str:
    return f"{VAULT}/secrets/{name}"


def auth(key: str = ADMIN_KEY) -> Mapping[str, str]:
    return {"x-functions-key": key}
