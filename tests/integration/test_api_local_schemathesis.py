"""schemathesis against ``des api`` as a user starts it (issue 12): the embedded default (SQLite
store and local reject store in the working directory, no Blob storage), over HTTP, with the
examples and coverage phases and **all** checks: no server error, no schema violation (status
codes, content types, headers and bodies as documented), authentication enforced, schema-valid
requests accepted and schema-violating ones refused (4xx), 405 with an exact ``Allow`` for a method a
path does not take.

What made the last four checks pass (each found by this run before): a fixed path's undeclared
method reached a parametrised route (``PUT /profiles/validate``) and ``Allow`` named one route's
methods (shared/api/app.py, answer_undeclared_methods); the schema now states what the API checks
(a source credential's fields per kind, a new profile's states, unique entity names, the
environment URL, the destination as this deployment takes it, If-Match, strict integers, booleans
and RFC 3339 times); a valid request whose destination or source check fails is 409, not 422; an
empty time range is empty, not an error, and the range is no longer capped at 31 days.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

KEY = "schemathesis-key-4711"
ST = Path(sys.executable).with_name("st")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NoIdentity(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"error": "invalid_request", "error_description": "no managed identity on this machine"}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def no_identity() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoIdentity)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()


@pytest.fixture
def local_api(tmp_path: Path, no_identity: int) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DES_", "AzureWebJobs"))}
    env["DES_ADMIN_API_KEY"] = KEY
    # No managed identity on this machine, said at once: azure-identity's managed identity (Key Vault
    # for the destination, a source's managedIdentity) asks a local endpoint that refuses every token
    # request (HTTP 400, not retried) instead of probing the instance metadata address, which a
    # sandboxed network may accept and never answer. The API's answers are the same (the credential
    # is unavailable), without seconds to minutes of waiting per request.
    env["IDENTITY_ENDPOINT"] = f"http://127.0.0.1:{no_identity}/msi/token"
    env["IDENTITY_HEADER"] = "schemathesis"
    # No outbound network either, said at once: Key Vault and Dataverse calls for the generated
    # vault and environment URLs go through a proxy address nothing listens on (connection refused,
    # the same answers as an unreachable vault or environment), not to a network that may accept
    # the connection and never answer (minutes per request).
    refused = f"http://127.0.0.1:{free_port()}"
    env.update(HTTPS_PROXY=refused, HTTP_PROXY=refused, NO_PROXY="127.0.0.1,localhost")
    server = subprocess.Popen(
        [sys.executable, "-m", "shared", "api", "--port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "api.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)  # noqa: S310 - a local URL
                break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(local_api: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [str(ST), "run", f"{local_api}/openapi.json", "-H", f"x-functions-key: {KEY}",
         "--phases", "examples,coverage", "--checks", "all", "--max-examples", "10", "--seed", "4711"],
        cwd=tmp_path, capture_output=True, text=True, timeout=480, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:]
    assert "Coverage" in run.stdout
