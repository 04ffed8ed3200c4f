"""``des sync`` as a user runs it: a separate process reading the simulator over HTTP into SQLite/PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.destinations import open_destination
from shared.tools.dataverse_sim import RunningSimulator, run_simulator

pytestmark = pytest.mark.integration


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with run_simulator(records=15, seed=11) as running:
        yield running


def des_sync(running: RunningSimulator, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DES_DATAVERSE_TOKEN": token or running.token}
    return subprocess.run(
        [sys.executable, "-m", "shared", "sync", "--dataverse", running.environment_url, *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def ids(dsn: str, table: str) -> set[str]:
    dest = open_destination(dsn)
    try:
        return {str(r["Id"]).lower() for r in dest.table_rows(table)}
    finally:
        dest.close()


def test_des_sync_initial_then_delta(tmp_path: Path, dsn: str, sim: RunningSimulator) -> None:
    store = f"sqlite:///{tmp_path / 'admin.db'}"
    common = ["--destination", dsn, "--entities", "account,contact,opportunity", "--store", store,
              "--page-size", "7", "--once", "--rejects-dir", str(tmp_path / "rejects")]  # fmt: skip
    first = des_sync(sim, *common)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    for key in ("upserts", "deletes", "applied", "stale", "failed", "unprocessable", "pages", "seconds"):
        assert key in summary
    truth = {e: set(sim.sim.truth(e)) for e in ("account", "contact", "opportunity")}
    assert summary["upserts"] == sum(len(t) for t in truth.values())
    assert summary["failed"] == 0
    assert summary["unprocessable"] == 0
    assert summary["pages"] >= 3 + 5 + 3  # 15, 30 and 15 rows in pages of 7
    for entity, want in truth.items():
        assert ids(dsn, entity) == want

    changes = sim.sim.random_changes(40, seed=3)
    assert any(c.startswith("delete ") for c in changes)
    second = des_sync(sim, *common)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["deletes"] > 0
    assert summary["pages"] >= 3  # one delta pass per entity
    for entity in truth:
        assert ids(dsn, entity) == set(sim.sim.truth(entity))


def test_des_sync_exit_codes(tmp_path: Path, sqlite_dsn: str, sim: RunningSimulator) -> None:
    store = f"sqlite:///{tmp_path / 'admin.db'}"
    base = ["--destination", sqlite_dsn, "--store", store, "--once"]
    bad_entity = des_sync(sim, *base, "--entities", "nosuchtable")
    assert bad_entity.returncode == 2
    assert "nosuchtable" in bad_entity.stderr
    assert json.loads(bad_entity.stdout.strip().splitlines()[-1])["entities"] == {"nosuchtable": "failed"}
    assert des_sync(sim, *base, "--entities", "Bad-Name").returncode == 2
    assert des_sync(sim, "--destination", "nosuch://x", "--store", store, "--entities", "account").returncode == 2
    refused = des_sync(sim, *base, "--entities", "account", token="not-a-valid-token")
    assert refused.returncode == 3
    assert "not-a-valid-token" not in refused.stderr + refused.stdout
    sim.sim.fail_next(100)
    down = des_sync(sim, *base, "--entities", "account")
    assert down.returncode == 4
    assert "resumes" in down.stderr
