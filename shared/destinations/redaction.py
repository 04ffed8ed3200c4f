"""Secrets of URL-style DSNs (``postgresql://user:pw@host/db``), for the registry's redaction.

Three views of one connection string, none of which may carry a credential: ``redact_url`` (the
DSN with its password masked, for logs), ``describe_url`` (rebuilt from harmless parts only, for
API responses) and ``url_secrets`` (every secret as it may appear in a driver's message, for
masking error details).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key", re.I)


def url_secrets(dsn: str) -> list[str]:
    """The password and any secret-looking query parameter of a URL-style DSN."""
    found: list[str] = []
    try:
        parts = urlsplit(dsn)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if _SECRET_PARAM.search(k) and v:
                found.append(v)
    except ValueError:
        pass
    return found


def with_encodings(secrets: Iterable[str]) -> list[str]:
    """Each secret also as it may appear inside a URL (percent-encoded), longest first."""
    found = list(secrets)
    found += [quote(s, safe="") for s in found] + [quote_plus(s, safe="") for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact_url(dsn: str) -> str:
    """The DSN with any password removed."""
    try:
        parts = urlsplit(dsn)
        if parts.password:
            return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    except ValueError:
        return dsn.split(":", 1)[0] + "://…"
    return dsn


def describe_url(dsn: str) -> str:
    """Where a URL-style DSN points, assembled from scheme, user, host, port and database only."""
    scheme = dsn.split(":", 1)[0].lower()
    try:
        parts = urlsplit(dsn)
        user = f"{unquote(parts.username)}@" if parts.username else ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{scheme}://{user}{host}{port}{parts.path} (literal connection string; credentials hidden)"
    except ValueError:
        return f"{scheme}://… (literal connection string; credentials hidden)"
