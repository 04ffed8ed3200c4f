"""``des replay`` into SQLite commits several batches together (commit groups, issue 14): the same
outcomes, failure log and final tables as one commit per batch, also when a write fails in the
middle of a group. Real SQLite; the faults are real SQLite errors, raised by TEMP triggers created
on the replay's own connection between two batches (a TEMP trigger lives as long as that connection:
the engine's reconnect after a transient error removes it, as a passing fault would be):

- records refused (a trigger of the table, there from the start: ``RAISE(ABORT)``, a constraint
  error of that row alone, for the records named so in the middle of the stream);
- an entity-level error (the trigger writes to a table that does not exist: "no such table");
- the transaction lost (``RAISE(ROLLBACK)`` after rows of the write took effect: SQLite rolls the
  whole transaction back; the engine retries on a new connection). Inside a group, that rolls the
  group back and its batches are applied again one transaction each;
- an unreadable input line and a new column mid-group (DDL commits the open group first), and entity
  metadata mid-group (such a batch commits on its own, even when its records' transaction is lost).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.destinations import Layout, open_destination
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.engine import coltypes
from shared.engine.engine import SyncEngine
from shared.engine.failure_schema import FAILURE_REASON, RECORD_ID, VERSION
from shared.rejects import RejectFiles
from shared.replay import ReplayReport, batches, replay
from tests.support.model import Change

pytestmark = pytest.mark.integration

BATCH_BYTES = 2_000  # ~8 lines a batch
COMMIT_BYTES = 9_000  # ~4-5 batches a group


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def stream() -> list[str]:
    """Creates, updates (some duplicated, some out of order), deletes and re-creates of two
    entities; from line 150 on, accounts carry a new column; one line is not JSON."""
    lines: list[str] = []
    for step in range(300):
        i = step % 40
        version = 10 + step
        if step % 23 == 0:
            change = Change("account", rid(i), "delete", version)
        elif step % 3 == 0:
            change = Change("contact", rid(100 + i), "update", version, {"fullname": f"c{step}", "n": step})
        else:
            name = f"refuse{step}" if 100 <= step < 140 and step % 4 == 0 else f"a{step}"
            attrs: dict[str, object] = {"name": name, "n": step}
            if step >= 150:
                attrs["extra"] = step * 1.5
            change = Change("account", rid(i), "update", version, attrs)  # type: ignore[arg-type]
        lines.append(change.body())
        if step % 11 == 0:
            lines.append(change.body())  # delivered twice
        if step % 17 == 0 and step:
            lines.append(Change("account", rid(i), "update", version - 5, {"name": "older"}).body())
        if step == 77:
            lines.append("{not json")
        if step == 120:
            lines.append(json.dumps(CONTACT_METADATA))
    return lines


CONTACT_METADATA = {
    "schemaVersion": 1, "organizationId": "00000000-0000-4000-8000-000000000001", "entity": "contact",
    "changeType": "metadata", "version": 1, "changedOn": "2026-11-21T10:00:00Z",
    "metadata": {"primaryIdAttribute": "contactid", "isIntersect": False, "attributes": [
        {"logicalName": "fullname", "type": "String", "maxLength": 200},
        {"logicalName": "n", "type": "Integer"},
    ]},
}  # fmt: skip


def metadata_batch() -> int:
    """The index of the batch holding the metadata notification."""
    data = "\n".join(stream()).encode()
    every = batches(io.BytesIO(data), 5000, BATCH_BYTES)
    found = [i for i, b in enumerate(every) if any(b'"metadata"' in x for x in b.lines)]
    assert len(found) == 1
    return found[0]


Fault = Callable[[SqliteDestination], None]


def refuse_records(dest: SqliteDestination) -> None:
    """Before the replay: the table, and its trigger refusing the records named refuse..."""
    dest.ensure_table("account", {"name": coltypes.TEXT, "n": coltypes.INTEGER})
    dest.conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON account WHEN NEW.name LIKE 'refuse%' "
        "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
    )


def refuse_table(dest: SqliteDestination) -> None:
    dest.conn.execute(
        "CREATE TEMP TRIGGER refuse_table BEFORE INSERT ON main.contact BEGIN INSERT INTO nowhere VALUES (1); END"
    )


def drop(name: str) -> Fault:
    def fault(dest: SqliteDestination) -> None:
        dest.conn.execute(f"DROP TRIGGER IF EXISTS temp.{name}")

    return fault


def lose_transaction(dest: SqliteDestination) -> None:
    # Fires on an account row that is not the first one of its write (rows of the write took effect).
    dest.conn.execute(
        "CREATE TEMP TRIGGER lose BEFORE INSERT ON main.account WHEN NEW.n % 10 = 5 "
        "BEGIN SELECT RAISE(ROLLBACK, 'rolled back by a test trigger'); END"
    )


def run(tmp: Path, commit_bytes: int, faults: dict[int, Fault]) -> tuple[ReplayReport, Path]:
    """Replay ``stream()`` with the given faults installed after the batches they are keyed by."""
    data = tmp / "in.jsonl"
    if not data.exists():
        data.write_text("\n".join(stream()) + "\n", encoding="utf-8")
    work = tmp / f"commit-{commit_bytes}"
    work.mkdir()
    dest = open_destination(f"sqlite:///{work / 'db.sqlite'}", Layout(write_delete_log=True))
    assert isinstance(dest, SqliteDestination)
    if 0 in faults:
        faults[0](dest)
    done = 0

    def progress(_pos: int) -> None:
        nonlocal done
        done += 1
        fault = faults.get(done)
        if fault is not None:
            fault(dest)

    rejects = RejectFiles(work / "rejects")
    try:
        report = replay(
            data, SyncEngine(dest, backoff_seconds=0), rejects=rejects, progress=progress,
            batch_bytes=BATCH_BYTES, commit_bytes=commit_bytes,
        )  # fmt: skip
    finally:
        rejects.close()
        dest.close()
    return report, work


def state(work: Path) -> dict[str, list[tuple[object, ...]]]:
    """The tables (sink timestamps left out), the failure log (id, reason) and unprocessable lines."""
    import sqlite3

    conn = sqlite3.connect(work / "db.sqlite")
    try:
        out: dict[str, list[tuple[object, ...]]] = {}
        for table in ("account", "contact"):
            cols = sorted(r[1] for r in conn.execute(f"PRAGMA table_info({table})") if not r[1].startswith("Sink"))
            quoted = ", ".join(f'"{c}"' for c in cols)
            out[table] = [tuple(cols), *conn.execute(f'SELECT {quoted} FROM {table} ORDER BY "Id"')]
        out["tombstones"] = conn.execute(
            "SELECT EntityName, RecordId, VersionNumber FROM _des_tombstones ORDER BY 1, 2"
        ).fetchall() if _has(conn, "_des_tombstones") else []
    finally:
        conn.close()
    failures = work / "rejects" / "failures.csv"
    if failures.exists():
        with failures.open(encoding="utf-8") as fh:
            out["failures"] = sorted((r[RECORD_ID], r[VERSION], r[FAILURE_REASON]) for r in csv.DictReader(fh))
    unprocessable = work / "rejects" / "unprocessable.jsonl"
    out["unprocessable"] = [(unprocessable.read_text(encoding="utf-8"),)] if unprocessable.exists() else []
    return out


def _has(conn: object, table: str) -> bool:
    import sqlite3

    assert isinstance(conn, sqlite3.Connection)
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None


def conserves(report: ReplayReport) -> None:
    c = report.result.counts()
    assert c["received"] == c["applied"] + c["stale"] + c["failed"] + c["unprocessable"]


def lose_any(dest: SqliteDestination) -> None:
    dest.conn.execute(
        "CREATE TEMP TRIGGER lose_any BEFORE INSERT ON main.contact "
        "BEGIN SELECT RAISE(ROLLBACK, 'rolled back by a test trigger'); END"
    )


SCENARIOS: dict[str, dict[int, Fault]] = {
    "no fault": {},
    "records refused mid-group": {0: refuse_records},
    "entity refused mid-group": {3: refuse_table, 5: drop("refuse_table")},
    "transaction lost mid-group": {6: lose_transaction},
    "transaction lost with metadata": {metadata_batch(): lose_any},
    "everything": {0: refuse_records, 3: refuse_table, 4: drop("refuse_table"), 11: lose_transaction},
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_commit_groups_give_the_outcomes_and_tables_of_one_commit_per_batch(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    faults = SCENARIOS[name]
    per_batch, per_batch_dir = run(tmp_path, 0, faults)
    with caplog.at_level(logging.WARNING, logger="shared.replay"):
        grouped, grouped_dir = run(tmp_path, COMMIT_BYTES, faults)
    conserves(per_batch)
    conserves(grouped)
    assert grouped.result.counts() == per_batch.result.counts()
    assert {e: (c.received, c.applied, c.stale, c.failed) for e, c in grouped.result.per_entity.items()} == {
        e: (c.received, c.applied, c.stale, c.failed) for e, c in per_batch.result.per_entity.items()
    }
    assert state(grouped_dir) == state(per_batch_dir)
    c = grouped.result.counts()
    assert c["unprocessable"] == 1
    if name == "no fault":
        assert c["failed"] == 0
    else:
        assert c["failed"] > 0 or "lost" in name
    redone = [r for r in caplog.records if "commit group" in r.getMessage()]
    assert bool(redone) == (name in ("transaction lost mid-group", "everything"))
    if "lost" in name:  # the fault did strike the grouped run
        assert any("rolled back by a test trigger" in r.getMessage() for r in caplog.records)
    if "metadata" in name:
        assert grouped.result.per_entity["contact"].applied > 0


def test_the_stream_spans_several_groups_of_several_batches(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(stream()) + "\n", encoding="utf-8")
    with data.open("rb") as fh:
        sizes = [b.size for b in batches(fh, 5000, BATCH_BYTES)]
    assert len(sizes) >= 20
    assert sum(sizes) / COMMIT_BYTES >= 4  # groups
    assert COMMIT_BYTES / max(sizes) >= 4  # batches per group


def test_batches_start_again_at_any_batch_offset(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(stream()) + "\n\n\n", encoding="utf-8")
    with data.open("rb") as fh:
        first = list(batches(fh, 7, BATCH_BYTES))
    for k in (1, 5, len(first) - 1):
        with data.open("rb") as fh:
            fh.seek(first[k].start)
            again = list(batches(fh, 7, BATCH_BYTES))
        assert [(b.start, b.lines, b.count) for b in again] == [(b.start, b.lines, b.count) for b in first[k:]]


def test_an_error_that_persists_leaves_the_committed_groups_and_a_rerun_converges(tmp_path: Path) -> None:
    """A write that keeps failing inside a group: the batches before it commit (as without groups),
    the replay raises, and replaying the file again from the start gives the clean run's tables."""
    from shared.engine.ports import TransientDestinationError

    def always_lose(dest: SqliteDestination) -> None:
        # A persistent fault: a trigger of the table (there from the start), not a TEMP one.
        dest.ensure_table("account", {"name": coltypes.TEXT, "n": coltypes.INTEGER})
        dest.conn.execute(
            "CREATE TRIGGER lose_always BEFORE INSERT ON account WHEN NEW.n = 106 "
            "BEGIN SELECT RAISE(ROLLBACK, 'rolled back by a test trigger'); END"
        )

    with pytest.raises(TransientDestinationError):
        run(tmp_path, COMMIT_BYTES, {0: always_lose})
    work = tmp_path / f"commit-{COMMIT_BYTES}"
    db = work / "db.sqlite"
    import sqlite3

    conn = sqlite3.connect(db)
    kept = conn.execute("SELECT COUNT(*) FROM account").fetchone()[0]
    conn.execute("DROP TRIGGER lose_always")
    conn.close()
    assert kept > 0  # the groups before the failing batch committed
    dest = open_destination(f"sqlite:///{db}", Layout(write_delete_log=True))
    try:
        replay(work.parent / "in.jsonl", SyncEngine(dest), batch_bytes=BATCH_BYTES, commit_bytes=COMMIT_BYTES)
    finally:
        dest.close()
    _, clean_dir = run(tmp_path, 0, {})
    got, want = state(work), state(clean_dir)
    assert got["account"] == want["account"]
    assert got["contact"] == want["contact"]
    assert got["tombstones"] == want["tombstones"]


