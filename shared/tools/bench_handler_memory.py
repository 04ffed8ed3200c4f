"""Peak memory of the Service Bus handler on a large delivery (issue 12), chunked by bytes or not.

``python -m shared.tools.bench_handler_memory [--mb 100] [--messages 500]`` builds a delivery of
``--messages`` contract envelopes (bench notifications) totalling ``--mb`` MB, held in memory as the
host holds a delivered batch, and applies it with :func:`shared.handlers.handle_notifications` in
single-destination mode on SQLite, once per ``DES_BATCH_BYTES`` value (each in a fresh process):
the default 2 MiB, and one chunk for the whole delivery (what the handler did before). It prints
each run's RSS once the delivery is built, its peak RSS (``ru_maxrss``), the growth, and the
growth's ratio to the one-chunk run of the same invocation.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from shared import config as S

WHOLE = 1 << 40  # one chunk: the handler before it cut deliveries by bytes


def delivery(mb: int, messages: int) -> list[tuple[bytes, dict[str, object]]]:
    from shared.tools.crm_simulator import bench_lines

    target = mb * 1_000_000 // messages
    out: list[tuple[bytes, dict[str, object]]] = []
    group: list[str] = []
    size = 0
    for body in bench_lines(mb * 8_000, 20, seed=5, records=mb * 4_000):
        if body.startswith("["):
            continue
        group.append(body)
        size += len(body) + 1
        if size >= target:
            out.append((("[" + ",".join(group) + "]").encode(), {}))
            group, size = [], 0
            if len(out) == messages:
                return out
    raise SystemExit("not enough bench notifications for the delivery")


def child(mb: int, messages: int, batch_bytes: int, workdir: str) -> dict[str, object]:
    from shared.handlers import handle_notifications
    from shared.root import build_root

    env = {S.DESTINATION_DSN: f"sqlite:///{workdir}/dest.db", S.REJECTS_DIR: f"{workdir}/rejects",
           S.ADMIN_STORE: f"sqlite:///{workdir}/admin.db", S.BATCH_BYTES: str(batch_bytes)}  # fmt: skip
    root = build_root(S.AppConfig.from_env(env))
    bodies = delivery(mb, messages)
    built = psutil.Process().memory_info().rss
    started = time.perf_counter()
    result = handle_notifications(bodies, root).final()
    seconds = time.perf_counter() - started
    root.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"batch_bytes": batch_bytes, "bytes": sum(len(b) for b, _ in bodies), "messages": len(bodies),
            "received": result.received, "applied": result.applied, "rss_built_mib": round(built / 2**20),
            "peak_rss_mib": round(peak / 2**20), "growth_mib": round((peak - built) / 2**20),
            "seconds": round(seconds, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.mb, args.messages, args.child, args.dir)))
        return 0
    runs = []
    for batch_bytes in (WHOLE, S.DEFAULT_BATCH_BYTES):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run(  # noqa: S603 - this module, with numbers
                [sys.executable, "-m", "shared.tools.bench_handler_memory", "--mb", str(args.mb),
                 "--messages", str(args.messages), "--child", str(batch_bytes), "--dir", d],
                capture_output=True, text=True, check=True, cwd=Path.cwd(),
            )  # fmt: skip
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = runs[0]
    for run in runs:
        run["growth_vs_one_chunk"] = round(int(run["growth_mib"]) / max(1, int(base["growth_mib"])), 2)
        print(json.dumps(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
