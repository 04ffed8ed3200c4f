"""What the per-minute metrics history costs a Service Bus batch: ``python -m shared.tools.bench_history``.

Opens the admin store (a SQLite file in a temporary folder, or ``--store postgresql://...``) with
``--profiles`` profiles, then alternates, ``--rounds`` times each, between

* the baseline: the counters' upsert alone (the one statement ``record_batch`` sent before the
  history existed, run in one transaction through the same dialect), and
* ``record_batch``: the counters and the history, in one transaction,

for a batch touching every profile and ``--entities`` entities, and prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.engine.outcomes import BatchResult
from shared.store import MetricsEntry, SqlStore, StoredProfile, open_store
from shared.store.sql import METRIC_COLUMNS

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def _entries(pids: list[str], entities: int) -> list[MetricsEntry]:
    out = []
    for pid in pids:
        r = BatchResult(received=entities * 5, applied=entities * 5)
        for e in range(entities):
            c = r.entity(f"entity{e}")
            c.received = c.applied = 5
        out.append(MetricsEntry.from_result(pid, r))
    return out


def _counters_only(store: SqlStore, entries: list[MetricsEntry]) -> None:
    """The baseline: the counters' multi-row upsert alone, as record_batch sent it before the history."""
    rows: list[tuple[Any, ...]] = []
    now = store.d.ts_in(store.clock())
    for entry in entries:
        for entity, d in sorted(entry.entities.items()):
            status = d.status.value if d.status else None
            rows.append((entry.profile_id, entity, d.received, d.applied, d.failed, d.stale, d.unprocessable,
                         d.skipped, d.pending_retry, now, status, store.d.ts_in(d.last_changed_on)))  # fmt: skip
    per = max(1, store.d.max_params // len(METRIC_COLUMNS))
    with store.d.transaction() as cur:
        for i in range(0, len(rows), per):
            chunk = rows[i : i + per]
            cur.execute(store.d.metrics_upsert(len(chunk)), [v for row in chunk for v in row])


def _timed_ms(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def run(store_dsn: str, profiles: int, entities: int, rounds: int) -> dict[str, float]:
    store = open_store(store_dsn)
    try:
        pids = [
            store.create_profile(StoredProfile(str(uuid.uuid4()), f"bench {i}", ORG, "active", {})).id
            for i in range(profiles)
        ]
        base: list[float] = []
        ours: list[float] = []
        for _ in range(rounds):  # alternated: both see the same machine load
            base.append(_timed_ms(functools.partial(_counters_only, store, _entries(pids, entities))))
            ours.append(_timed_ms(functools.partial(store.record_batch, _entries(pids, entities))))
        b, o = statistics.median(base), statistics.median(ours)
        return {"baseline_ms": b, "record_batch_ms": o, "ratio": o / b}
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.tools.bench_history", description=__doc__)
    parser.add_argument("--store", default=None, help="admin store DSN (default: a temporary SQLite file)")
    parser.add_argument("--profiles", type=int, default=3)
    parser.add_argument("--entities", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        dsn = args.store or f"sqlite:///{Path(tmp) / 'admin.db'}"
        r = run(dsn, args.profiles, args.entities, args.rounds)
    kind = dsn.split(":", 1)[0]
    print(
        f"{kind}: a batch of {args.profiles} profiles x {args.entities} entities, median of {args.rounds}: "
        f"counters only {r['baseline_ms']:.2f} ms, counters + history (record_batch) {r['record_batch_ms']:.2f} ms, "
        f"ratio {r['ratio']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
