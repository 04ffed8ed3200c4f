"""``replay --workers``: batches applied by several processes, out of file order, converge anyway."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.destinations import Layout, open_destination
from shared.replay import replay_parallel
from shared.tools.crm_simulator import CrmSimulator, check_convergence

pytestmark = pytest.mark.integration

BAD = [
    "{not json",
    json.dumps({"schemaVersion": 2, "entity": "account"}),
]


def write_stream(path: Path, seed: int) -> tuple[CrmSimulator, int]:
    sim = CrmSimulator(seed, accounts=300, contacts=300, opportunities=300)
    notes = itertools.chain(sim.initial_sync(), sim.changes(3000))
    lines = 0
    with path.open("w", encoding="utf-8") as fh:
        for body in sim.deliver(notes, duplicate_rate=0.15, reorder_window=60, envelope_max=8):
            fh.write(body + "\n")
            lines += 1
        for body in BAD:
            fh.write(body + "\n")
            lines += 1
    return sim, lines


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_replay_converges_and_conserves(dsn: str, tmp_path: Path, workers: int) -> None:
    data = tmp_path / "stream.jsonl"
    sim, lines = write_stream(data, seed=workers)
    layout = Layout(write_delete_log=True) if dsn.startswith("sqlite") else Layout(schema="par", write_delete_log=True)
    report = replay_parallel(data, dsn, layout, workers=workers, batch_size=97, rejects_dir=tmp_path / "rejects")
    r = report.result
    assert report.lines == lines
    assert r.received == r.applied + r.stale + r.failed + r.unprocessable
    assert r.unprocessable == len(BAD)
    assert r.failed == 0
    dest = open_destination(dsn, layout)
    try:
        conv = check_convergence(dest, sim.truth(), layout)
        assert conv.ok, conv.problems()
    finally:
        dest.close()
    kept = (tmp_path / "rejects" / "unprocessable.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["body"] for line in kept) == sorted(BAD)


def test_parallel_workers_share_one_failure_log_with_one_header(tmp_path: Path) -> None:
    """Misfits from several workers land in one failures.csv: one header, whole lines."""
    rows = []
    for i in range(400):
        value: object = i if i % 2 == 0 else f"text {i}"
        rows.append(json.dumps({
            "schemaVersion": 1, "organizationId": "11111111-1111-1111-1111-111111111111", "entity": "account",
            "recordId": f"00000000-0000-0000-0000-{i:012d}", "changeType": "create", "version": 1 + i,
            "changedOn": "2026-11-21T10:00:00Z", "attributes": {"amount": value},
        }))
    data = tmp_path / "misfits.jsonl"
    # Which worker creates the column first decides its type; either way half the records misfit.
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = replay_parallel(
        data, f"sqlite:///{tmp_path / 'd.db'}", Layout(), workers=2, batch_size=10, rejects_dir=tmp_path / "rej"
    )
    assert report.result.failed == 200
    with (tmp_path / "rej" / "failures.csv").open(newline="", encoding="utf-8") as fh:
        log = list(csv.DictReader(fh))
    assert len(log) == 200
    assert {row["Entity"] for row in log} == {"account"}
    assert all("does not fit" in row["FailureReason"] for row in log)


def test_cli_workers_option_and_its_validation(tmp_path: Path) -> None:
    data = tmp_path / "stream.jsonl"
    write_stream(data, seed=5)
    db = tmp_path / "cli.db"
    run = subprocess.run(
        [sys.executable, "-m", "shared", "replay", str(data), "--destination", f"sqlite:///{db}",
         "--workers", "2", "--batch-size", "50", "--rejects-dir", str(tmp_path / "r")],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["received"] == summary["applied"] + summary["stale"] + summary["failed"] + summary["unprocessable"]
    bad = subprocess.run(
        [sys.executable, "-m", "shared", "replay", str(data), "--destination", f"sqlite:///{db}", "--workers", "0"],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 2
    assert "--workers must be at least 1" in bad.stderr
