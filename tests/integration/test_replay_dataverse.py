"""``des replay --dataverse URL`` (issue 13) as a user runs it: a subprocess reading a file of the
Dataverse simulator's push messages (no post-images, no pre-images: every one needs the re-read),
re-reading through the simulator's Web API (uvicorn on 127.0.0.1) with the token from
``DES_DATAVERSE_TOKEN``, into real SQLite and PostgreSQL. Without ``--dataverse`` the same messages
are unprocessable with the reason; a token the environment refuses exits 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import config as S
from shared.cli import EXIT_CONNECTION, EXIT_USAGE
from shared.destinations import Layout, open_destination
from shared.tools.dataverse_check import compare
from shared.tools.dataverse_sim import PushOptions, RunningSimulator, run_simulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REL = "des_account_contact"


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with run_simulator(records=5, seed=11, push=PushOptions(post_image="none", delete_pre_image=False)) as running:
        yield running


def des(*args: str, cwd: Path, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != S.DATAVERSE_TOKEN}
    env["PYTHONPATH"] = str(ROOT)
    if token is not None:
        env[S.DATAVERSE_TOKEN] = token
    return subprocess.run([sys.executable, "-m", "shared", "replay", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(doc, dict)
    return doc


def history(running: RunningSimulator, path: Path) -> tuple[str, str]:
    """Changes made at the simulator, written as message lines (application properties + body)."""
    state = running.sim.state
    running.sim.push.drain()  # the generated records' own messages: not part of this file
    a = state.create("account", {"name": "pushed", "numberofemployees": 7})
    state.update("account", a, {"name": "renamed"})  # partial Target
    contact = state.ids("contact")[0]
    state.create("contact", {"lastname": "Zoë 😀", "parentcustomerid": None})
    state.associate(REL, a, contact)
    gone = state.create("account", {"name": "created, then deleted"})
    state.delete("account", gone)  # no pre-image: verified gone at the source
    with path.open("wb") as fh:
        for mm in running.sim.push.drain():
            fh.write(mm.line("message") + b"\n")
    return a, gone


def test_replay_re_reads_through_the_environment(tmp_path: Path, dsn: str, sim: RunningSimulator) -> None:
    path = tmp_path / "messages.jsonl"
    a, gone = history(sim, path)
    out = summary(des(str(path), "--destination", dsn, "--dataverse", sim.environment_url,
                      "--rejects-dir", str(tmp_path / "rejects"), cwd=tmp_path, token=sim.token))  # fmt: skip
    assert out["unprocessable"] == 0, out
    assert out["failed"] == 0, out
    assert out["applied"] >= 4, out
    dest = open_destination(dsn, Layout())
    try:
        accounts = {str(r["Id"]).lower(): r for r in dest.table_rows("account")}  # type: ignore[attr-defined]
        assert accounts[a]["name"] == "renamed"
        assert accounts[a]["versionnumber"] == 2 * sim.sim.truth("account")[a]["versionnumber"]
        assert gone not in accounts
        links = list(dest.table_rows(REL))  # type: ignore[attr-defined]
        assert [str(r["accountid"]).lower() for r in links] == [a]
        # every row replay wrote is the simulator's current row (nothing partial, nothing stale)
        for entity in ("account", "contact", REL):
            report = compare(dest, sim.sim, entity)
            assert (report.unexpected, report.mismatched) == ([], []), report.problems()
    finally:
        dest.close()
    # replaying again is safe: everything is stale or already applied
    again = summary(des(str(path), "--destination", dsn, "--dataverse", sim.environment_url,
                        "--rejects-dir", str(tmp_path / "rejects"), cwd=tmp_path, token=sim.token))  # fmt: skip
    assert (again["unprocessable"], again["failed"]) == (0, 0), again


def test_without_dataverse_the_messages_are_unprocessable_with_the_reason(
    tmp_path: Path, sqlite_dsn: str, sim: RunningSimulator
) -> None:
    path = tmp_path / "messages.jsonl"
    history(sim, path)
    rejects = tmp_path / "rejects"
    out = summary(des(str(path), "--destination", sqlite_dsn, "--rejects-dir", str(rejects), cwd=tmp_path,
                      token=None))  # fmt: skip
    lines = len(path.read_text().splitlines())
    assert out["unprocessable"] == lines, out
    kept = "".join(p.read_text() for p in rejects.rglob("*") if p.is_file())
    assert "register a post-image on the step" in kept


def test_a_refused_token_and_bad_usage(tmp_path: Path, sqlite_dsn: str, sim: RunningSimulator) -> None:
    path = tmp_path / "messages.jsonl"
    history(sim, path)
    refused = des(str(path), "--destination", sqlite_dsn, "--dataverse", sim.environment_url, cwd=tmp_path,
                  token="not-the-token")  # fmt: skip
    assert refused.returncode == EXIT_CONNECTION, refused.stderr
    assert "Dataverse" in refused.stderr
    assert "not-the-token" not in refused.stderr + refused.stdout
    two = des(str(path), "--destination", sqlite_dsn, "--dataverse", sim.environment_url, "--workers", "2",
              cwd=tmp_path, token=sim.token)  # fmt: skip
    assert two.returncode == EXIT_USAGE
    assert "--workers 1" in two.stderr
