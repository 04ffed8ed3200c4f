"""The Service Bus handler applies a batch in chunks cut by bytes (issue 12): a large delivery (many
messages, and one message carrying thousands of notifications) is applied in several chunks of at
most ``DES_BATCH_BYTES``, with the same outcomes and the same destination as in one piece, and the
memory it allocates is bounded by the chunk, not by the delivery."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import tracemalloc
from pathlib import Path

import pytest

from shared import config as S
from shared.handlers import handle_notifications
from shared.root import build_root
from shared.source.dataverse.push import Message

pytestmark = pytest.mark.integration

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
CHUNK = 65_536


def note(i: int, version: int, change: str = "update", filler: int = 200) -> dict[str, object]:
    doc: dict[str, object] = {
        "schemaVersion": 1, "organizationId": ORG, "entity": "account",
        "recordId": f"00000000-0000-0000-0000-{i:012d}", "changeType": change, "version": version,
        "changedOn": "2026-11-21T10:00:00Z",
    }  # fmt: skip
    if change != "delete":
        doc["attributes"] = {"name": f"{'x' * filler}{version}", "employees": version}
    return doc


def delivery() -> list[Message]:
    """About 1.5 MB: single messages and envelopes, duplicates, older versions after newer ones,
    deletes, a record failing at the destination, unprocessable bodies; one 700 KB envelope."""
    rng = random.Random(4711)
    messages: list[Message] = []
    for _ in range(1500):
        i, v = rng.randrange(400), rng.randrange(1, 50)
        change = "delete" if rng.random() < 0.1 else "update"
        messages.append((json.dumps(note(i, v, change)).encode(), {}))
    messages.insert(700, json.dumps([note(i, 60 + i % 5) for i in range(2500)]).encode())  # one big envelope
    bad = note(9999, 1)
    bad["attributes"] = {"employees": "many"}  # refused by the integer column: failed, logged
    messages[100:100] = [b"{broken", json.dumps(bad).encode(), json.dumps({**note(1, 1), "version": 1.5}).encode()]
    return messages


Outcome = tuple[dict[str, object], list[tuple[object, ...]], int]


def apply(tmp_path: Path, name: str, batch_bytes: int, messages: list[Message]) -> Outcome:
    env = {S.DESTINATION_DSN: f"sqlite:///{tmp_path / name}.db", S.REJECTS_DIR: str(tmp_path / f"{name}-rejects"),
           S.ADMIN_STORE: f"sqlite:///{tmp_path / name}-admin.db", S.BATCH_BYTES: str(batch_bytes)}  # fmt: skip
    root = build_root(S.AppConfig.from_env(env))
    try:
        handle_notifications([(json.dumps(note(9999, 0)).encode(), {})], root)  # the table gets its integer column
        tracemalloc.start()
        try:
            out = handle_notifications(messages, root)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        root.close()
    with sqlite3.connect(tmp_path / f"{name}.db") as db:
        rows = db.execute("SELECT id, versionnumber, name, employees FROM account ORDER BY id").fetchall()
    result = out.final()
    counts = result.counts()
    assert result.conserved
    return {**counts, "failures": sorted(f.record_id for f in result.failures),
            "reasons": sorted(u.reason for u in result.unprocessables)}, rows, peak


def test_a_large_delivery_is_applied_in_chunks_with_the_same_outcomes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    messages = delivery()
    total = sum(len(m[0] if isinstance(m, tuple) else m) for m in messages)
    assert total > 20 * CHUNK
    caplog.set_level(logging.INFO, logger="shared.routing")
    whole, whole_rows, whole_peak = apply(tmp_path, "whole", 64 * 2**20, messages)
    applied_whole = [r for r in caplog.records if r.getMessage().startswith("batch of ")]
    caplog.clear()
    cut, cut_rows, cut_peak = apply(tmp_path, "cut", CHUNK, messages)
    applied_cut = [r for r in caplog.records if r.getMessage().startswith("batch of ")]

    assert len(applied_whole) == 2  # the column-setting message, then the delivery in one piece
    assert len(applied_cut) - 1 >= total // CHUNK  # the delivery in chunks of at most 64 KiB
    # The same outcomes: received, failed records, unprocessable reasons, and the same number taking
    # effect or not; only the split between applied and stale moves (a version superseded inside
    # its chunk is stale; in an earlier chunk it was applied, then overwritten, as on a redelivery).
    done = {k: v for k, v in cut.items() if k not in ("applied", "stale")}
    assert done == {k: v for k, v in whole.items() if k not in ("applied", "stale")}
    assert cut["applied"] + cut["stale"] == whole["applied"] + whole["stale"]  # type: ignore[operator]
    assert cut["received"] == 1500 + 2500 + 3
    assert cut["failed"] == 1
    assert cut["unprocessable"] == 2
    assert cut["applied"]
    assert cut["stale"]
    assert cut_rows == whole_rows  # the same destination (its tombstones are bookkeeping: a delete
    # superseded inside its chunk leaves none; in an earlier chunk it left one, below the new version)
    # Memory allocated while applying: bounded by the chunk (parsed notifications, rows, SQL), not
    # by the 1.6 MB delivery, which in one piece takes several times its size.
    assert cut_peak < 40 * CHUNK, cut_peak
    assert cut_peak * 2 < whole_peak, (cut_peak, whole_peak)
