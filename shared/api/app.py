"""The admin HTTP API (FastAPI): profiles, activation, validation, live tests, metrics, failures
and re-sync, as DES's REST API offered. The same app runs locally (``python -m shared api``,
uvicorn) and in Azure (mounted in the function app with ``func.AsgiFunctionApp``).

Everything but ``GET /health`` needs an admin credential (:mod:`shared.api.auth`), checked by
an ASGI middleware before routing, body parsing or validation, so an anonymous caller learns
nothing but 401/403. OpenAPI is at ``/openapi.json`` and Swagger UI at ``/docs`` (open it as
``/docs?code=<key>``: the page sends the key as ``x-functions-key``, as the Functions host expects).

Request bodies are limited in size (413); the destination's secret is never in a response, an
error message or a log line (access lines are logged without query strings).

The routes are in :mod:`shared.api.routers` (health, profiles, metrics, failures), the request and
response models in :mod:`shared.api.schemas`, the guard in :mod:`shared.api.middleware`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from shared.api.deps import ApiServices, Lazy
from shared.api.middleware import ANONYMOUS_PATHS, GuardMiddleware
from shared.api.routers import console, failures, health, history, metrics, profiles, sources
from shared.api.schemas import CheckOut, FailureOut, Problem, ValidationItem
from shared.destinations.redaction import install_log_redaction, redact_text
from shared.profiles.model import KEY_VAULT_SECRET_PATTERN, LITERAL_DSN_PATTERN
from shared.profiles.service import ProfileError
from shared.store.base import StoreError, StoreUnavailable

log = logging.getLogger(__name__)

VERSION = "1.0.0"

# Friendlier words for pattern mismatches of known fields (the schema keeps the exact patterns).
_PATTERN_MESSAGES = {
    "prefix": "prefix must be alphanumeric and fewer than 15 characters",
    "schema": "schema must be alphanumeric and start with a letter (at most 128 characters)",
    "name": "name must be 1-100 printable characters without leading or trailing blanks",
    "organizationId": "organizationId must be a GUID (8-4-4-4-12 hex digits)",
    "id": "id must be a GUID (8-4-4-4-12 hex digits)",
    "profile_id": "the profile id must be a GUID (8-4-4-4-12 hex digits)",
    "entities": "entities must be logical names: a lower-case letter, then lower-case letters, digits or _",
    "relationships": "relationships must be logical names: a lower-case letter, then lower-case letters, digits or _",
    "recordIds": "recordIds must be GUIDs",
}


def _redact(detail: Any) -> Any:
    if isinstance(detail, str):
        return redact_text(detail)
    if isinstance(detail, list):
        return [_redact(d) for d in detail]
    if isinstance(detail, dict):
        return {k: _redact(v) for k, v in detail.items()}
    return detail


def _problem(status: int, detail: Any, checks: list[CheckOut] | None = None) -> JSONResponse:
    """An error response; every text in it through the one redaction."""
    if checks is not None:
        checks = [c.model_copy(update={"detail": _redact(c.detail)}) for c in checks]
    body = Problem(detail=_redact(detail), checks=checks).model_dump(exclude_none=True)
    return JSONResponse(jsonable_encoder(body), status_code=status)


def _clean_errors(errors: Any) -> list[ValidationItem]:
    """Validation errors without the input (it may hold a connection string) or internals."""
    out = []
    for err in errors:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        msg = str(err.get("msg", "invalid"))
        kind = str(err.get("type", "value_error"))
        if kind == "string_pattern_mismatch":
            field = next((p for p in reversed(loc) if isinstance(p, str) and p in _PATTERN_MESSAGES), None)
            if field is not None:
                msg = _PATTERN_MESSAGES[field]
        if kind == "json_invalid":
            msg = "the body is not valid JSON"
        if kind.startswith("value_error"):
            msg = msg.removeprefix("Value error, ")
        out.append(ValidationItem(loc=loc, msg=msg, type=kind))
    return out



# ---------------------------------------------------------------------------------------- app
def create_app(services: ApiServices | Callable[[], ApiServices]) -> FastAPI:
    install_log_redaction()
    lazy = Lazy(services)
    app = FastAPI(
        title="DES replacement admin API",
        version=VERSION,
        description=(
            "Manage export profiles (Dataverse change notifications to SQL databases), as the Data Export "
            "Service's REST API did. Authenticate with the admin key (x-functions-key header or "
            "Authorization: Bearer), in Azure with a function key (and the app role when App Service "
            "authentication is on)."
        ),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = lazy
    app.add_middleware(GuardMiddleware, services=lazy)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------ error handlers
    @app.exception_handler(ProfileError)
    async def _profile_error(_: Request, exc: ProfileError) -> JSONResponse:
        checks = None
        if exc.report is not None:
            checks = [CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in exc.report.checks]
        return _problem(exc.status, exc.detail, checks)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("admin store unavailable: %s", exc)
        return _problem(503, "the admin store is unavailable; try again shortly")

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        log.error("admin store error: %s", exc)
        return _problem(503, "the admin store failed; see the service log")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _problem(422, [i.model_dump() for i in _clean_errors(exc.errors())])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _problem(exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():  # Allow on 405 (RFC 9110)
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("admin API: unexpected %s", type(exc).__name__, exc_info=exc)
        return _problem(500, "internal error; see the service log")

    for area in (health, profiles, sources, metrics, history, failures, console):
        app.include_router(area.router)

    # ------------------------------------------------------------------------ OpenAPI, docs
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["FailureOut"] = FailureOut.model_json_schema()
            components["securitySchemes"] = {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "bearerKey": {"type": "http", "scheme": "bearer"},
            }
            for path, ops in schema.get("paths", {}).items():
                for op in ops.values():
                    op["security"] = [] if path in ANONYMOUS_PATHS else [{"functionKey": []}, {"bearerKey": []}]
            _destinations_as_configured(components["schemas"], lazy.get())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(), headers=_DOCS_HEADERS)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def docs_asset(name: str) -> Response:
        media = _ASSET_TYPES.get(name)
        if media is None:
            raise StarletteHTTPException(404, "no such asset")
        return Response(_asset(name), media_type=media, headers=_ASSET_HEADERS)

    answer_undeclared_methods(app)
    return app


def _destinations_as_configured(schemas: dict[str, Any], services: ApiServices) -> None:
    """A profile's ``destination`` as this deployment takes it: a Key Vault secret URI, or (where
    ``DES_ALLOW_LITERAL_DESTINATIONS`` is set) also a connection string of a known scheme, so that
    what the schema admits is accepted and what it does not is refused (422)."""
    allowed = bool(getattr(services.profiles.resolver, "allow_literal", False))
    pattern = KEY_VAULT_SECRET_PATTERN if not allowed else f"(?:{KEY_VAULT_SECRET_PATTERN})|{LITERAL_DSN_PATTERN}"
    for name in ("ProfileCreate", "ProfileUpdate"):
        prop = schemas.get(name, {}).get("properties", {}).get("destination")
        if prop is None:
            continue
        for variant in prop.get("anyOf", [prop]):
            if variant.get("type") == "string":
                variant["pattern"] = pattern


# ---------------------------------------------------------------- methods a path does not take
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def _not_allowed(allowed: str) -> Callable[[Request], Any]:
    async def endpoint(_: Request) -> JSONResponse:
        response = _problem(405, "Method Not Allowed")
        response.headers["Allow"] = allowed
        return response

    return endpoint


def _routes(routes: Sequence[BaseRoute], prefix: str) -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, into included routers (FastAPI keeps them as branches)."""
    for route in routes:
        sub = getattr(route, "original_router", None)
        if sub is not None:
            context = getattr(route, "include_context", None)
            yield from _routes(sub.routes, prefix + str(getattr(context, "prefix", "") or ""))
            continue
        methods = getattr(route, "methods", None)
        path = getattr(route, "path", None)
        if methods and isinstance(path, str):
            yield prefix + path, set(methods)


