"""Benchmark of the Dataverse source against the simulator (a command, not a timed test).

``python -m shared.tools.bench_dataverse [--records N] [--page-size N] [--postgres DSN] [--changes K]
[--poll-interval S]``

1. **Initial sync records/s**, end to end: the simulator (over HTTP on loopback) -> ``SourceRunner``
   (metadata, pages, mapping, cursor advances in a SQLite admin store, reconcile) -> the engine ->
   SQLite (and PostgreSQL with ``--postgres``). Baseline in the same run: the same pages fetched with
   plain httpx (same headers, nextLink to deltaLink) and the rows written by hand (one TEXT column per
   field, ``executemany`` INSERT, one transaction per page). The ratio is ours / baseline.
2. **Change-to-row latency**: ``--changes`` updates made at random moments while a poller runs a
   delta pass every ``--poll-interval`` seconds; the latency of a change is the time from the update
   to the moment the pass that applied it committed (median, p99).

Prints one JSON object per measurement and a last line with all of them.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shared.destinations import Layout, open_destination
from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from shared.source.dataverse.client import LOOKUP_ANNOTATIONS, DataverseClient, StaticToken
from shared.source.dataverse.cursors import CursorStore
from shared.source.dataverse.mapping import entity_metadata, loads
from shared.source.dataverse.runner import SourceRunner
from shared.source.dataverse.settings import DataverseSettings
from shared.source.dataverse.sink import EngineSink
from shared.store import open_store
from shared.tools.dataverse_sim import DataverseSimulator, RunningSimulator, run_simulator

ENTITIES = ("account", "contact")
PROFILE = "0b3c0a52-9c1b-4a7e-8d52-6e7a51c0d0b1"


def _ours(running: RunningSimulator, dsn: str, work: Path, page_size: int, run: int) -> tuple[int, float]:
    settings = DataverseSettings(page_size=page_size, token=running.token)
    store = open_store(f"sqlite:///{work / f'admin-{time.monotonic_ns()}.db'}")
    dest = open_destination(dsn, Layout(prefix=f"ours{run}"))  # fresh tables per run
    client = DataverseClient(running.environment_url, settings, tokens=StaticToken(running.token))
    runner = SourceRunner(cursors=CursorStore(store), client=client, sink=EngineSink(SyncEngine(dest)),
                          profile_id=PROFILE, settings=settings)  # fmt: skip
    rows = 0
    started = time.perf_counter()
    try:
        for entity in ENTITIES:
            while True:
                r = runner.run_page(entity)
                rows += r.rows
                if r.pass_complete:
                    break
        return rows, time.perf_counter() - started
    finally:
        client.close()
        dest.close()
        store.close()


def _baseline(
    running: RunningSimulator, dsn: str, page_size: int, select: dict[str, str], run: int
) -> tuple[int, float]:
    """The same pages with plain httpx, rows written by hand (TEXT columns, executemany)."""
    headers = running.headers(Prefer=f"odata.track-changes,odata.maxpagesize={page_size},{LOOKUP_ANNOTATIONS}")
    rows = 0
    started = time.perf_counter()
    with httpx.Client(timeout=60) as http:
        if dsn.startswith("sqlite:///"):
            conn: Any = sqlite3.connect(dsn[len("sqlite:///") :])
        else:
            import psycopg

            conn = psycopg.connect(dsn)
        try:
            for entity, sel in select.items():
                cols = sel.split(",")
                table = f"base{run}_{entity}"
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')
                conn.execute(f'CREATE TABLE "{table}" (' + ", ".join(f'"{c}" TEXT' for c in cols) + ")")
                conn.commit()
                mark = "?" if dsn.startswith("sqlite:///") else "%s"
                insert = f'INSERT INTO "{table}" VALUES (' + ", ".join([mark] * len(cols)) + ")"
                url = f"{running.api}{entity}s?$select={sel}"
                while url:
                    body = loads(http.get(url, headers=headers).content)
                    values = [[None if r.get(c) is None else str(r.get(c)) for c in cols] for r in body["value"]]
                    cur = conn.cursor()
                    cur.executemany(insert, values)
                    conn.commit()
                    rows += len(values)
                    url = body.get("@odata.nextLink")
        finally:
            conn.close()
    return rows, time.perf_counter() - started


def _selects(running: RunningSimulator) -> dict[str, str]:
    """The $select the source uses per entity (read from its own metadata step, so both read the same)."""
    settings = DataverseSettings(token=running.token)
    with DataverseClient(running.environment_url, settings, tokens=StaticToken(running.token)) as c:
        out = {}
        for e in ENTITIES:
            attrs = c.attributes(e)
            info, _ = entity_metadata(c.entity_definition(e), attrs, c.casts_for(e, attrs), organization_id=PROFILE,
                                      version=1, changed_on=datetime.now(UTC))  # fmt: skip
            out[e] = info.select()
        return out


def initial_sync(records: int, page_size: int, dsns: dict[str, str], work: Path, repeat: int) -> list[dict[str, Any]]:
    out = []
    with run_simulator(DataverseSimulator(records=records, seed=1)) as running:
        select = _selects(running)
        for name, make in dsns.items():
            best_ours: tuple[int, float] | None = None
            best_base: tuple[int, float] | None = None
            for i in range(repeat):
                dsn = make.replace("{i}", str(i))
                ours = _ours(running, dsn, work, page_size, i)
                base = _baseline(running, dsn, page_size, select, i)
                best_ours = ours if best_ours is None or ours[1] < best_ours[1] else best_ours
                best_base = base if best_base is None or base[1] < best_base[1] else best_base
            assert best_ours is not None
            assert best_base is not None
            ours_rate = best_ours[0] / best_ours[1]
            base_rate = best_base[0] / best_base[1]
            result = {"measure": "initial_sync", "destination": name, "rows": best_ours[0], "page_size": page_size,
                      "ours_rows_per_s": round(ours_rate), "ours_seconds": round(best_ours[1], 2),
                      "baseline_rows_per_s": round(base_rate), "ratio": round(ours_rate / base_rate, 2)}  # fmt: skip
            print(json.dumps(result), flush=True)
            out.append(result)
    return out


def latency(changes: int, poll_interval: float, work: Path) -> dict[str, Any]:
    with run_simulator(DataverseSimulator(records=200, seed=2)) as running:
        settings = DataverseSettings(page_size=5000, token=running.token)
        store = open_store(f"sqlite:///{work / 'latency-admin.db'}")
        dest = open_destination(f"sqlite:///{work / 'latency.db'}", Layout())
        client = DataverseClient(running.environment_url, settings, tokens=StaticToken(running.token))
        runner = SourceRunner(cursors=CursorStore(store), client=client, sink=EngineSink(SyncEngine(dest)),
                              profile_id=PROFILE, settings=settings)  # fmt: skip
        while not runner.run_page("account").pass_complete:
            pass
        pending: dict[str, float] = {}  # version-bumping update: id -> time of the update
        lat: list[float] = []
        lock = threading.Lock()
        stop = threading.Event()

        def poller() -> None:
            while not stop.is_set():
                began = time.perf_counter()
                with lock:
                    made = dict(pending)
                while not runner.run_page("account").pass_complete:
                    pass
                done = time.perf_counter()
                applied = {str(r["Id"]): r for r in table_rows(dest, "account")}
                with lock:
                    for rid, t0 in made.items():
                        row = applied.get(rid)
                        if row is not None and row.get("name") == f"latency {rid}":
                            lat.append(done - t0)
                            pending.pop(rid, None)
                stop.wait(max(0.0, poll_interval - (time.perf_counter() - began)))

        thread = threading.Thread(target=poller, daemon=True)
        thread.start()
        rng = random.Random(3)
        ids = running.sim.state.ids("account")
        for _ in range(changes):
            time.sleep(rng.uniform(0, poll_interval))
            rid = rng.choice(ids)
            with lock:
                if rid in pending:
                    continue
                running.sim.state.update("account", rid, {"name": f"latency {rid}"})
                pending[rid] = time.perf_counter()
        deadline = time.monotonic() + 5 * poll_interval + 10
        while pending and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join()
        client.close()
        dest.close()
        store.close()
    lat.sort()
    result = {"measure": "change_to_row_latency", "poll_interval_s": poll_interval, "changes": len(lat),
              "median_s": round(statistics.median(lat), 3),
              "p99_s": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3), "max_s": round(lat[-1], 3)}  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_dataverse", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=2000, help="simulator accounts (contacts: twice as many)")
    p.add_argument("--page-size", type=int, default=5000)
    p.add_argument("--postgres", default=None, help="PostgreSQL DSN to bench too (tables are created in it)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--changes", type=int, default=40)
    p.add_argument("--poll-interval", type=float, default=1.0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dsns = {"sqlite": f"sqlite:///{work}/bench-{{i}}.db"}
        if args.postgres:
            dsns["postgresql"] = args.postgres
        results = initial_sync(args.records, args.page_size, dsns, work, args.repeat)
        results.append(latency(args.changes, args.poll_interval, work))
    print(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
