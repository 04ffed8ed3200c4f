"""``python -m shared api`` serves the admin API with uvicorn (embedded store in the working
directory), and ``python -m shared profiles|metrics|failures`` drive it over real HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.admin import ADMIN_KEY

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DES_ADMIN_API_KEY": ADMIN_KEY,
        "DES_ALLOW_LITERAL_DESTINATIONS": "true",
    }
    env.pop("DES_ADMIN_STORE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared", "api", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.stdout else ""
                raise RuntimeError(f"des api did not start: {out}")
            time.sleep(0.1)
        yield url, {**env, "DES_API_URL": url}, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def des(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_drives_the_local_api(server: tuple[str, dict[str, str], Path]) -> None:
    url, env, cwd = server
    assert (cwd / "des-admin.db").exists()  # the embedded store, in the working directory
    assert httpx.get(f"{url}/profiles", timeout=5).status_code == 401
    spec = cwd / "profile.json"
    spec.write_text(
        json.dumps(
            {
                "name": "cli",
                "organizationId": ORG,
                "destination": f"sqlite:///{cwd / 'dest.db'}",
                "entities": ["account"],
            }
        )
    )

    ok = des(env, "profiles", "validate", str(spec), cwd=cwd)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["valid"] is True

    created = des(env, "profiles", "create", str(spec), "--activate", cwd=cwd)
    assert created.returncode == 0, created.stderr
    pid = json.loads(created.stdout)["id"]
    assert json.loads(created.stdout)["state"] == "active"

    listed = des(env, "profiles", "list", "--state", "active", cwd=cwd)
    assert [p["id"] for p in json.loads(listed.stdout)] == [pid]

    dup = des(env, "profiles", "create", str(spec), cwd=cwd)
    assert dup.returncode == 5
    assert "409" in dup.stderr
    assert "already exists" in dup.stderr

    metrics = des(env, "metrics", pid, cwd=cwd)
    assert json.loads(metrics.stdout)["profileId"] == pid
    assert json.loads(des(env, "metrics", cwd=cwd).stdout)["profiles"]["active"] == 1

    failures = des(env, "failures", "download", pid, "-o", str(cwd / "f.csv"), cwd=cwd)
    assert failures.returncode == 0, failures.stderr  # the local reject store serves the failure log
    assert (cwd / "f.csv").read_text(encoding="utf-8").startswith("Entity,RecordId,")

    assert json.loads(des(env, "profiles", "deactivate", pid, cwd=cwd).stdout)["state"] == "inactive"
    assert des(env, "profiles", "delete", pid, cwd=cwd).returncode == 0
    missing = des(env, "profiles", "show", pid, cwd=cwd)
    assert missing.returncode == 5
    assert "404" in missing.stderr

    bad_key = des({**env, "DES_ADMIN_API_KEY": "wrong"}, "profiles", "list", cwd=cwd)
    assert bad_key.returncode == 5
    assert "401" in bad_key.stderr
    nowhere = des({**env, "DES_API_URL": f"http://127.0.0.1:{free_port()}"}, "profiles", "list", cwd=cwd)
    assert nowhere.returncode == 3
    assert f"{uuid.UUID(pid)}" not in nowhere.stderr


def test_api_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DES_ADMIN_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    r = des(env, "api", "--port", str(free_port()), cwd=tmp_path)
    assert r.returncode == 2
    assert "DES_ADMIN_API_KEY" in r.stderr
