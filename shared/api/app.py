"""The admin HTTP API (FastAPI): profiles, activation, validation, live tests, metrics, failures
and re-sync, as DES's REST API offered. The same app runs locally (``python -m shared api``,
uvicorn) and in Azure (mounted in the function app with ``func.AsgiFunctionApp``).

Everything but ``GET /health`` needs an admin credential (:mod:`shared.api.auth`), checked by
an ASGI middleware before routing, body parsing or validation, so an anonymous caller learns
nothing but 401/403. OpenAPI is at ``/openapi.json`` and Swagger UI at ``/docs`` (open it as
``/docs?code=<key>``: the page sends the key as ``x-functions-key``, as the Functions host expects).

Request bodies are limited in size (413); the destination's secret is never in a response, an
error message or a log line (access lines are logged without query strings).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.api.auth import AuthConfig, AuthError
from shared.api.routers import console, history
from shared.api.routers.console import is_console_file
from shared.api.schemas import (
    CheckOut,
    DeletedOut,
    EntityMetricsOut,
    FailureOut,
    HealthOut,
    LinkOut,
    LinksOut,
    MetricsOut,
    Problem,
    ResyncIn,
    ResyncOut,
    ServiceMetricsOut,
    ValidationItem,
    ValidationOut,
)
from shared.contract.models import GUID_PATTERN
from shared.profiles.model import ProfileCreate, ProfileOut, ProfileState, ProfileUpdate
from shared.profiles.ports import FAILURE_COLUMNS, FailureEntry
from shared.profiles.service import ProfileError, ProfileService, ResyncSelection
from shared.settings import DEFAULT_API_MAX_BODY_BYTES
from shared.store.base import UNROUTED, EntityMetrics, Store, StoreError, StoreUnavailable

log = logging.getLogger(__name__)
access_log = logging.getLogger("shared.api.access")

VERSION = "1.0.0"
ANONYMOUS_PATHS = frozenset({"/health"})
DEFAULT_FAILURE_WINDOW = timedelta(hours=24)
MAX_FAILURE_WINDOW = timedelta(days=31)

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


@dataclass
class ApiServices:
    store: Store
    profiles: ProfileService
    auth: AuthConfig
    max_body_bytes: int = DEFAULT_API_MAX_BODY_BYTES
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class _Lazy:
    """The services, built on first use (never at import time: the function app indexes first)."""

    def __init__(self, source: ApiServices | Callable[[], ApiServices]) -> None:
        self._source = source
        self._value: ApiServices | None = source if isinstance(source, ApiServices) else None
        self._lock = threading.Lock()

    def get(self) -> ApiServices:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    assert callable(self._source)
                    self._value = self._source()
        return self._value


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Bad request"},
    401: {"model": Problem, "description": "No or invalid admin credential"},
    403: {"model": Problem, "description": "Signed in without the admin app role"},
    404: {"model": Problem, "description": "No such profile"},
    409: {"model": Problem, "description": "Duplicate name or id, or a state that does not allow it"},
    412: {"model": Problem, "description": "The profile changed (If-Match revision)"},
    413: {"model": Problem, "description": "Request body too large"},
    422: {"model": Problem, "description": "Invalid fields, or the destination check failed"},
    503: {"model": Problem, "description": "Store, Blob storage or destination unavailable"},
}

ProfileId = Annotated[str, Path(pattern=GUID_PATTERN, description="The profile's GUID.")]


def _services(request: Request) -> ApiServices:
    lazy: _Lazy = request.app.state.services
    return lazy.get()


Svc = Annotated[ApiServices, Depends(_services)]
Guid = Annotated[str | None, Query(pattern=GUID_PATTERN)]


# ---------------------------------------------------------------------------------- middleware
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class GuardMiddleware:
    """Authentication, then the body size limit, then an access line (no query string)."""

    def __init__(self, app: ASGIApp, services: _Lazy) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_logged)
        finally:
            access_log.info(
                "%s %s %s %.1fms", scope.get("method"), scope.get("path"), status["code"],
                (time.perf_counter() - started) * 1000,
            )  # fmt: skip

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        try:
            svc = self.services.get()
        except Exception as exc:  # the store cannot be opened (yet): say so, try again next request
            log.error("admin API cannot start its services: %s: %s", type(exc).__name__, exc)
            if path in ANONYMOUS_PATHS:
                await _send_json(send, 503, {"status": "unavailable", "store": "unavailable"})
            else:
                await _send_json(send, 503, {"detail": "the admin API is not ready (its store is unavailable)"})
            return
        if path not in ANONYMOUS_PATHS and not is_console_file(path):  # the console's files hold no data
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            try:
                scope.setdefault("state", {})
                who = svc.auth.authorize(headers)
            except AuthError as exc:
                extra = [(b"www-authenticate", b'Bearer realm="des-admin"')] if exc.status == 401 else []
                await _send_json(send, exc.status, {"detail": exc.detail}, extra)
                return
            if scope["state"] is not None:
                scope["state"]["caller"] = who
        limit = svc.max_body_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _send_json(send, 400, {"detail": "Content-Length is not a number"})
                return
            if too_big:
                await _send_json(send, 413, {"detail": f"request body larger than {limit} bytes"})
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the limit, then replay.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _send_json(send, 413, {"detail": f"request body larger than {limit} bytes"})
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ------------------------------------------------------------------------------------ helpers
def _problem(status: int, detail: Any, checks: list[CheckOut] | None = None) -> JSONResponse:
    body = Problem(detail=detail, checks=checks).model_dump(exclude_none=True)
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


def _aware(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    try:
        e = _aware(end, now)
        s = _aware(start, e - DEFAULT_FAILURE_WINDOW)
    except (OverflowError, ValueError) as exc:
        raise ProfileErrorBadRequest("start and end must be dates between the years 1 and 9999") from exc
    if s >= e:
        raise ProfileErrorBadRequest("start must be before end")
    if e - s > MAX_FAILURE_WINDOW:
        raise ProfileErrorBadRequest("the time range may cover at most 31 days")
    return s, e


class ProfileErrorBadRequest(ProfileError):
    status = 400


def _revision(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() in ("", "*"):
        return None
    m = re.fullmatch(r'\s*(?:W/)?"?(\d{1,9})"?\s*', if_match)
    if m is None:
        raise ProfileErrorBadRequest('If-Match must be the profile revision, for example "3"')
    return int(m.group(1))


def _entity_out(e: EntityMetrics, now: datetime) -> EntityMetricsOut:
    lag = (now - e.last_changed_on).total_seconds() if e.last_changed_on else None
    return EntityMetricsOut(
        entity=e.entity,
        TotalNotifications=e.total,
        SuccessNotifications=e.success,
        FailureNotifications=e.failure,
        StaleNotifications=e.stale,
        UnprocessableNotifications=e.unprocessable,
        SkippedNotifications=e.skipped,
        LastExportDate=e.last_export_date,
        LastExportStatus=e.last_export_status,
        InitialSyncState=e.initial_sync_state,
        lastChangedOn=e.last_changed_on,
        lagSeconds=None if lag is None else max(0.0, round(lag, 3)),
    )


def _stream_failures(first: FailureEntry | None, rest: Iterator[FailureEntry], as_csv: bool) -> Iterator[bytes]:
    if as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, FAILURE_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        yield buf.getvalue().encode()
        if first is None:
            return
        for entry in _chain(first, rest):
            buf.seek(0)
            buf.truncate()
            writer.writerow(entry.row())
            yield buf.getvalue().encode()
        return
    yield b"["
    if first is not None:
        sep = b""
        for entry in _chain(first, rest):
            yield sep + json.dumps(entry.row(), ensure_ascii=False).encode()
            sep = b","
    yield b"]"


def _chain(first: FailureEntry, rest: Iterator[FailureEntry]) -> Iterator[FailureEntry]:
    yield first
    yield from rest


# ---------------------------------------------------------------------------------------- app
def create_app(services: ApiServices | Callable[[], ApiServices]) -> FastAPI:
    lazy = _Lazy(services)
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
        return _problem(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("admin API: unexpected %s", type(exc).__name__, exc_info=exc)
        return _problem(500, "internal error; see the service log")

    # --------------------------------------------------------------------------------- health
    @app.get("/health", response_model=HealthOut, tags=["service"], responses={503: {"model": HealthOut}})
    def health(s: Svc) -> Any:
        """Readiness: the admin store answers. The only anonymous route."""
        try:
            s.store.ping()
            version = s.store.schema_version()
        except Exception as exc:
            log.warning("health: admin store unavailable: %s", type(exc).__name__)
            return JSONResponse(HealthOut(status="unavailable", store="unavailable").model_dump(), status_code=503)
        return HealthOut(status="ok", store="ok", schemaVersion=version)

    # ------------------------------------------------------------------------------- profiles
    @app.get("/profiles", response_model=list[ProfileOut], tags=["profiles"], responses=ERRORS)
    def list_profiles(
        s: Svc,
        organizationId: Guid = None,
        state: Annotated[ProfileState | None, Query()] = None,
    ) -> Any:
        """All profiles, by name; optionally of one organization or in one state."""
        return [ProfileOut.of(p) for p in s.profiles.list_profiles(organization_id=organizationId, state=state)]

    @app.post("/profiles", response_model=ProfileOut, status_code=201, tags=["profiles"], responses=ERRORS)
    def create_profile(
        s: Svc,
        body: ProfileCreate,
        response: Response,
        check: Annotated[bool, Query(description="Check the destination before 'create and activate'.")] = True,
    ) -> Any:
        """Create a profile (draft), or create and activate it (``state: active``)."""
        p = s.profiles.create(body, check=check)
        response.headers["Location"] = f"/profiles/{p.id}"
        response.headers["ETag"] = f'"{p.revision}"'
        return ProfileOut.of(p)

    @app.post("/profiles/validate", response_model=ValidationOut, tags=["profiles"], responses=ERRORS)
    def validate_profile(s: Svc, body: ProfileCreate) -> Any:
        """Check a profile before creating it: the fields, the name, and the destination live
        (secret, connect, schema, create and drop a table); each failure named."""
        return ValidationOut.of(s.profiles.validate(body))

    @app.get("/profiles/{profile_id}", response_model=ProfileOut, tags=["profiles"], responses=ERRORS)
    def get_profile(s: Svc, profile_id: ProfileId, response: Response) -> Any:
        p = s.profiles.get(profile_id)
        response.headers["ETag"] = f'"{p.revision}"'
        return ProfileOut.of(p)

    @app.put("/profiles/{profile_id}", response_model=ProfileOut, tags=["profiles"], responses=ERRORS)
    def update_profile(
        s: Svc,
        profile_id: ProfileId,
        body: ProfileUpdate,
        response: Response,
        if_match: Annotated[str | None, Header(alias="If-Match", max_length=40)] = None,
    ) -> Any:
        """Replace the profile's fields (entities and relationships may be added or removed; nothing
        is dropped in the destination). Send ``If-Match: "<revision>"`` to update safely."""
        p = s.profiles.update(profile_id, body, if_match=_revision(if_match))
        response.headers["ETag"] = f'"{p.revision}"'
        return ProfileOut.of(p)

    @app.delete("/profiles/{profile_id}", response_model=DeletedOut, tags=["profiles"], responses=ERRORS)
    def delete_profile(s: Svc, profile_id: ProfileId) -> Any:
        """Delete the profile, its metrics, failure logs, parked and retry blobs; never the destination's tables."""
        removed = s.profiles.delete(profile_id)
        return DeletedOut(id=profile_id.lower(), blobsDeleted=removed)

    @app.post("/profiles/{profile_id}/activate", response_model=ProfileOut, tags=["profiles"], responses=ERRORS)
    def activate_profile(
        s: Svc,
        profile_id: ProfileId,
        check: Annotated[bool, Query(description="Check the destination first.")] = True,
    ) -> Any:
        """Start applying notifications to the profile's destination."""
        return ProfileOut.of(s.profiles.activate(profile_id, check=check))

    @app.post("/profiles/{profile_id}/deactivate", response_model=ProfileOut, tags=["profiles"], responses=ERRORS)
    def deactivate_profile(s: Svc, profile_id: ProfileId) -> Any:
        """Stop applying: notifications are completed and counted as skipped for this profile."""
        return ProfileOut.of(s.profiles.deactivate(profile_id))

    @app.get("/profiles/{profile_id}/test", response_model=ValidationOut, tags=["profiles"], responses=ERRORS)
    def test_profile(s: Svc, profile_id: ProfileId) -> Any:
        """Live check of the stored profile's destination; each failure named."""
        return ValidationOut.of(s.profiles.test(profile_id))

    # -------------------------------------------------------------------------------- metrics
    @app.get("/profiles/{profile_id}/metrics", response_model=MetricsOut, tags=["metrics"], responses=ERRORS)
    def profile_metrics(s: Svc, profile_id: ProfileId) -> Any:
        """Per entity: notifications total, succeeded, failed, stale, unprocessable, skipped; last
        export date and status; initial sync state; lag (now minus changedOn of the last applied)."""
        p, m = s.profiles.metrics(profile_id)
        now = s.clock()
        entities = [_entity_out(e, now) for e in m.entities]
        totals = {
            "TotalNotifications": sum(e.total for e in m.entities),
            "SuccessNotifications": sum(e.success for e in m.entities),
            "FailureNotifications": sum(e.failure for e in m.entities),
            "StaleNotifications": sum(e.stale for e in m.entities),
            "UnprocessableNotifications": sum(e.unprocessable for e in m.entities),
            "SkippedNotifications": sum(e.skipped for e in m.entities),
        }
        return MetricsOut(
            profileId=p.id, state=p.state, pendingRetry=m.pending_retry, lastBatchAt=m.last_batch_at,
            totals=totals, entities=entities,
        )  # fmt: skip

    @app.get("/metrics", response_model=ServiceMetricsOut, tags=["metrics"], responses=ERRORS)
    def service_metrics(s: Svc) -> Any:
        """Profiles per state, and notifications that matched no profile (skipped), per entity."""
        counts = {st.value: 0 for st in ProfileState}
        for p in s.profiles.list_profiles():
            counts[p.state.value] += 1
        now = s.clock()
        unrouted = [_entity_out(e, now) for e in s.store.metrics(UNROUTED).entities]
        return ServiceMetricsOut(profiles=counts, unrouted=unrouted)

    # ------------------------------------------------------------------------------- failures
    failure_responses: dict[int | str, dict[str, Any]] = {
        **ERRORS,
        200: {
            "description": "Failure-log entries, oldest first (JSON array, or CSV with Accept: text/csv)",
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/FailureOut"}}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
    }

    @app.get(
        "/profiles/{profile_id}/failures",
        tags=["failures"],
        responses=failure_responses,
        response_class=StreamingResponse,
    )
    def failures(
        s: Svc,
        profile_id: ProfileId,
        start: Annotated[datetime | None, Query(description="From (default: end minus 24 hours).")] = None,
        end: Annotated[datetime | None, Query(description="Until (default: now).")] = None,
        accept: Annotated[str | None, Header(max_length=1000)] = None,
    ) -> Any:
        """The profile's failure log by time range (at most 31 days), streamed."""
        lo, hi = _window(start, end, s.clock())
        entries = iter(s.profiles.failures(profile_id, lo, hi))
        first = next(entries, None)  # errors surface before the response starts
        as_csv = "text/csv" in (accept or "").lower()
        media = "text/csv; charset=utf-8" if as_csv else "application/json"
        return StreamingResponse(_stream_failures(first, entries, as_csv), media_type=media)

    @app.get("/profiles/{profile_id}/failures/links", response_model=LinksOut, tags=["failures"], responses=ERRORS)
    def failure_links(
        s: Svc,
        profile_id: ProfileId,
        start: Annotated[datetime | None, Query()] = None,
        end: Annotated[datetime | None, Query()] = None,
    ) -> Any:
        """Read-only user-delegation SAS URLs (valid 24 hours) of the failure-log blobs in range (Azure)."""
        lo, hi = _window(start, end, s.clock())
        links = s.profiles.failure_links(profile_id, lo, hi)
        if links is None:
            raise _Unavailable("SAS links need Microsoft Entra access to the storage account (Azure only)")
        return LinksOut(links=[LinkOut(blob=x.blob, url=x.url, expiresOn=x.expires_on) for x in links])

    @app.post("/profiles/{profile_id}/failures/resync", response_model=ResyncOut, tags=["failures"], responses=ERRORS)
    def resync(s: Svc, profile_id: ProfileId, body: ResyncIn) -> Any:
        """Re-apply the selected failed records from their parked notifications (what became stale is skipped)."""
        lo, hi = _window(body.start, body.end, s.clock())
        report = s.profiles.resync(profile_id, ResyncSelection(lo, hi, body.entities, body.recordIds))
        return ResyncOut(selected=report.selected, missing=report.missing, counts=report.result.counts())

    # ----------------------------------------------------------- routers: metrics history, console
    app.include_router(history.router)
    app.include_router(console.router)

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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_SWAGGER_HTML)

    return app


class _Unavailable(ProfileError):
    status = 503


_SWAGGER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>DES admin API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>
// The key comes from this page's own ?code= (as the Azure Functions host takes it) and is sent as
// x-functions-key with every request the page makes, /openapi.json included.
const key = new URLSearchParams(window.location.search).get("code");
const base = window.location.pathname.replace(/\\/docs\\/?$/, "");
window.ui = SwaggerUIBundle({
  url: base + "/openapi.json",
  dom_id: "#swagger-ui",
  persistAuthorization: false,
  requestInterceptor: (req) => { if (key) { req.headers["x-functions-key"] = key; } return req; },
});
</script></body></html>
"""
