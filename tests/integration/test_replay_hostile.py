"""``des replay`` of a stream mixing valid records with hostile ones (issue 11): names that collide
with internal tables, ``sqlite_stat1``, 1,200 and 10,000 attributes, rows too big for a page.
The replay exits 0, the valid records are applied, every hostile one has one outcome with a reason,
and ``received = applied + stale + failed + unprocessable``. Real SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import pytest

from shared.destinations import open_destination
from shared.destinations.inspect import table_rows
from tests.integration.test_replay_cli import des, summary
from tests.support.model import Change

pytestmark = pytest.mark.integration


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def hostile_stream() -> tuple[list[str], dict[str, set[str]]]:
    """Lines, and per dialect the record ids expected to fail."""
    valid = [Change("account", rid(i), "create", 1, {"name": f"a{i}", "n": i}) for i in range(1, 6)]
    valid += [Change("contact", rid(i), "create", 1, {"fullname": f"c{i}"}) for i in range(6, 9)]
    valid.append(Change("account", rid(3), "delete", 2))
    collide = [
        Change("deletelog", rid(20), "create", 1, {"x": 1}),
        Change("optionsetmetadata", rid(21), "create", 1, {"x": 1}),
        Change("sqlite_stat1", rid(22), "create", 1, {"tbl": "t"}),
    ]
    wide_ints = Change("wideint", rid(30), "create", 1, {f"c{i}": i for i in range(1200)})  # > 8 KB of bigints
    wide_text = Change("widetext", rid(31), "create", 1, {f"t{i}": "v" for i in range(1200)})
    huge = Change("account", rid(32), "create", 1, {f"c{i}": i for i in range(10_000)})
    lines = [c.body() for c in [*valid[:4], *collide, wide_ints, valid[4], wide_text, huge, *valid[5:]]]
    failing = {
        "sqlite": {rid(20), rid(21), rid(22), rid(32)},
        "postgresql": {rid(30), rid(32)},  # 54000 row is too big; more columns than 1,600
    }
    return lines, failing


@pytest.mark.parametrize("batch_size", ["1", "5000"])
def test_replay_of_hostile_input_exits_0_with_the_valid_records_applied(
    tmp_path: Path, dsn: str, batch_size: str
) -> None:
    lines, failing = hostile_stream()
    data = tmp_path / "hostile.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects"
    proc = des(
        "replay", str(data), "--destination", dsn, "--batch-size", batch_size, "--rejects-dir", str(rejects),
        "--write-delete-log", "--workers", "1", cwd=tmp_path,
    )  # fmt: skip
    got = summary(proc)  # exit code 0
    assert "Traceback" not in proc.stderr
    dialect = "sqlite" if dsn.startswith("sqlite") else "postgresql"
    expected_failed = failing[dialect]
    assert got["received"] == len(lines)
    assert got["unprocessable"] == 0
    assert got["failed"] == len(expected_failed)
    assert got["received"] == got["applied"] + got["stale"] + got["failed"] + got["unprocessable"]  # type: ignore[operator]
    with next(rejects.rglob("*.csv")).open(newline="", encoding="utf-8") as fh:
        logged = {row["RecordId"]: row["FailureReason"] for row in csv.DictReader(fh)}
    assert set(logged) == expected_failed
    assert all(logged.values())
    dest = open_destination(dsn)
    try:
        accounts = {str(r["Id"]): r["name"] for r in table_rows(dest, "account")}
        assert accounts == {rid(i): f"a{i}" for i in (1, 2, 4, 5)}
        assert sorted(str(r["fullname"]) for r in table_rows(dest, "contact")) == ["c6", "c7", "c8"]
        assert [str(r["RecordId"]) for r in table_rows(dest, "DeleteLog")] == [rid(3)]
        assert len(list(table_rows(dest, "widetext"))) == 1
    finally:
        dest.close()
