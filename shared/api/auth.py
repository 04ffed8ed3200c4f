"""Who may call the admin API. No anonymous admin access in any mode; ``/health`` is the one
anonymous route. The mode is the explicit setting ``DES_AUTH_MODE`` (:class:`shared.config.AuthMode`),
never guessed from the platform's variables:

* ``local-key`` (default; ``des api``, ``func start``, tests): the key in ``DES_ADMIN_API_KEY`` is
  required, in the ``x-functions-key`` header, as ``Authorization: Bearer <key>`` or as the
  ``?code=<key>`` query parameter (as the Functions host accepts a function key). Without the
  setting every admin route answers 401 and says so.
* ``function-keys`` (Azure): the Functions host has checked the function key (the HTTP function's
  ``AuthLevel.FUNCTION``) before the request gets here. Only behind the Functions host: a local
  server in this mode would check nothing, so it is refused.
* ``entra`` (Azure): App Service authentication has validated the caller's Microsoft Entra token;
  the caller must hold the app role (``DES.Admin`` by default, ``DES_ADMIN_ROLE``) in the
  ``X-MS-CLIENT-PRINCIPAL`` header that App Service sets. App Service strips that header from
  incoming requests only while its authentication is on (``WEBSITE_AUTH_ENABLED``, set by the
  platform), so with it off nobody is let in.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared import config as S
from shared.config import AuthMode

PRINCIPAL_HEADER = "x-ms-client-principal"
KEY_HEADER = "x-functions-key"
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


class AuthError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class AuthConfig:
    api_key: str | None = None
    mode: AuthMode = AuthMode.LOCAL_KEY
    easy_auth_enabled: bool = False  # App Service authentication is on (WEBSITE_AUTH_ENABLED)
    role: str = S.DEFAULT_ADMIN_ROLE

    def __repr__(self) -> str:  # never show the key
        return (
            f"AuthConfig(api_key={'set' if self.api_key else 'unset'}, mode={self.mode.value}, "
            f"easy_auth_enabled={self.easy_auth_enabled}, role={self.role!r})"
        )

    @classmethod
    def of(cls, api: S.ApiConfig, *, hosted: bool = False) -> AuthConfig:
        """From the configuration. ``hosted``: served by the Functions host (function_app.py), the
        only server that checks function keys, so ``function-keys`` is refused otherwise."""
        if api.auth_mode is AuthMode.FUNCTION_KEYS and not hosted:
            raise S.SettingsError(
                f"{S.AUTH_MODE}=function-keys is checked by the Functions host, which is not serving this app: "
                f"use {S.AUTH_MODE}=local-key with {S.ADMIN_API_KEY} for a local server"
            )
        return cls(api_key=api.api_key, mode=api.auth_mode, easy_auth_enabled=api.easy_auth_enabled, role=api.role)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, hosted: bool = False) -> AuthConfig:
        return cls.of(S.ApiConfig.from_env(os.environ if env is None else env), hosted=hosted)

    def authorize(self, headers: Mapping[str, str], code: str | None = None) -> str:
        """Return who the caller is, or raise :class:`AuthError` (401 unauthenticated, 403 forbidden,
        503 when the configured mode cannot authenticate anyone).

        In ``local-key`` mode the key is taken from ``x-functions-key``, ``Authorization: Bearer`` or
        ``code`` (the ``?code=`` query parameter, as the Functions host takes a function key: the URL
        ``des api`` prints opens ``/docs`` locally as it does in Azure)."""
        if self.mode is AuthMode.FUNCTION_KEYS:
            return "function key"
        if self.mode is AuthMode.ENTRA:
            if not self.easy_auth_enabled:
                raise AuthError(
                    503,
                    f"{S.AUTH_MODE}=entra needs App Service authentication, which is off ({S.WEBSITE_AUTH_ENABLED} "
                    "is not true): no caller can be trusted until it is configured (docs/deploy.md)",
                )
            return self._principal(headers.get(PRINCIPAL_HEADER))
        if not self.api_key:
            raise AuthError(401, f"the admin API key is not configured: set {S.ADMIN_API_KEY} (no anonymous access)")
        given = headers.get(KEY_HEADER)
        if not given:
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer":
                given = token.strip()
        if not given:
            given = code
        if not given:
            raise AuthError(
                401, "an admin key is required: x-functions-key header, Authorization: Bearer or ?code="
            )
        if not hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), self.api_key.encode("utf-8", "surrogatepass")
        ):
            raise AuthError(401, "the admin key is not valid")
        return "admin key"

    def _principal(self, encoded: str | None) -> str:
        if not encoded:
            raise AuthError(401, "sign in: App Service authentication sent no client principal")
        try:
            doc = json.loads(base64.b64decode(encoded, validate=False))
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise AuthError(401, "the client principal header is not valid") from exc
        if not isinstance(doc, dict):
            raise AuthError(401, "the client principal header is not valid")
        role_typ = doc.get("role_typ") or ROLE_CLAIMS[1]
        claims = doc.get("claims") or []
        roles = {c.get("val") for c in claims if isinstance(c, dict) and c.get("typ") in (role_typ, *ROLE_CLAIMS)}
        if self.role not in roles:
            raise AuthError(403, f"the app role {self.role!r} is required")
        name_typ = doc.get("name_typ")
        names = [c.get("val") for c in claims if isinstance(c, dict) and c.get("typ") in (name_typ, "name")]
        return str(names[0]) if names and names[0] else "principal"
