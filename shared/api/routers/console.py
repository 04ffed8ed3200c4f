"""The admin console at ``/console``: a small front end (plain HTML, CSS and JavaScript modules,
no build step, nothing from a CDN) served from the package (``shared/api/console/static/``).

The console's own files hold no data and grant nothing, so the app serves them without a
credential (:func:`is_console_file`; exact paths only). Every call they make goes to the admin
API's JSON endpoints with the admin key (``x-functions-key``), which the page asks for once per
browser session and keeps in ``sessionStorage``. In Azure the Functions host requires the function
key on every request, these files included: open ``/console/?code=<function key>``; the page takes
the key from there and the asset URLs carry it (an import map maps every module to its URL with
the same ``code``). With App Service authentication on, the sign-in cookie rides along and the API
checks the app role as for any caller.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import re
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "console" / "static"
PREFIX = "/console"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Function keys are base64-like; anything else is ignored (and never echoed into the page).
_CODE = re.compile(r"^[A-Za-z0-9_\-=+/]{1,256}$")
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # in Azure the page URL carries ?code=
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class _Bundle:
    template: str
    assets: dict[str, tuple[bytes, str]]  # file name -> (content, media type)
    version: str


_MISSING = "<!doctype html><title>DES console</title><p>The console's files are missing from this build.</p>"


@functools.cache
def bundle() -> _Bundle:
    """The console's files, read once (on first use, never at import: the function app indexes first)."""
    try:
        return _load(STATIC_DIR)
    except OSError as exc:
        log.error("the console's files cannot be read from %s: %s", STATIC_DIR, exc)
        return _Bundle(_MISSING, {}, "missing")


def _load(directory: Path) -> _Bundle:
    assets: dict[str, tuple[bytes, str]] = {}
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in _TYPES:
            data = path.read_bytes()
            assets[path.name] = (data, _TYPES[path.suffix])
            digest.update(path.name.encode() + b"\0" + data)
    template = (directory / "index.html").read_text(encoding="utf-8")
    digest.update(template.encode())
    return _Bundle(template, assets, digest.hexdigest()[:12])


@functools.cache
def console_files() -> frozenset[str]:
    return frozenset({PREFIX, PREFIX + "/", *(f"{PREFIX}/static/{name}" for name in bundle().assets)})


def is_console_file(path: str) -> bool:
    """The console's own files (no data): served without a credential. Exact paths only."""
    return path.startswith(PREFIX) and path in console_files()


def render_index(code: str | None) -> tuple[str, str]:
    """The page and the CSP hash of its import map; asset URLs carry the version and any ``code``."""
    b = bundle()
    query = f"?v={b.version}"
    if code and _CODE.match(code):
        query += "&code=" + quote(code, safe="")
    modules = {f"./static/{n}": f"./static/{n}{query}" for n in b.assets if n.endswith(".js")}
    importmap = json.dumps({"imports": modules}, separators=(",", ":"))
    page = b.template.replace("{{query}}", html.escape(query, quote=True)).replace("{{importmap}}", importmap)
    digest = b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
    return page, f"'sha256-{digest}'"


router = APIRouter(include_in_schema=False)


@router.get(PREFIX)
def console_redirect(request: Request) -> RedirectResponse:
    target = request.scope.get("root_path", "") + PREFIX + "/"
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(target, status_code=308)


@router.get(PREFIX + "/")
def console_page(request: Request) -> HTMLResponse:
    page, importmap_hash = render_index(request.query_params.get("code"))
    csp = (
        f"default-src 'none'; script-src 'self' {importmap_hash}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": csp, "Cache-Control": "no-store"}
    return HTMLResponse(page, headers=headers)


@router.get(PREFIX + "/static/{name}")
def console_file(name: str) -> Response:
    found = bundle().assets.get(name)
    if found is None:
        return Response(status_code=404)
    data, media = found
    return Response(data, media_type=media, headers={**_COMMON_HEADERS, "Cache-Control": "public, max-age=3600"})
