"""Connections to SQL Server and Azure SQL Database through pyodbc.

Two DSN forms (documented in docs/sqlserver.md):

* ``mssql://user:password@host:port/database?driver=ODBC+Driver+18+for+SQL+Server&encrypt=yes``
  builds an ODBC connection string; other query parameters pass through as ODBC keywords
  (``TrustServerCertificate=yes``, ``HostNameInCertificate=...``).
* ``mssql+odbc:///?odbc_connect=<url-encoded ODBC connection string>`` takes a raw ODBC
  connection string, as SQLAlchemy does.

``Authentication=ActiveDirectoryDefault`` (DefaultAzureCredential) and
``Authentication=ActiveDirectoryManagedIdentity`` / ``ActiveDirectoryMsi`` (ManagedIdentityCredential;
the user name, if any, is the client id of a user-assigned identity) are served here: an access
token for ``https://database.windows.net/.default`` comes from azure-identity, imported only when
such a DSN is used, and goes to the driver before connecting as ``SQL_COPT_SS_ACCESS_TOKEN``. Any
other ``Authentication`` value is left to the driver. Nothing here imports pyodbc at module level,
so DSNs can be parsed and redacted where the ODBC driver manager is not installed.

Used by the SQL Server destination and by anything else that keeps data in Azure SQL.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from shared.engine.ports import ConnectionFailed, UnsupportedDestination

if TYPE_CHECKING:
    import pyodbc  # type: ignore[import-not-found]

log = logging.getLogger(__name__)

SQL_COPT_SS_ACCESS_TOKEN = 1256  # msodbcsql.h: pre-connect attribute taking an ACCESSTOKEN struct
ENTRA_SCOPE = "https://database.windows.net/.default"
DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
DEFAULT_PORT = 1433
LOGIN_TIMEOUT_S = 30

ENTRA_DEFAULT = "activedirectorydefault"
ENTRA_MANAGED_IDENTITY = ("activedirectorymanagedidentity", "activedirectorymsi")
_SECRET_KEYS = {"pwd", "password", "accesstoken"}
_KEYWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,63}$")
# Query parameters of the mssql:// form that are ours, not ODBC keywords.
_OWN_PARAMS = {"driver", "encrypt", "authentication", "login_timeout", "query_timeout"}


class DsnError(UnsupportedDestination):
    """A SQL Server DSN or ODBC connection string that cannot be used (a usage error)."""


@dataclass(frozen=True)
class OdbcTarget:
    """What to connect to: an ODBC connection string, and how to get an Entra token if needed."""

    connection_string: str  # secrets included (PWD); never log it, use redacted()
    entra: str | None = None  # None, "default" or "managed_identity"
    client_id: str | None = None  # user-assigned managed identity
    login_timeout: int = LOGIN_TIMEOUT_S
    query_timeout: int = 0  # seconds; 0 = none (timeouts surface as HYT00/HYT01)
    driver: str = field(default="")

    def redacted(self) -> str:
        return redact_odbc(self.connection_string)

    @property
    def is_freetds(self) -> bool:
        return "freetds" in self.driver.lower()


# ------------------------------------------------------------------------------ ODBC strings
def parse_odbc(conn_str: str) -> list[tuple[str, str]]:
    """Split an ODBC connection string into (keyword, value) pairs.

    Values may be wrapped in braces, inside which ``}}`` stands for ``}`` and ``;`` is literal.
    """
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(conn_str)
    while i < n:
        while i < n and conn_str[i] in "; \t\r\n":
            i += 1
        if i >= n:
            break
        eq = conn_str.find("=", i)
        if eq < 0:
            raise DsnError(f"ODBC connection string has a keyword without a value near {conn_str[i:i + 20]!r}")
        key = conn_str[i:eq].strip()
        if not key:
            raise DsnError("ODBC connection string has an empty keyword")
        i = eq + 1
        while i < n and conn_str[i] in " \t":
            i += 1
        if i < n and conn_str[i] == "{":
            i += 1
            out: list[str] = []
            while True:
                close = conn_str.find("}", i)
                if close < 0:
                    raise DsnError(f"ODBC connection string: unclosed brace in the value of {key!r}")
                out.append(conn_str[i:close])
                if close + 1 < n and conn_str[close + 1] == "}":
                    out.append("}")
                    i = close + 2
                    continue
                i = close + 1
                break
            value = "".join(out)
            while i < n and conn_str[i] in " \t":
                i += 1
            if i < n and conn_str[i] != ";":
                raise DsnError(f"ODBC connection string: unexpected text after the braced value of {key!r}")
        else:
            semi = conn_str.find(";", i)
            end = n if semi < 0 else semi
            value = conn_str[i:end].strip()
            i = end
        pairs.append((key, value))
    return pairs


def odbc_value(value: str, *, always_brace: bool = False) -> str:
    """A value for an ODBC connection string, braced (``}`` doubled) when it needs to be."""
    if always_brace or not value or any(c in value for c in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def format_odbc(pairs: Sequence[tuple[str, str]]) -> str:
    parts = []
    for key, value in pairs:
        if not _KEYWORD_RE.match(key):
            raise DsnError(f"{key!r} is not a valid ODBC connection string keyword")
        parts.append(f"{key}={odbc_value(value, always_brace=key.lower() in _SECRET_KEYS or key.lower() == 'driver')}")
    return ";".join(parts) + ";"


def redact_odbc(conn_str: str) -> str:
    """The connection string with passwords masked, for messages and logs."""
    try:
        pairs = parse_odbc(conn_str)
    except DsnError:
        return "<unparsable ODBC connection string>"
    return ";".join(f"{k}={'***' if k.lower() in _SECRET_KEYS else odbc_value(v)}" for k, v in pairs) + ";"


def redact_dsn(dsn: str) -> str:
    """A SQL Server DSN in either form with its secrets masked."""
    parts = urlsplit(dsn)
    if parts.scheme.lower() == "mssql+odbc":
        raw = dict(parse_qsl(parts.query, keep_blank_values=True)).get("odbc_connect", "")
        return f"mssql+odbc:///?odbc_connect={redact_odbc(raw)}"
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return dsn


def dsn_secrets(dsn: str) -> list[str]:
    """The secrets of a SQL Server DSN in either form: URL password, and PWD/AccessToken of odbc_connect."""
    found: list[str] = []
    try:
        parts = urlsplit(dsn)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        query = parse_qsl(parts.query, keep_blank_values=True)
        found += [v for k, v in query if re.search(r"pass|pwd|secret|token|key", k, re.I) and v]
        raw = dict(query).get("odbc_connect")
        if raw:
            found += [v for k, v in parse_odbc(raw) if k.lower() in _SECRET_KEYS and v]
    except ValueError:  # DsnError included: an unparsable string is never echoed anyway
        pass
    return found


def describe_dsn(dsn: str) -> str:
    """Where a SQL Server DSN points, rebuilt from server and database only (never a credential)."""
    parts = urlsplit(dsn)
    if parts.scheme.lower() == "mssql+odbc":
        raw = dict(parse_qsl(parts.query, keep_blank_values=True)).get("odbc_connect", "")
        pairs = {k.lower(): v for k, v in parse_odbc(raw)}
        server = pairs.get("server", "?")
        database = pairs.get("database", "")
        return f"mssql+odbc://{server}/{database} (literal connection string; credentials hidden)"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"mssql://{user}{parts.hostname or ''}{port}{parts.path} (literal connection string; credentials hidden)"


# ------------------------------------------------------------------------------- DSN parsing
def _timeout(value: str, name: str) -> int:
    try:
        seconds = int(value)
    except ValueError as exc:
        raise DsnError(f"{name} must be a whole number of seconds, not {value!r}") from exc
    if seconds < 0:
        raise DsnError(f"{name} must not be negative")
    return seconds


def _entra_mode(authentication: str | None) -> str | None:
    if authentication is None:
        return None
    a = authentication.strip().lower()
    if a == ENTRA_DEFAULT:
        return "default"
    if a in ENTRA_MANAGED_IDENTITY:
        return "managed_identity"
    return None


def target_from_odbc(conn_str: str, *, login_timeout: int = LOGIN_TIMEOUT_S, query_timeout: int = 0) -> OdbcTarget:
    """A target from a raw ODBC connection string (as in DES_TEST_MSSQL)."""
    pairs = parse_odbc(conn_str)
    if not pairs:
        raise DsnError("the ODBC connection string is empty")
    lower = {k.lower(): v for k, v in pairs}
    entra = _entra_mode(lower.get("authentication"))
    client_id = None
    if entra:
        # The driver refuses an access token together with these keywords.
        client_id = lower.get("uid") or lower.get("user id") or None
        pairs = [(k, v) for k, v in pairs if k.lower() not in ("authentication", "uid", "user id", "pwd", "password")]
    return OdbcTarget(
        format_odbc(pairs),
        entra=entra,
        client_id=client_id,
        login_timeout=login_timeout,
        query_timeout=query_timeout,
        driver=lower.get("driver", ""),
    )


def parse_dsn(dsn: str) -> OdbcTarget:
    """An :class:`OdbcTarget` from ``mssql://...`` or ``mssql+odbc:///?odbc_connect=...``."""
    parts = urlsplit(dsn)
    scheme = parts.scheme.lower()
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    lower = {k.lower(): v for k, v in params.items()}
    login_timeout = _timeout(lower.get("login_timeout", str(LOGIN_TIMEOUT_S)), "login_timeout")
    query_timeout = _timeout(lower.get("query_timeout", "0"), "query_timeout")
    if scheme == "mssql+odbc":
        raw = params.get("odbc_connect")
        if not raw:
            raise DsnError("a mssql+odbc DSN needs ?odbc_connect=<url-encoded ODBC connection string>")
        return target_from_odbc(raw, login_timeout=login_timeout, query_timeout=query_timeout)
    if scheme != "mssql":
        raise DsnError(f"not a SQL Server DSN: scheme {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise DsnError("a SQL Server DSN needs a host: mssql://user:password@host:1433/database")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise DsnError(f"invalid port in SQL Server DSN: {exc}") from exc
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise DsnError("a SQL Server DSN needs a database: mssql://user:password@host:1433/database")
    driver = lower.get("driver") or DEFAULT_DRIVER
    entra = _entra_mode(lower.get("authentication"))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    freetds = "freetds" in driver.lower()
    pairs: list[tuple[str, str]] = [("DRIVER", driver)]
    if freetds:
        pairs += [("SERVER", host), ("PORT", str(port)), ("TDS_Version", "7.4"), ("ClientCharset", "UTF-8")]
    else:
        pairs.append(("SERVER", f"tcp:{host},{port}"))
    pairs.append(("DATABASE", database))
    encrypt = lower.get("encrypt", "yes")
    if freetds:
        pairs.append(("Encryption", "require" if encrypt.lower() in ("yes", "true", "mandatory", "strict") else "off"))
    else:
        pairs.append(("Encrypt", encrypt))
    client_id = None
    if entra:
        client_id = user  # a user-assigned managed identity's client id, if given
    elif lower.get("authentication"):
        pairs.append(("Authentication", lower["authentication"]))
        if user:
            pairs.append(("UID", user))
        if password:
            pairs.append(("PWD", password))
    else:
        if not user:
            raise DsnError(
                "a SQL Server DSN needs user:password@ for a SQL login, or "
                "?authentication=ActiveDirectoryDefault / ActiveDirectoryManagedIdentity for Microsoft Entra"
            )
        pairs += [("UID", user), ("PWD", password or "")]
    for key, value in params.items():
        if key.lower() not in _OWN_PARAMS:
            pairs.append((key, value))
    return OdbcTarget(
        format_odbc(pairs),
        entra=entra,
        client_id=client_id,
        login_timeout=login_timeout,
        query_timeout=query_timeout,
        driver=driver,
    )


# ------------------------------------------------------------------------------ Entra tokens
def pack_access_token(token: str) -> bytes:
    """The ACCESSTOKEN struct the Microsoft ODBC driver expects for SQL_COPT_SS_ACCESS_TOKEN.

    ``struct { DWORD dataSize; BYTE data[]; }`` with the token's ASCII bytes each followed by a
    zero byte (that is UTF-16-LE), little-endian length, no terminator.
    """
    if not token or not token.isascii():
        raise ValueError("an access token is a non-empty ASCII string (a JWT)")
    data = token.encode("utf-16-le")
    return struct.pack(f"<I{len(data)}s", len(data), data)


class TokenSource:
    """Access tokens for Azure SQL from azure-identity; the credential (and its cache) is kept."""

    def __init__(self, mode: str, client_id: str | None = None) -> None:
        self.mode = mode
        self.client_id = client_id
        self._credential: Any = None

    def _make_credential(self) -> Any:
        """From the one credential factory (shared/identity.py): ``ActiveDirectoryManagedIdentity``
        with the DSN's client id, or the settings' default (DefaultAzureCredential, whose managed
        identity is ``AZURE_CLIENT_ID``'s)."""
        import os

        from shared.identity import MANAGED, CredentialSpec, build_credential, credential_spec

        try:
            if self.mode == "managed_identity":
                return build_credential(CredentialSpec(MANAGED, client_id=self.client_id, decided_by="the DSN"))
            return build_credential(credential_spec(os.environ, None))
        except ImportError as exc:  # pragma: no cover - azure-identity is a pinned requirement
            raise ConnectionFailed("Microsoft Entra authentication needs the azure-identity package") from exc

    def token(self) -> str:
        if self._credential is None:
            self._credential = self._make_credential()
        return str(self._credential.get_token(ENTRA_SCOPE).token)

    def attrs_before(self) -> dict[int, bytes]:
        return {SQL_COPT_SS_ACCESS_TOKEN: pack_access_token(self.token())}


# ---------------------------------------------------------------------------------- connect
def connector(target: OdbcTarget) -> Callable[[], pyodbc.Connection]:
    """A function that opens a new autocommit pyodbc connection to ``target`` (raises pyodbc errors)."""
    tokens = TokenSource(target.entra, target.client_id) if target.entra else None

    def connect() -> pyodbc.Connection:
        import pyodbc  # type: ignore[import-not-found]

        attrs = tokens.attrs_before() if tokens else {}
        conn = pyodbc.connect(
            target.connection_string, autocommit=True, timeout=target.login_timeout, attrs_before=attrs or None
        )
        if target.query_timeout:
            conn.timeout = target.query_timeout
        return conn

    return connect