def answer_undeclared_methods(app: FastAPI) -> None:
    """405 with an ``Allow`` header listing every method of the path (RFC 9110) for a method the
    path does not take, whatever route order Starlette would otherwise follow.

    Starlette tries routes in order and answers a method mismatch from the *first* route whose path
    matches: a fixed path's undeclared method (``PUT /profiles/validate``) reached the parametrised
    route (``PUT /profiles/{profile_id}``, a 422 about the id), and ``Allow`` listed only the first
    route's methods (``GET`` for ``/profiles``, which takes ``POST`` too). So every path gets a route
    for the methods it does not take: a fixed path's before every other route (it wins over a
    parametrised one), a parametrised path's after them (a fixed path's own routes win over it)."""
    declared: dict[str, set[str]] = {}
    for path, methods in _routes(app.router.routes, ""):
        declared.setdefault(path, set()).update(methods)
    first: list[BaseRoute] = []
    last: list[BaseRoute] = []
    for path, methods in declared.items():
        allowed = ", ".join(m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE") if m in methods)
        catcher = APIRoute(path, _not_allowed(allowed), methods=sorted(_METHODS - methods), include_in_schema=False)
        (last if "{" in path else first).append(catcher)
    app.router.routes[:0] = first
    app.router.routes.extend(last)


# -------------------------------------------------------------------- Swagger UI, served here
# Vendored from the pinned npm package swagger-ui-dist by scripts/vendor-swagger-ui.sh (no CDN);
# MANIFEST.json has the version and each file's SHA-384, which the page gives the browser as
# Subresource Integrity. The page adds the ?code= it was opened with to the asset URLs, so they load
# behind the Functions host's key check too.
SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"
_ASSET_TYPES = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8"}
_ASSET_HEADERS = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
_DOCS_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


@functools.cache
def swagger_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((SWAGGER_UI / "MANIFEST.json").read_text(encoding="utf-8"))
    return manifest


@functools.cache
def _asset(name: str) -> bytes:
    return (SWAGGER_UI / name).read_bytes()


@functools.cache
def docs_page() -> str:
    files = swagger_manifest()["files"]
    return _SWAGGER_HTML.replace("{css_integrity}", files["swagger-ui.css"]).replace(
        "{js_integrity}", files["swagger-ui-bundle.js"]
    )


_SWAGGER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>DES admin API</title></head>
<body><div id="swagger-ui"></div>
<script>
// The key comes from this page's own ?code= (as the Azure Functions host takes it): added to the
// URLs of the page's own assets, and sent as x-functions-key with every request the page makes.
const key = new URLSearchParams(window.location.search).get("code");
const base = window.location.pathname.replace(/\\/docs\\/?$/, "");
const q = key ? "?code=" + encodeURIComponent(key) : "";
const css = document.createElement("link");
css.rel = "stylesheet";
css.href = base + "/docs/assets/swagger-ui.css" + q;
css.integrity = "{css_integrity}";
document.head.appendChild(css);
const js = document.createElement("script");
js.src = base + "/docs/assets/swagger-ui-bundle.js" + q;
js.integrity = "{js_integrity}";
js.onload = () => {
  window.ui = SwaggerUIBundle({
    url: base + "/openapi.json",
    dom_id: "#swagger-ui",
    persistAuthorization: false,
    requestInterceptor: (req) => { if (key) { req.headers["x-functions-key"] = key; } return req; },
  });
};
document.body.appendChild(js);
</script></body></html>
"""
