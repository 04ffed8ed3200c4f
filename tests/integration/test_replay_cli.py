"""``python -m shared replay`` as a user runs it: a subprocess, real files, real databases."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shared.cli import EXIT_CONNECTION, EXIT_USAGE
from shared.destinations import open_destination
from shared.destinations.inspect import table_rows
from shared.engine.failure_schema import COLUMNS as FAILURE_LOG_COLUMNS
from tests.support.model import Change, ReferenceModel, diff, envelope, expected_state, table_state

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def des(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    doc = json.loads(last)
    assert isinstance(doc, dict)
    return doc


def stream() -> tuple[list[str], list[list[Change]], int, int]:
    """Lines of message bodies; the valid changes of each line; failing and bad counts."""
    creates = [Change("account", rid(i), "create", 1, {"name": f"n{i}", "employees": i}) for i in range(6)]
    updates = [Change("account", rid(i), "update", 2, {"name": f"u{i}"}) for i in range(3)]
    deletes = [Change("account", rid(4), "delete", 3), Change("contact", rid(9), "delete", 1)]
    contacts = [Change("contact", rid(i), "create", 5, {"fullname": "Zoë 😀", "parentid": None}) for i in range(10, 13)]
    misfit = Change("account", rid(20), "create", 1, {"employees": "many"})  # failed
    per_line: list[tuple[str, list[Change]]] = [(c.body(), [c]) for c in creates]
    per_line.append((envelope(updates), updates))  # a batch envelope
    per_line += [(updates[0].body(), [updates[0]]), (creates[1].body(), [creates[1]])]  # repeats, late
    per_line += [(envelope(deletes), deletes), (envelope(contacts), contacts)]
    per_line.append(("{not json", []))  # unprocessable
    per_line.append((json.dumps({"schemaVersion": 2, "entity": "account"}), []))  # unprocessable
    per_line.append((misfit.body(), []))
    per_line.append(("", []))  # blank lines are skipped
    return [line for line, _ in per_line], [changes for _, changes in per_line], 1, 2


def replay_into(data: Path, dsn: str, batch_size: str, rejects: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``des replay`` of ``data`` into ``dsn`` with the prefix ``rp``, run in the file's folder."""
    args = ["replay", str(data), "--destination", dsn, "--batch-size", batch_size, "--rejects-dir", str(rejects)]
    return des(*args, "--prefix", "rp", *extra, cwd=data.parent)


