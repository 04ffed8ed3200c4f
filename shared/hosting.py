"""Where the app runs and who may call its admin API: explicit settings, never guessed.

* ``DES_HOSTING`` — ``local`` (default: ``func start``, ``des api``, tests) or ``azure`` (set by
  infra/). In ``azure`` the admin store cannot be SQLite: Flex Consumption runs the HTTP, blob and
  Service Bus functions on separate instances from a read-only package, so a file store would be
  one private, unwritable copy per instance. The embedded SQLite default stays for local runs.
* ``DES_AUTH_MODE`` — how the admin API authenticates:

  - ``local-key`` (default): the app checks ``DES_ADMIN_API_KEY`` (``x-functions-key`` or
    ``Authorization: Bearer``); the Functions route is anonymous so the host does not ask for a
    function key of its own.
  - ``function-keys``: the Functions host checks function keys (``AuthLevel.FUNCTION``) before a
    request reaches the app; only meaningful behind the Functions host.
  - ``entra``: App Service authentication validates Microsoft Entra tokens and the app requires the
    app role (``DES_ADMIN_ROLE``) in the client principal it forwards; the Functions route is
    anonymous, as Microsoft documents for app-level security, so Entra-only callers need no key.

``/health`` is anonymous in every mode (its own anonymous function in Azure).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

HOSTING = "DES_HOSTING"
AUTH_MODE = "DES_AUTH_MODE"


class HostingError(ValueError):
    """A hosting or auth setting that cannot work (names the setting and the fix)."""


class Hosting(str, Enum):
    LOCAL = "local"
    AZURE = "azure"


class AuthMode(str, Enum):
    LOCAL_KEY = "local-key"
    FUNCTION_KEYS = "function-keys"
    ENTRA = "entra"


def _choice(env: Mapping[str, str], name: str, kind: type[Enum], default: Enum) -> Enum:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise HostingError(f"setting {name} is {raw!r}: use one of {allowed}") from None


@dataclass(frozen=True)
class HostingConfig:
    hosting: Hosting = Hosting.LOCAL
    auth_mode: AuthMode = AuthMode.LOCAL_KEY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HostingConfig:
        env = os.environ if env is None else env
        hosting = _choice(env, HOSTING, Hosting, Hosting.LOCAL)
        mode = _choice(env, AUTH_MODE, AuthMode, AuthMode.LOCAL_KEY)
        assert isinstance(hosting, Hosting)
        assert isinstance(mode, AuthMode)
        return cls(hosting, mode)

    @property
    def in_azure(self) -> bool:
        return self.hosting is Hosting.AZURE

    @property
    def host_checks_function_keys(self) -> bool:
        """The Functions route of the admin API requires a function key (``AuthLevel.FUNCTION``);
        otherwise it is anonymous and the app authenticates every call itself."""
        return self.auth_mode is AuthMode.FUNCTION_KEYS

    def check_admin_store(self, dsn: str, setting: str = "DES_ADMIN_STORE") -> None:
        """Refuse a SQLite admin store in Azure, with what to do instead."""
        if self.in_azure and dsn.strip().lower().startswith("sqlite"):
            where = dsn.split("?", maxsplit=1)[0]
            raise HostingError(
                f"{HOSTING}=azure: the admin store cannot be SQLite ({setting}={where!r}). Flex "
                "Consumption runs functions on separate instances from a read-only package, so each would "
                f"have its own unwritable copy. Set {setting} to the Azure SQL database of the deployment "
                "(mssql://<identity client id>@<server>.database.windows.net:1433/<database>"
                "?authentication=ActiveDirectoryManagedIdentity; infra/ sets it)."
            )

    def check_served_by(self, behind_functions_host: bool) -> None:
        """``function-keys`` needs the Functions host in front; without it nothing checks a key."""
        if self.auth_mode is AuthMode.FUNCTION_KEYS and not behind_functions_host:
            raise HostingError(
                f"{AUTH_MODE}=function-keys is checked by the Functions host, which is not serving this app: "
                f"use {AUTH_MODE}=local-key (with DES_ADMIN_API_KEY) for a local server"
            )
