"""schemathesis against ``des api`` as a user starts it (issue 12): the embedded default (SQLite
store and local reject store in the working directory, no Blob storage), over HTTP, with the
examples and coverage phases and the checks below: no server error, no schema violation (status
codes, content types, headers and bodies as documented), authentication enforced.

Left out, with the reasons (open work, see the report of issue 12):

* ``positive_data_acceptance`` (ST202): some schema-valid requests are refused with a reason by rules
  the schema cannot state: ``start`` before ``end``, a destination that is a Key Vault secret URI (or
  an allowed literal DSN) and whose check passes before activation.
* ``negative_data_rejection`` (ST201), ``unsupported_method`` (ST204) and
  ``allow_header_conformance`` (ST205): Starlette's routing answers an undeclared method on a path
  that another route's pattern matches (``PUT /profiles/validate`` matches ``PUT
  /profiles/{profile_id}``) with that route's validation error, and lists in ``Allow`` only the
  methods of the first matching route.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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


@pytest.fixture
def local_api(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DES_", "AzureWebJobs"))}
    env["DES_ADMIN_API_KEY"] = KEY
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
         "--phases", "examples,coverage", "--checks", "all", "--exclude-checks",
         "positive_data_acceptance,negative_data_rejection,unsupported_method,allow_header_conformance",
         "--max-examples", "10", "--seed", "4711"],
        cwd=tmp_path, capture_output=True, text=True, timeout=480, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:]
    assert "Coverage" in run.stdout