def test_the_import_leaves_the_wal_truncated_and_other_connections_settings_alone(tmp_path: Path) -> None:
    """Replay checkpoints its WAL every 20,000 pages; at the end it checkpoints and truncates it,
    so a database that another connection keeps open is not left with the import's WAL."""
    import sqlite3

    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(stream()) + "\n", encoding="utf-8")
    db = tmp_path / "db.sqlite"
    dest = open_destination(f"sqlite:///{db}", Layout())
    other = sqlite3.connect(db)  # an admin reader: the WAL stays when replay's connection closes
    other.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    try:
        assert isinstance(dest, SqliteDestination)
        replay(data, SyncEngine(dest), batch_bytes=BATCH_BYTES, commit_bytes=COMMIT_BYTES)
        assert dest.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # back to the default
        dest.close()
        assert Path(f"{db}-wal").stat().st_size == 0
        assert other.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert other.execute("SELECT COUNT(*) FROM account").fetchone()[0] > 0
    finally:
        other.close()


def test_page_cache_of_an_import_of_its_groups_and_after_both(tmp_path: Path) -> None:
    """An import's page cache (replay workers: ``start_import(cache_kib=...)``) holds until
    ``finish_import``; a commit group's own cache holds while it holds, then the import's again; a
    reconnect keeps what holds; afterwards SQLite's default."""
    from shared.destinations.sqlite.sqltext import SqliteSql

    dest = open_destination(f"sqlite:///{tmp_path / 'db.sqlite'}", Layout())
    assert isinstance(dest, SqliteDestination)

    def cache() -> int:
        return int(dest.conn.execute("PRAGMA cache_size").fetchone()[0])

    try:
        assert cache() == SqliteSql.DEFAULT_CACHE_SIZE
        dest.start_import(20_000, cache_kib=8192)
        assert cache() == -8192
        dest.reset()
        assert cache() == -8192
        dest.hold_commits(cache_kib=12_288)
        assert cache() == -12_288
        dest.reset()
        assert cache() == -12_288
        dest.release_commits()
        assert cache() == -8192
        dest.finish_import()
        assert cache() == SqliteSql.DEFAULT_CACHE_SIZE
        dest.hold_commits(cache_kib=4096)  # a group without an import: back to the default after
        dest.release_commits()
        assert cache() == SqliteSql.DEFAULT_CACHE_SIZE
    finally:
        dest.close()


def test_des_replay_commit_bytes_option(tmp_path: Path) -> None:
    """``des replay --commit-bytes``: 0 commits every batch, the default groups; the same counts and
    tables either way; a negative value is a usage error (exit 2)."""
    from tests.integration.test_replay_cli import des, summary

    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(stream()) + "\n", encoding="utf-8")
    got = {}
    for commit in ("0", str(COMMIT_BYTES)):
        work = tmp_path / f"commit-{commit}"
        work.mkdir()
        proc = des(
            "replay", str(data), "--destination", f"sqlite:///{work / 'db.sqlite'}", "--workers", "1",
            "--batch-bytes", str(BATCH_BYTES), "--commit-bytes", commit, "--rejects-dir", str(work / "rejects"),
            cwd=tmp_path,
        )  # fmt: skip
        counts = summary(proc)
        got[commit] = ({k: counts[k] for k in ("received", "applied", "stale", "failed", "unprocessable")}, state(work))
    assert got["0"] == got[str(COMMIT_BYTES)]
    assert got["0"][0]["unprocessable"] == 1
    bad = des("replay", str(data), "--destination", "sqlite:///x.db", "--commit-bytes", "-1", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--commit-bytes" in bad.stderr
