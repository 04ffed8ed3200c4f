"""The admin API's guard: authentication, then the body size limit, then an access line (no query string).

It runs before routing, body parsing or validation, so an anonymous caller learns nothing but 401/403.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from shared.api.auth import AuthError
from shared.api.deps import Lazy
from shared.api.routers.console import is_console_file

log = logging.getLogger("shared.api.app")
access_log = logging.getLogger("shared.api.access")

ANONYMOUS_PATHS = frozenset({"/health"})

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


def _code(scope: Scope) -> str | None:
    """The ``code`` query parameter (a function key, as the Functions host takes it), if any."""
    raw = scope.get("query_string", b"")
    if b"code=" not in raw:
        return None
    values = parse_qs(raw.decode("latin-1"), keep_blank_values=False).get("code")
    return values[0] if values else None


class GuardMiddleware:
    """Authentication, then the body size limit, then an access line (no query string)."""

    def __init__(self, app: ASGIApp, services: Lazy) -> None:
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
                who = svc.auth.authorize(headers, _code(scope))
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
