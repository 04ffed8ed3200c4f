"""The demos end to end (the DES story from a Dataverse environment; the Service Bus stream), and
simulated CRM streams converging on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from shared.destinations import Destination, Layout
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.tools.crm_simulator import CrmSimulator, Truth, check_convergence
from shared.tools.demo import run_stream_demo
from shared.tools.demo_dataverse import run_demo
from tests.conftest import DestinationFactory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = Layout(prefix="sim", write_delete_log=True)


def sqlite_tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ demo
def test_des_story_demo_syncs_an_environment_through_the_admin_api(tmp_path: Path) -> None:
    db = tmp_path / "des-demo.db"
    out = io.StringIO()
    assert run_demo(db, seed=3, records=60, console=Console(file=out, width=160)) == 0
    text = out.getvalue()
    for fact in ("POST /profiles/validate -> valid: True", "source reachable", "account: organization-level read",
                 "POST /profiles -> 201", "activate -> 200: active", "initial sync completed in",
                 "PATCH accounts(", "DELETE opportunities(", "random changes", "the destination matches Dataverse",
                 "Per table (GET /profiles/", "Completed",
                 "Converged: the destination matches the environment"):  # fmt: skip
        assert fact in text, fact
    assert {"account", "contact", "opportunity", "des_account_contact", "DeleteLog"} <= sqlite_tables(db)
    assert count(db, "account") >= 60
    assert count(db, "DeleteLog") > 0  # the deletes made in the environment reached the destination
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM account WHERE name = 'Renamed during the demo'").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM contact WHERE lastname = 'Lovelace'").fetchone()[0] == 1
    finally:
        conn.close()


def test_des_story_demo_usage_and_connection_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(tmp_path / "x.db", seed=1, records=0) == 2
    assert "--records" in capsys.readouterr().err
    assert run_demo(tmp_path / "no-such-dir" / "x.db", seed=1, records=5) == 3
    assert "cannot open SQLite database" in capsys.readouterr().err


def test_stream_demo_converges_and_keeps_its_rejects(tmp_path: Path) -> None:
    db = tmp_path / "des-demo.db"
    out = io.StringIO()
    assert run_stream_demo(db, seed=3, records=150, console=Console(file=out, width=140)) == 0
    text = out.getvalue()
    assert "Converged and conserved" in text
    assert "Conservation law" in text
    assert {"account", "contact", "opportunity", "DeleteLog", "_des_tombstones"} <= sqlite_tables(db)
    assert count(db, "account") > 100
    assert count(db, "DeleteLog") > 0
    rejects = tmp_path / "des-demo-rejects"
    failures = (rejects / "failures.csv").read_text(encoding="utf-8").splitlines()
    assert failures[0].startswith("Entity,RecordId")
    assert len(failures) >= 3  # header + the two type misfits
    assert "does not fit column of type" in failures[1]
    unprocessable = (rejects / "unprocessable.jsonl").read_text(encoding="utf-8")
    for reason in ("malformed JSON", "unsupported schemaVersion 2", "delete notifications carry no attributes"):
        assert reason in unprocessable

    # A second run replaces the database (and the rejects) rather than adding to them.
    rows = count(db, "account")
    assert run_stream_demo(db, seed=3, records=150, console=Console(file=io.StringIO())) == 0
    assert count(db, "account") == rows
    again = (rejects / "failures.csv").read_text(encoding="utf-8").splitlines()
    assert len(again) == len(failures)


def test_demo_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "shared", "demo", "--records", "40", "--seed", "5"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Converged: the destination matches the environment" in done.stdout
    assert (tmp_path / "des-demo.db").is_file()


def test_stream_demo_rejects_a_useless_record_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stream_demo(tmp_path / "x.db", seed=1, records=0) == 2
    assert "--records" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def test_stream_demo_reports_a_database_it_cannot_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stream_demo(tmp_path / "no-such-dir" / "x.db", seed=1, records=5) == 3
    assert "cannot open SQLite database" in capsys.readouterr().err


# ------------------------------------------------------------------------------ convergence
def sync(dest: Destination, seed: int = 11) -> tuple[Truth, BatchResult, set[tuple[str, str]]]:
    """A simulated organization through the engine: initial sync, changes, at-least-once delivery,
    batch envelopes, and every fifth Service Bus batch redelivered whole.

    Returns the truth, the outcome counts, and the keys that were deleted and then re-created.
    """
    sim = CrmSimulator(seed, accounts=120, contacts=120, opportunities=120)
    stream = [*sim.initial_sync(), *sim.changes(900)]
    deleted: set[tuple[str, str]] = set()
    recreated: set[tuple[str, str]] = set()
    for n in stream:
        key = (n["entity"], n["recordId"].lower())
        if n["changeType"] == "delete":
            deleted.add(key)
        elif n["changeType"] == "create" and key in deleted:
            recreated.add(key)
    bodies = list(sim.deliver(stream, duplicate_rate=0.1, reorder_window=30, envelope_max=8))
    engine = SyncEngine(dest)
    total = BatchResult()
    for i, start in enumerate(range(0, len(bodies), 40)):
        batch = bodies[start : start + 40]
        for _ in range(2 if i % 5 == 4 else 1):
            result = engine.apply_bodies(batch)
            assert result.conserved
            total.merge(result)
    return sim.truth(), total, recreated


def test_simulated_stream_converges(open_dest: DestinationFactory) -> None:
    dest = open_dest(LAYOUT)
    truth, total, recreated = sync(dest)
    assert total.failed == 0, [f.reason for f in total.failures[:5]]
    assert total.unprocessable == 0
    assert total.stale > 0
    assert truth.deleted  # the tombstones must keep these out, whatever arrives late
    assert any(rid in truth[entity] for entity, rid in recreated)  # and these must come back
    report = check_convergence(dest, truth, LAYOUT)
    assert report.ok, report.problems(10)
    for entity, r in report.entities.items():
        assert r.expected == r.found == len(truth[entity]) > 100


def test_convergence_check_reports_tables_that_do_not_exist(open_dest: DestinationFactory) -> None:
    sim = CrmSimulator(2, accounts=5, contacts=0, opportunities=3)
    list(sim.initial_sync())
    report = check_convergence(open_dest(LAYOUT), sim.truth(), LAYOUT)
    assert not report.ok
    assert report.entities["account"].error == "table 'sim_account' does not exist"
    assert len(report.entities["account"].missing) == 5
    assert report.entities["contact"].ok  # nothing expected, nothing there
    assert not report.entities["opportunity"].ok


def raw(dsn: str, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
    """Run SQL behind the engine's back (bound parameters; ``?`` placeholders)."""
    if dsn.startswith("sqlite:///"):
        conn = sqlite3.connect(dsn[len("sqlite:///") :])
        try:
            with conn:
                for sql, params in statements:
                    assert conn.execute(sql, params).rowcount == 1
        finally:
            conn.close()
        return
    with psycopg.connect(dsn) as pg:
        for sql, params in statements:
            assert pg.execute(sql.replace("?", "%s"), params).rowcount == 1  # type: ignore[arg-type]


