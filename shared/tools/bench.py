"""``python -m shared bench``: replay throughput against hand-written baselines, in the same run.

Baselines (what a competent developer would write by hand for this one stream, knowing its schema):
- SQLite: stdlib sqlite3, one transaction, ``json.loads`` per line, version-guarded
  ``executemany`` upsert (``ON CONFLICT DO UPDATE ... WHERE excluded.versionnumber > ...``) and a
  guarded delete, in chunks of the batch size.
- PostgreSQL: one transaction; per chunk ``json.loads``, COPY into a temporary staging table, one
  ``INSERT ... SELECT DISTINCT ON ... ON CONFLICT DO UPDATE ... WHERE newer`` and a guarded delete.

The replay is the product path: ``shared.replay.replay`` with the sync engine (contract validation,
reduction buffer, tombstones, outcomes). Rounds alternate which runs first; figures are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.destinations import Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.replay import replay, replay_parallel
from shared.tools.crm_simulator import bench_attribute_names, write_bench_file


def _columns(attributes: int) -> tuple[list[str], list[str]]:
    """(attribute names in the stream, table columns with the lookup expanded)."""
    names = [n for n, _ in bench_attribute_names(attributes)]
    lookups = [n for n, kind in bench_attribute_names(attributes) if kind == "lookup"]
    return names, names + [f"{n}_entitytype" for n in lookups]


def _rows(line: bytes, names: list[str], lookups: list[str]) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]]:
    doc = json.loads(line)
    ups: list[tuple[Any, ...]] = []
    dels: list[tuple[str, int]] = []
    for n in doc if isinstance(doc, list) else [doc]:
        if n["changeType"] == "delete":
            dels.append((n["recordId"], n["version"]))
            continue
        a = n["attributes"]
        vals: list[Any] = [n["recordId"], n["version"]]
        for c in names:
            v = a.get(c)
            vals.append(v["id"] if isinstance(v, dict) else v)
        for c in lookups:
            v = a.get(c)
            vals.append(v["logicalName"] if v else None)
        ups.append(tuple(vals))
    return ups, dels


def baseline_sqlite(path: Path, db: Path, attributes: int, chunk: int) -> float:
    names, cols = _columns(attributes)
    lookups = [c[: -len("_entitytype")] for c in cols[len(names) :]]
    _remove_db(db)
    conn = sqlite3.connect(db, isolation_level=None)
    quoted = ", ".join(f'"{c}"' for c in cols)
    conn.execute(f'CREATE TABLE account ("Id" TEXT PRIMARY KEY, versionnumber INTEGER NOT NULL, {quoted})')
    upsert = (
        f'INSERT INTO account ("Id", versionnumber, {quoted}) VALUES ({", ".join("?" * (len(cols) + 2))}) '
        'ON CONFLICT ("Id") DO UPDATE SET versionnumber = excluded.versionnumber, '
        + ", ".join(f'"{c}" = excluded."{c}"' for c in cols)
        + " WHERE excluded.versionnumber > account.versionnumber"
    )
    started = time.perf_counter()
    conn.execute("BEGIN")
    ups: list[tuple[Any, ...]] = []
    dels: list[tuple[str, int]] = []
    with path.open("rb") as fh:
        for i, line in enumerate(fh, 1):
            u, d = _rows(line, names, lookups)
            ups += u
            dels += d
            if i % chunk == 0:
                conn.executemany(upsert, ups)
                conn.executemany('DELETE FROM account WHERE "Id" = ? AND versionnumber < ?', dels)
                ups, dels = [], []
    conn.executemany(upsert, ups)
    conn.executemany('DELETE FROM account WHERE "Id" = ? AND versionnumber < ?', dels)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def baseline_postgres(path: Path, dsn: str, attributes: int, chunk: int) -> float:
    import psycopg
    from psycopg import sql

    names, cols = _columns(attributes)
    lookups = [c[: -len("_entitytype")] for c in cols[len(names) :]]
    types = dict(bench_attribute_names(attributes))
    pgtype = {"text": "text", "int": "bigint", "float": "double precision", "bool": "boolean", "lookup": "uuid"}
    coldefs = ", ".join(f'"{c}" {pgtype.get(types.get(c, "text"), "text")}' for c in cols)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS benchbase CASCADE")
        conn.execute("CREATE SCHEMA benchbase")
        conn.execute(
            f'CREATE TABLE benchbase.account ("Id" uuid PRIMARY KEY, versionnumber bigint NOT NULL, {coldefs})'
        )
        quoted = ", ".join(f'"{c}"' for c in cols)
        upsert = (
            'INSERT INTO benchbase.account SELECT DISTINCT ON ("Id") * FROM stage ORDER BY "Id", versionnumber DESC '
            'ON CONFLICT ("Id") DO UPDATE SET versionnumber = EXCLUDED.versionnumber, '
            + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in cols)
            + " WHERE benchbase.account.versionnumber < EXCLUDED.versionnumber"
        )
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(f'CREATE TEMP TABLE stage ("Id" uuid, versionnumber bigint, {coldefs}) ON COMMIT DROP')

            def flush(ups: list[tuple[Any, ...]], dels: list[tuple[str, int]]) -> None:
                with conn.cursor() as cur:
                    with cur.copy(f'COPY stage ("Id", versionnumber, {quoted}) FROM STDIN') as cp:
                        for row in ups:
                            cp.write_row(row)
                    cur.execute(upsert)
                    cur.execute("TRUNCATE stage")
                    if dels:
                        cur.execute(
                            sql.SQL(
                                'DELETE FROM benchbase.account a USING unnest(%s::uuid[], %s::bigint[]) AS d(i, v) '
                                'WHERE a."Id" = d.i AND a.versionnumber < d.v'
                            ),
                            [[d[0] for d in dels], [d[1] for d in dels]],
                        )

            ups: list[tuple[Any, ...]] = []
            dels: list[tuple[str, int]] = []
            with path.open("rb") as fh:
                for i, line in enumerate(fh, 1):
                    u, d = _rows(line, names, lookups)
                    ups += u
                    dels += d
                    if i % chunk == 0:
                        flush(ups, dels)
                        ups, dels = [], []
            flush(ups, dels)
        return time.perf_counter() - started


def _remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def replay_run(path: Path, dsn: str, layout: Layout, batch_size: int, workers: int = 1) -> tuple[float, dict[str, Any]]:
    if workers > 1:
        report = replay_parallel(path, dsn, layout, workers=workers, batch_size=batch_size)
        return report.seconds, report.result.counts()
    dest = open_destination(dsn, layout)
    try:
        report = replay(path, SyncEngine(dest), batch_size=batch_size)
    finally:
        dest.close()
    return report.seconds, report.result.counts()


def _reset_pg_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def peak_rss_replay(path: Path, workdir: Path, batch_size: int, workers: int) -> tuple[float, float]:
    """Peak total resident set size (MiB) of a ``python -m shared replay`` process tree (the command
    and its workers, summed, sampled every 20 ms), and its seconds."""
    import psutil

    db = workdir / "rss.db"
    _remove_db(db)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared", "replay", str(path), "--destination", f"sqlite:///{db}",
         "--batch-size", str(batch_size), "--workers", str(workers), "--rejects-dir", str(workdir / "rss-rejects")],
        stdout=subprocess.DEVNULL,
    )
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.02)
    if proc.returncode != 0:
        raise RuntimeError(f"replay for the RSS measurement failed with exit code {proc.returncode}")
    return peak / 2**20, time.perf_counter() - started


def _rotating(rounds: int, runs: list[Callable[[], float]]) -> list[list[float]]:
    """Seconds per run per round; each round starts with a different run, so drift hits all alike."""
    times: list[list[float]] = [[] for _ in runs]
    for r in range(rounds):
        for k in range(len(runs)):
            i = (r + k) % len(runs)
            times[i].append(runs[i]())
    return times


def run_bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="des-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    n, attrs, batch = args.notifications, args.attributes, args.batch_size
    data = workdir / f"bench-{n}-{attrs}.jsonl"
    if not data.exists():
        console.print(f"generating {n} notifications with {attrs} attributes into {data}")
        write_bench_file(data, n, attrs)
    results: dict[str, Any] = {
        "notifications": n, "attributes": attrs, "batch_size": batch, "rounds": args.repeat,
        "python": sys.version.split()[0], "cpus": os.cpu_count(),
    }
    table = Table(title=f"replay vs baseline, {n} notifications x {attrs} attributes (medians of {args.repeat})")
    for col in ("database", "replay workers", "baseline s", "replay s", "baseline n/s", "replay n/s", "speed ratio"):
        table.add_column(col, justify="right")

    counts: dict[str, Any] = {}
    workers = max(1, args.workers)

    def ours(name: str, dsn: str, layout: Layout, n_workers: int, reset: Callable[[], None]) -> Callable[[], float]:
        def run() -> float:
            reset()
            seconds, c = replay_run(data, dsn, layout, batch, n_workers)
            counts[f"{name}/{n_workers}"] = c
            return seconds

        return run

    ours_db = workdir / "ours.db"
    targets: list[tuple[str, Callable[[], float], str, Layout, Callable[[], None]]] = [
        ("sqlite", lambda: baseline_sqlite(data, workdir / "base.db", attrs, batch), f"sqlite:///{ours_db}", Layout(),
         lambda: _remove_db(ours_db)),
    ]
    if args.postgres:
        pg = args.postgres
        targets.append(
            ("postgresql", lambda: baseline_postgres(data, pg, attrs, batch), pg, Layout(schema="benchours"),
             lambda: _reset_pg_schema(pg, "benchours"))
        )
    variants = sorted({1, workers})
    for name, base, dsn, layout, reset in targets:
        console.print(f"running {name}: {args.repeat} rounds, order rotating each round")
        runs = [base] + [ours(name, dsn, layout, w, reset) for w in variants]
        times = _rotating(args.repeat, runs)
        tb = times[0]
        mb = statistics.median(tb)
        entry: dict[str, Any] = {
            "baseline_seconds": [round(x, 3) for x in tb],
            "baseline_median_s": round(mb, 3),
            "baseline_notifications_per_s": round(n / mb),
        }
        for w, to in zip(variants, times[1:], strict=True):
            mo = statistics.median(to)
            per_round = [b / o for b, o in zip(tb, to, strict=True)]
            entry[f"replay_workers_{w}"] = {
                "seconds": [round(x, 3) for x in to],
                "median_s": round(mo, 3),
                "notifications_per_s": round(n / mo),
                "speed_ratio_of_medians": round(mb / mo, 3),
                "speed_ratio_per_round_median": round(statistics.median(per_round), 3),
                "outcomes": counts.get(f"{name}/{w}"),
            }
            table.add_row(
                name, str(w), f"{mb:.2f}", f"{mo:.2f}", f"{n / mb:,.0f}", f"{n / mo:,.0f}", f"{mb / mo:.2f}x"
            )
        results[name] = entry
    if args.rss_notifications:
        big = workdir / f"bench-{args.rss_notifications}-{attrs}.jsonl"
        if not big.exists():
            console.print(f"generating {args.rss_notifications} notifications into {big}")
            write_bench_file(big, args.rss_notifications, attrs)
        rss: dict[str, Any] = {"notifications": args.rss_notifications}
        for w in variants:
            mib, seconds = peak_rss_replay(big, workdir, batch, w)
            rss[f"workers_{w}"] = {"peak_rss_mib": round(mib, 1), "seconds": round(seconds, 1)}
        results["peak_rss"] = rss
        table.caption = "peak RSS replaying {:,}: {}".format(
            args.rss_notifications,
            ", ".join(
                f"{k.replace('_', ' ')} {v['peak_rss_mib']:.0f} MiB" for k, v in rss.items() if k != "notifications"
            ),
        )
    console.print(table)
    print(json.dumps(results))
    return 0
