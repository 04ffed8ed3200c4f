"""``des replay`` with default settings keeps its memory bounded and its workers tied to it (issue 12).

* A file of long lines (batch envelopes of ~20 KB) used to be read into one 5,000-line batch per
  worker, so memory grew with the file (340 MB for 100 MB); batches are now cut by bytes too.
* Killing the replaying process used to leave its workers writing; now they exit with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from shared.tools.crm_simulator import bench_lines

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CEILING_MIB = 150


def envelopes(path: Path, lines: int, line_bytes: int = 20_000) -> None:
    """``lines`` batch envelopes of bench notifications, each about ``line_bytes`` long."""
    group: list[str] = []
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        for body in bench_lines(lines * 40, 20, seed=5):
            if body.startswith("["):
                continue
            group.append(body)
            if sum(map(len, group)) >= line_bytes:
                fh.write("[" + ",".join(group) + "]\n")
                group = []
                written += 1
                if written == lines:
                    return
    raise AssertionError("not enough notifications for the envelopes")


def replay_cmd(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "shared", "replay", str(data), "--destination", f"sqlite:///{tmp_path / 'out.db'}",
            "--rejects-dir", str(tmp_path / "rejects"), *extra]  # fmt: skip


def test_peak_memory_of_a_file_of_long_lines_stays_under_the_ceiling(tmp_path: Path) -> None:
    data = tmp_path / "long-lines.jsonl"
    envelopes(data, 1500)  # 30 MB: one batch of 1,500 lines used to take ~250 MB on its own
    proc = subprocess.Popen(replay_cmd(data, tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
        time.sleep(0.02)
    assert proc.stdout is not None
    summary = json.loads(proc.stdout.read().decode().strip().splitlines()[-1])
    assert proc.returncode == 0
    assert summary["lines"] == 1500
    assert summary["unprocessable"] == summary["failed"] == 0
    assert peak / 2**20 <= CEILING_MIB, f"peak RSS of the replay process tree {peak / 2**20:.0f} MiB"


def test_workers_exit_when_the_replaying_process_dies(tmp_path: Path) -> None:
    data = tmp_path / "lines.jsonl"
    data.write_text("\n".join(bench_lines(3000, 5, seed=3)) + "\n", encoding="utf-8")
    lock = tmp_path / "out.db.replay-lock"  # the SQLite write lock the workers take turns on: hold it
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen(replay_cmd(data, tmp_path, "--workers", "2", "--batch-size", "100"), cwd=tmp_path,
                                stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = parent.children()
            time.sleep(0.05)
        assert len(workers) == 2, "the replay did not start its workers"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _gone, alive = psutil.wait_procs(workers, timeout=20)
        for p in alive:  # clean up before failing
            p.kill()
        assert not alive, "replay workers kept running after the replaying process died"
        fcntl.flock(held, fcntl.LOCK_UN)