def test_convergence_check_detects_tampering(dsn: str, open_dest: DestinationFactory) -> None:
    dest = open_dest(LAYOUT)
    truth, _, _ = sync(dest, seed=12)
    assert check_convergence(dest, truth, LAYOUT).ok
    account = sorted(truth["account"])[0]
    opportunity = sorted(truth["opportunity"])[0]
    contact = sorted(truth["contact"])[0]
    flipped = sorted(truth["contact"])[1]
    dead_entity, dead_id = sorted(truth.deleted)[0]
    flag = truth["contact"][flipped].attributes["donotemail"]
    raw(
        dsn,
        [
            ('UPDATE "sim_account" SET "name" = ? WHERE "Id" = ?', ["Tampered GmbH", account]),
            ('UPDATE "sim_contact" SET "donotemail" = ? WHERE "Id" = ?', [not flag, flipped]),
            ('UPDATE "sim_opportunity" SET "versionnumber" = "versionnumber" - 1 WHERE "Id" = ?', [opportunity]),
            ('DELETE FROM "sim_contact" WHERE "Id" = ?', [contact]),
            (
                f'INSERT INTO "sim_{dead_entity}" ("Id", "SinkCreatedOn", "SinkModifiedOn", "versionnumber") '
                "VALUES (?, ?, ?, ?)",
                [dead_id, "2026-01-01 00:00:00", "2026-01-01 00:00:00", 1],
            ),
        ],
    )
    report = check_convergence(dest, truth, LAYOUT)
    assert not report.ok
    acc, con, opp = report.entities["account"], report.entities["contact"], report.entities["opportunity"]
    assert [(m.record_id, m.column, m.actual) for m in acc.mismatched] == [(account, "name", "Tampered GmbH")]
    assert [(m.record_id, m.column) for m in con.mismatched] == [(flipped, "donotemail")]
    assert con.missing == [contact]
    assert [(rid, want) for rid, want, _ in opp.wrong_version] == [
        (opportunity, truth["opportunity"][opportunity].version)
    ]
    dead = report.entities[dead_entity]
    assert dead.unexpected == [dead_id]
    assert dead.resurrected == [dead_id]
    problems = report.problems()
    assert any("resurrected" in p for p in problems)
    assert any("Tampered GmbH" in p for p in problems)
