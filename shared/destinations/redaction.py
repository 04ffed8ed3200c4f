"""The one redaction: no destination or store credential leaves the process in any text.

Per DSN (the registry, :mod:`shared.destinations.registry`, has one of each per database):
``redact_url`` (the DSN with its password masked, for logs), ``describe_url`` (rebuilt from
harmless parts only, for API responses) and ``url_secrets`` (every secret as it may appear in a
driver's message).

For every other text (exception messages of every driver, failure reasons, retry-blob metadata, API
error details, log records): :func:`redact_text`. It masks

* every secret of every DSN this process opened, checked, resolved or described (the registry
  calls :func:`remember`), plain and percent-encoded: a driver echoing a password in any form
  (libpq's ``invalid percent-encoded token: "…"``) is caught by its value;
* and, whatever was remembered, credentials by their form: URL passwords (``scheme://user:pw@``),
  ``password=`` / ``pwd=`` / ``secret=`` / ``token=`` / ``AccountKey=`` / ``sig=`` values in query
  strings, libpq keyword strings and ODBC strings (``PWD={…}``), and libpq's percent-escape token.

:func:`redacted` gives an exception of the same class with its text redacted and its cause
dropped (a traceback of the original would show the driver's text); :func:`install_log_redaction`
makes every log record of the process go through :func:`redact_text` (messages and tracebacks).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any, TypeVar
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


E = TypeVar("E", bound=BaseException)
_PLAIN = re.compile(r"[\w.-]{1,128}")  # a user, host or database name as it may be shown
_PLAIN_PATH = re.compile(r"/[\w.-]{0,128}")


def describe_url(dsn: str) -> str:
    """Where a URL-style DSN points, assembled from scheme, user, host, port and database only, each
    shown only when it is a plain name (a malformed DSN can put anything anywhere)."""
    scheme = dsn.split(":", 1)[0].lower()
    scheme = scheme if _PLAIN.fullmatch(scheme) else "?"
    try:
        parts = urlsplit(dsn)
        username = unquote(parts.username) if parts.username else ""
        user = f"{username}@" if _PLAIN.fullmatch(username) else "…@" if username else ""
        host = parts.hostname or ""
        host = host if not host or _PLAIN.fullmatch(host) else "…"
        port = f":{parts.port}" if parts.port else ""
        path = parts.path if not parts.path or _PLAIN_PATH.fullmatch(parts.path) else "/…"
        if not host and not path:
            raise ValueError("no host and no database")
        return f"{scheme}://{user}{host}{port}{path} (literal connection string; credentials hidden)"
    except ValueError:
        return f"{scheme}://… (literal connection string; credentials hidden)"


# ---------------------------------------------------------------------------- any text
MASK = "***"
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
_SORTED: tuple[str, ...] = ()
_MIN_SECRET = 4  # shorter values are not masked by value (they would mask ordinary words)
_SECRET_KEYS = r"password|passwd|pwd|pass|secret|client_secret|token|access_token|accountkey|sharedaccesskey|sig"  # noqa: S105
_BY_FORM = (
    # scheme://user:password@host: everything between the user's colon and the last @ of the authority
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@]*:)[^\s@]*@"), r"\1" + MASK + "@"),
    # key=value in a query string, a libpq keyword string or an ODBC string; ODBC braces may hold ';'
    (
        re.compile(rf"(?i)(?<![\w])({_SECRET_KEYS})(\s*=\s*)(\{{(?:[^}}]|}}}})*\}}|'[^']*'|\"[^\"]*\"|[^\s;&,)\"']+)"),
        r"\1\2" + MASK,
    ),
    # libpq echoes a malformed percent-escape with its whole token (a password)
    (re.compile(r'(?i)(invalid percent-encoded token:\s*)"[^"]*"'), r'\1"' + MASK + '"'),
)


def remember(secrets: Iterable[str]) -> None:
    """Secrets (of a DSN this process uses) that :func:`redact_text` masks by value from now on."""
    global _SORTED  # noqa: PLW0603
    new = {s for s in with_encodings(secrets) if len(s) >= _MIN_SECRET}
    with _KNOWN_LOCK:
        if new - _KNOWN:
            _KNOWN.update(new)
            _SORTED = tuple(sorted(_KNOWN, key=len, reverse=True))


def redact_text(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret (and ``extra``) masked by value and every credential masked
    by its form."""
    if not text:
        return text
    for secret in (*with_encodings(extra), *_SORTED):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, repl in _BY_FORM:
        text = pattern.sub(repl, text)
    return text


def redacted(exc: E, extra: Iterable[str] = ()) -> E:
    """``exc`` as the same class with its text redacted and no cause or context (their text would be
    printed with a traceback); its flags (non-text attributes such as ``transient``) kept. Returned
    as is when its text needs no redaction and it has no cause."""
    text = str(exc)
    clean = redact_text(text, extra)
    if clean == text and exc.__cause__ is None and exc.__context__ is None:
        return exc
    cls = type(exc)
    try:
        new = cls(clean)
    except Exception:  # a class that takes other arguments
        new = cls.__new__(cls, clean)
        new.args = (clean,)
    for name, value in vars(exc).items() if hasattr(exc, "__dict__") else ():
        if isinstance(value, bool | int | float | enum.Enum | None) and not name.startswith("__"):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(new, name, value)
    new.__cause__ = None
    new.__suppress_context__ = True
    return new


_INSTALLED = False


def install_log_redaction() -> None:
    """Every log record made from now on, in this process, goes through :func:`redact_text`: its
    message (with its arguments) and its traceback. Idempotent."""
    global _INSTALLED  # noqa: PLW0603
    with _KNOWN_LOCK:
        if _INSTALLED:
            return
        _INSTALLED = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format: leave it to the handler to report
            return record
        clean = redact_text(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    logging.setLogRecordFactory(factory)