@pytest.mark.parametrize("batch_size", ["1", "4", "5000"])
def test_replay_applies_a_file(tmp_path: Path, dsn: str, batch_size: str) -> None:
    lines, per_line, failing, bad = stream()
    valid = [c for changes in per_line for c in changes]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects"
    # One worker: batches in file order, so per-batch counts and reject order are exact.
    # Several workers (the default) are tested in test_replay_parallel.py.
    proc = replay_into(data, dsn, batch_size, rejects, "--write-delete-log", "--workers", "1")
    got = summary(proc)
    assert "Traceback" not in proc.stderr
    total = len(valid) + failing + bad
    assert got["received"] == total
    assert got["failed"] == failing
    assert got["unprocessable"] == bad
    assert got["received"] == got["applied"] + got["stale"] + got["failed"] + got["unprocessable"]  # type: ignore[operator]
    assert isinstance(got["seconds"], float | int)
    assert got["lines"] == len([line for line in lines if line])
    # Applied and stale exactly as the model says for batches of this size (the reduction buffer
    # makes an older change stale when a newer one of the same record is in its batch).
    model = ReferenceModel()
    size = int(batch_size)
    nonblank = [changes for line, changes in zip(lines, per_line, strict=True) if line]
    applied = stale = 0
    for start in range(0, len(nonblank), size):
        counts = model.apply_batch([c for changes in nonblank[start : start + size] for c in changes])
        applied, stale = applied + counts.applied, stale + counts.stale
    assert (got["applied"], got["stale"]) == (applied, stale)
    dest = open_destination(dsn)
    try:
        for entity in ("account", "contact"):
            problems = list(diff(expected_state(model, entity), table_state(table_rows(dest, f"rp_{entity}"))))
            assert not problems, problems
        logged = sorted((str(r["EntityName"]), str(r["RecordId"])) for r in table_rows(dest, "rp_DeleteLog"))
        assert logged == [("account", rid(4)), ("contact", rid(9))]
    finally:
        dest.close()

    # Rejects: the DES failure-log columns, and the unprocessable bodies verbatim.
    with (rejects / "failures.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == list(FAILURE_LOG_COLUMNS)
        (row,) = list(reader)
    assert (row["Entity"], row["RecordId"], row["ChangeType"], row["Version"]) == ("account", rid(20), "create", "1")
    assert "employees" in row["FailureReason"]
    assert row["NotificationTime"] == "2026-11-21T10:00:00Z"
    parked = [json.loads(line) for line in (rejects / "unprocessable.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [p["body"] for p in parked] == ["{not json", json.dumps({"schemaVersion": 2, "entity": "account"})]
    assert all(p["reason"] for p in parked)
    assert got["rejects_dir"] == str(rejects.resolve())

    # Replaying the same file again changes nothing: all stale, the misfits fail again.
    again = summary(replay_into(data, dsn, batch_size, rejects))
    assert (again["applied"], again["failed"], again["unprocessable"]) == (0, failing, bad)
    assert again["stale"] == len(valid)


def test_replay_into_a_postgres_schema(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text(Change("account", rid(1), "create", 1, {"name": "x"}).body() + "\n", encoding="utf-8")
    got = summary(des("replay", str(data), "--destination", pg_dsn, "--schema", "crm", cwd=tmp_path))
    assert got["applied"] == 1
    assert "rejects_dir" not in got
    assert not (tmp_path / "des-rejects").exists()  # nothing rejected, nothing written


def test_missing_input_file(tmp_path: Path, sqlite_dsn: str) -> None:
    proc = des("replay", str(tmp_path / "missing.jsonl"), "--destination", sqlite_dsn, cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert "missing.jsonl" in proc.stderr
    assert "does not exist" in proc.stderr
    assert proc.stdout == ""


@pytest.fixture
def one_line(tmp_path: Path) -> Path:
    data = tmp_path / "in.jsonl"
    data.write_text(Change("account", rid(1), "create", 1, {"name": "x"}).body() + "\n", encoding="utf-8")
    return data


def test_bad_dsn_scheme(tmp_path: Path, one_line: Path) -> None:
    proc = des("replay", str(one_line), "--destination", "mysql://u:hunter2@host/db", cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert "unsupported destination" in proc.stderr
    assert "hunter2" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_postgres(tmp_path: Path, one_line: Path) -> None:
    proc = des("replay", str(one_line), "--destination", "postgresql://u:hunter2@127.0.0.1:1/db", cwd=tmp_path)
    assert proc.returncode == EXIT_CONNECTION
    assert "cannot connect" in proc.stderr
    assert "hunter2" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_unopenable_sqlite_file(tmp_path: Path, one_line: Path) -> None:
    proc = des(
        "replay", str(one_line), "--destination", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", cwd=tmp_path
    )
    assert proc.returncode == EXIT_CONNECTION
    assert "cannot open SQLite database" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix", "bad_prefix"], "prefix"),
        (["--prefix", "x;DROP"], "prefix"),
        (["--schema", "crm"], "no schemas"),  # SQLite has none
        (["--batch-size", "0"], "batch-size"),
    ],
)
def test_usage_errors(tmp_path: Path, one_line: Path, sqlite_dsn: str, args: list[str], message: str) -> None:
    proc = des("replay", str(one_line), "--destination", sqlite_dsn, *args, cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_bad_schema_on_postgres(tmp_path: Path, one_line: Path, pg_dsn: str) -> None:
    proc = des("replay", str(one_line), "--destination", pg_dsn, "--schema", "public;drop", cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert "schema" in proc.stderr
