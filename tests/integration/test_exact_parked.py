"""Money and decimals stay exact through every parked copy of a notification (issue 9): a value of
38 significant digits (more than a double holds) parked in an encrypted retry blob on a real Azurite
and re-applied by the blob retry handler into SQLite and PostgreSQL; written to ``des replay``'s
reject files and read back by the local re-sync. (The failure log downloaded and re-synced from the
parked failed notifications: tests/integration/test_api_blobs.py.)"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared.config import DestinationConfig
from shared.destinations import Layout, open_destination
from shared.destinations.checks import CheckReport
from shared.destinations.postgres.dialect import PostgresDestination
from shared.destinations.sqlite.check import check
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.destinations.sqlite.sqltext import column_type
from shared.engine.coltypes import Kind
from shared.engine.engine import SyncEngine
from shared.engine.ports import Destination
from shared.handlers import handle_notifications
from shared.profiles.local_ports import LocalFailures
from shared.retry.attempt import Status, process_retry_blob
from shared.retry.policy import RetryPolicy
from shared.root import single_destination_root
from shared.storage.account import Storage
from shared.storage.blobs import RETRY
from tests.support.metadata_scenarios import attr, metadata
from tests.support.metrics import ORG, RecordedMetrics, note, rid
from tests.support.postgres import fresh_database, switchable_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MONEY = Decimal("1234567890123456789012345678901234.5678")  # 38 significant digits: DECIMAL(38,4)
NEGATIVE = Decimal("-98765432109876543210987654.3210")  # 30


def money_metadata(precision: int = 4) -> str:
    doc = metadata(
        "account", 1, attr("accountid", "Uniqueidentifier"), attr("name", "String", maxLength=160),
        attr("revenue", "Money", precision=precision),
    )  # fmt: skip
    return json.dumps({**doc, "organizationId": ORG})


def money_body(i: int, version: int, value: Decimal) -> str:
    """A notification with ``revenue`` written as the JSON number it is (every digit)."""
    return json.dumps(note(i, version, "create", name=f"a{i}", revenue="<revenue>")).replace(
        '"<revenue>"', str(value)
    )


@contextmanager
def destination(dialect: str, tmp_path: Path) -> Iterator[tuple[Destination, str, Callable[[bool], Any], Any]]:
    """(destination, dsn, outage(on), read revenue by id) on a real database that can be made unavailable."""
    if dialect == "sqlite":
        db = tmp_path / "dest.db"
        dest = SqliteDestination(str(db), Layout(), busy_timeout=0.05)
        holder = sqlite3.connect(db, isolation_level=None)

        def sqlite_outage(on: bool) -> None:
            holder.execute("BEGIN EXCLUSIVE" if on else "ROLLBACK")  # another writer holds the database

        def sqlite_read() -> dict[str, Decimal]:
            with sqlite3.connect(db) as conn:
                rows = conn.execute('SELECT "Id", revenue, typeof(revenue) FROM account').fetchall()
            assert {t for _, _, t in rows} == {"text"}  # the exact text, no double on the way
            return {i: Decimal(v) for i, v, _ in rows}

        try:
            yield dest, f"sqlite:///{db}", sqlite_outage, sqlite_read
        finally:
            holder.close()
            dest.close()
        return
    with switchable_database("des_exact") as sw:
        pg = PostgresDestination(sw.dsn, Layout())

        def pg_read() -> dict[str, Decimal]:
            with psycopg.connect(sw.admin) as conn:
                rows = conn.execute('SELECT "Id"::text, revenue FROM public.account').fetchall()
            return dict(rows)

        try:
            yield pg, sw.dsn, (lambda on: sw.down() if on else sw.up()), pg_read
        finally:
            pg.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_parked_money_value_of_38_digits_is_reapplied_exactly_by_the_retry_handler(
    dialect: str, tmp_path: Path, storage: Storage
) -> None:
    with destination(dialect, tmp_path) as (dest, dsn, outage, read):
        app = single_destination_root(
            DestinationConfig(destination_dsn=dsn, rejects_dir=str(tmp_path / "rejects"), write_attempts=2),
            destination=dest, storage=storage, metrics=RecordedMetrics(),
            retry_policy=RetryPolicy(count=3, interval_seconds=0), profile_id="exact",
        )  # fmt: skip
        app.router.engine.backoff_seconds = 0.01
        assert handle_notifications([money_metadata()], app).final().applied == 1  # DECIMAL(38,4) column
        outage(True)
        try:
            parked = handle_notifications([money_body(1, 1, MONEY), money_body(2, 1, NEGATIVE)], app).final()
        finally:
            outage(False)
        assert (parked.received, parked.applied) == (0, 0)  # nothing final yet: parked in a retry blob
        [name] = list(storage.stores.names(RETRY))
        assert storage.stores.raw(RETRY, name)[0].find(str(MONEY).encode()) == -1  # encrypted at rest
        parked_docs = storage.retries.read(name).notifications
        assert [d["attributes"]["revenue"] for d in parked_docs] == [MONEY, NEGATIVE]
        outcome = process_retry_blob(name, app.retries)
        assert outcome.status is Status.RESOLVED
        assert outcome.result is not None
        assert outcome.result.applied == 2
        assert read() == {rid(1): MONEY, rid(2): NEGATIVE}
        assert list(storage.stores.names(RETRY)) == []
        app.router.close()


def test_des_replay_reject_files_keep_a_long_money_value_exactly(tmp_path: Path) -> None:
    """``des replay`` writes a failed record (here: five decimals where the metadata allows four) to
    ``failed-notifications.jsonl``; the local re-sync (LocalFailures, what ``des api`` reads) gets
    the exact value back, and it is applied exactly (PostgreSQL numeric)."""
    value = Decimal("123456789012345678901234567.12345")  # 32 significant digits, scale 5
    data = tmp_path / "in.jsonl"
    data.write_text(money_metadata(4) + "\n" + money_body(1, 1, value) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects"
    proc = subprocess.run(
        [sys.executable, "-m", "shared", "replay", str(data), "--destination", f"sqlite:///{tmp_path / 'd.db'}",
         "--rejects-dir", str(rejects), "--workers", "1"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["failed"] == 1
    line = (rejects / "failed-notifications.jsonl").read_text(encoding="utf-8")
    assert f'"revenue": {value}' in line  # a JSON number, every digit
    key = ("account", rid(1))
    [n] = LocalFailures(tmp_path).get("rejects", [key]).values()
    assert n.attributes is not None
    assert n.attributes["revenue"] == value
    with fresh_database("des_exact") as dsn:
        dest = open_destination(dsn, Layout())
        try:
            result = SyncEngine(dest).apply_notifications([n])  # the notification the re-sync re-applies
        finally:
            dest.close()
        assert result.applied == 1
        with psycopg.connect(dsn) as conn:
            [(got,)] = conn.execute("SELECT revenue FROM public.account").fetchall()
        assert got == value
        assert str(got) == str(value)


def test_the_sqlite_check_names_decimal_columns_that_round(tmp_path: Path) -> None:
    """Money columns an earlier version declared ``DECIMAL(38,4)`` (NUMERIC affinity) are never altered;
    the destination check names them (a notice, the check still passes); new ones are exact."""
    db = tmp_path / "dest.db"
    with sqlite3.connect(db) as conn:  # as an earlier version created it
        conn.execute('CREATE TABLE contact ("Id" TEXT PRIMARY KEY, creditlimit DECIMAL(38,4))')
    dest = SqliteDestination(str(db), Layout())
    try:
        result = SyncEngine(dest).apply_bodies([money_metadata(), money_body(1, 1, MONEY)])
    finally:
        dest.close()
    assert result.applied == 2
    report = CheckReport()
    check(f"sqlite:///{db}", Layout(), report, str)
    assert report.ok
    [notice] = [c for c in report.checks if c.name == "exact decimals"]
    assert notice.detail.endswith(": contact.creditlimit")  # account.revenue (DECIMAL BLOB(38,4)) is exact
    fresh = CheckReport()
    check(f"sqlite:///{tmp_path / 'new.db'}", Layout(), fresh, str)
    assert "exact decimals" not in [c.name for c in fresh.checks]


def test_a_decimal_column_inferred_without_metadata_keeps_every_digit_in_sqlite(tmp_path: Path) -> None:
    """Without metadata the column's type comes from the values: a 38-digit decimal makes a decimal
    column of no affinity (``DECIMAL BLOB``), not ``NUMERIC`` (which would keep about 15 digits);
    a ``NUMERIC`` column an earlier version made is still read as a decimal column."""
    db = tmp_path / "dest.db"
    dest = SqliteDestination(str(db), Layout())
    try:
        result = SyncEngine(dest).apply_bodies([money_body(1, 1, MONEY), money_body(2, 1, NEGATIVE)])
        assert result.applied == 2
        with sqlite3.connect(db) as conn:
            got = conn.execute("SELECT revenue, typeof(revenue) FROM account ORDER BY name").fetchall()
            [(declared,)] = conn.execute("SELECT type FROM pragma_table_info('account') WHERE name = 'revenue'")
        assert got == [(str(MONEY), "text"), (str(NEGATIVE), "text")]
        assert declared == "DECIMAL BLOB"
    finally:
        dest.close()
    assert column_type("NUMERIC").kind is Kind.DECIMAL  # as an earlier version declared it
    assert column_type("DECIMAL BLOB").kind is Kind.DECIMAL
