"""The browser tier: the admin console in Debian's headless ``chromium`` driven by Playwright for
Python, against the real admin API on uvicorn (127.0.0.1, a free port) with an embedded SQLite
store. Playwright's own browser downloads are never used (``executable_path``); without the
``chromium`` package or the ``playwright`` module the tests are skipped with the reason.

Screenshots go to ``tmp_path`` unless ``DES_CONSOLE_SCREENSHOTS`` names a folder (the committed
ones in docs/console/ are made with ``DES_CONSOLE_SCREENSHOTS=docs/console``).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.api import ApiServices, AuthConfig, create_app
from shared.root import ProfileRuntime

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """The admin API (the real ASGI app, console included) on uvicorn, and an HTTP client with the key."""

    url: str
    key: str
    rt: ProfileRuntime
    http: httpx.Client

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)


@contextmanager
def serve(rt: ProfileRuntime) -> Iterator[Served]:
    import uvicorn

    key = secrets.token_urlsafe(24)
    app = create_app(ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=key)))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, name="console-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the admin API did not start on port {port}")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, headers={"x-functions-key": key}, timeout=30) as http:
        yield Served(url, key, rt, http)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = os.environ.get("DES_CONSOLE_SCREENSHOTS")
    out = Path(folder) if folder else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out
