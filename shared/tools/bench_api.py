"""Latency of the admin API, measured locally: ``python -m shared.tools.bench_api``.

Serves the API with uvicorn on a free loopback port (store: a SQLite file in a temporary folder,
or ``--store postgresql://...``), fills one profile's metrics for ``--entities`` entities, then
times ``GET /profiles/{id}/metrics`` and ``POST /profiles`` (a draft with a Key Vault reference:
no destination check) over one keep-alive HTTP connection, and prints p50/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _time(n: int, call: Callable[[int], Any]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(requests: int, entities: int, store: str | None) -> dict[str, Any]:
    import httpx
    import uvicorn

    from shared.api import ApiServices, AuthConfig, create_app
    from shared.config import ProfilesConfig
    from shared.engine.outcomes import BatchResult
    from shared.root import build_runtime

    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="des-api-bench-") as tmp:
        dsn = store or f"sqlite:///{Path(tmp) / 'admin.db'}"
        rt = build_runtime(ProfilesConfig(store_dsn=dsn))
        app = create_app(ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=key)))
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, headers={"x-functions-key": key}, timeout=30) as http:
                deadline = time.monotonic() + 20
                while not server.started:
                    if time.monotonic() > deadline:
                        raise RuntimeError("uvicorn did not start")
                    time.sleep(0.05)
                run_id = uuid.uuid4().hex[:6]
                body = {
                    "name": f"bench-{run_id}",
                    "organizationId": ORG,
                    "destination": "https://bench.vault.azure.net/secrets/dest",
                    "entities": [f"entity{i}" for i in range(entities)],
                }
                pid = http.post("/profiles", json=body).json()["id"]
                result = BatchResult()
                for i in range(entities):
                    c = result.entity(f"entity{i}")
                    c.received, c.applied, c.stale, c.last_changed_on = 100, 90, 10, datetime.now(UTC)
                rt.store.record(pid, result, pending_retry=3)

                def get_metrics(_: int) -> None:
                    r = http.get(f"/profiles/{pid}/metrics")
                    assert r.status_code == 200, r.text

                def create(i: int) -> None:
                    r = http.post("/profiles", json={**body, "name": f"bench-{run_id}-{i}"})
                    assert r.status_code == 201, r.text

                _time(20, get_metrics)  # warm up
                metrics_ms = _time(requests, get_metrics)
                create_ms = _time(requests, create)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            rt.close()
    report: dict[str, Any] = {"store": dsn.split(":", 1)[0], "requests": requests, "entities": entities}
    for name, values in (("get_metrics", metrics_ms), ("create_profile", create_ms)):
        report[name] = {
            "p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(_percentile(values, 0.99), 2),
            "mean_ms": round(statistics.fmean(values), 2),
        }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m shared.tools.bench_api", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--entities", type=int, default=20, help="entities with metrics in the measured profile")
    p.add_argument("--store", default=os.environ.get("DES_BENCH_STORE"), help="admin store DSN (default: SQLite)")
    args = p.parse_args(argv)
    report = run(args.requests, args.entities, args.store)
    for name in ("get_metrics", "create_profile"):
        r = report[name]
        print(f"{name:15s} p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   mean {r['mean_ms']:7.2f} ms")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
