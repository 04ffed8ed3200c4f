"""``python -m shared.tools.bench_storage``: throughput of the publisher and of the retry path, with baselines.

Publisher: notifications/s packed into Standard-tier (256 KB) messages and "sent" to a local
in-memory sink (real ``ServiceBusMessageBatch`` accounting; no broker runs here), against a plain
baseline in the same run: the same notifications serialized and joined into <=256 KB JSON arrays
by hand (no SDK). A third figure adds claim checks: 1 in 200 notifications is ~300 KB and goes,
encrypted, to ``data/`` on a real Azurite.

Retry path: a batch parked after a transient error (encrypt + upload to ``retry/``) and then
retried (lease, download + decrypt, apply to SQLite, delete), against applying the same batches
directly (the handler with the destination up). Prints medians of several rounds and the ratios,
then one JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.config import DestinationConfig
from shared.contract.parse import parse_bodies
from shared.destinations import Layout
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.handlers import handle_notifications
from shared.publisher import STANDARD_MAX_MESSAGE_BYTES, InMemorySender, NotificationPublisher
from shared.retry.attempt import Status, process_retry_blob
from shared.retry.park import park_batch
from shared.retry.policy import RetryPolicy
from shared.retry.ports import RetryDeps
from shared.root import single_destination_root
from shared.storage.account import Storage
from shared.storage.claimcheck import Resolution
from shared.storage.crypto import KeyRing, LocalAesKek
from shared.tools.azurite import running_azurite

ORG = "11111111-1111-1111-1111-111111111111"


def notification(i: int, version: int = 1, big: bool = False) -> dict[str, Any]:
    attrs: dict[str, Any] = {f"attr{j:02d}": (f"value {i} {j}" if j % 3 else i * j + 0.5) for j in range(18)}
    attrs["name"] = f"Company {i}"
    attrs["active"] = bool(i % 2)
    if big:
        attrs["description"] = "x" * 300_000
    return {
        "schemaVersion": 1, "organizationId": ORG, "entity": "account",
        "recordId": f"00000000-0000-4000-8000-{i:012d}", "changeType": "update", "version": version,
        "changedOn": "2026-11-21T10:00:00Z", "attributes": attrs,
    }


def baseline_pack(items: list[dict[str, Any]], limit: int = STANDARD_MAX_MESSAGE_BYTES - 2048) -> list[bytes]:
    """Hand-written packing: compact JSON joined into arrays up to the limit (no SDK, no spill)."""
    out: list[bytes] = []
    parts: list[bytes] = []
    size = 2
    for n in items:
        b = json.dumps(n, ensure_ascii=False, separators=(",", ":")).encode()
        if parts and size + len(b) + 1 > limit:
            out.append(b"[" + b",".join(parts) + b"]")
            parts, size = [], 2
        parts.append(b)
        size += len(b) + 1
    if parts:
        out.append(b"[" + b",".join(parts) + b"]")
    return out


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.tools.bench_storage", description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=50_000, help="publisher stream length")
    parser.add_argument("--retry-batches", type=int, default=10, help="retry batches per round")
    parser.add_argument("--batch-size", type=int, default=500, help="notifications per retry batch")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    logging.getLogger("shared").setLevel(logging.ERROR)  # the parking warnings are the point here
    n = args.notifications
    stream = [notification(i) for i in range(n)]
    spill_stream = [notification(i, big=(i % 200 == 0)) for i in range(n // 10)]
    figures: dict[str, Any] = {"notifications": n, "rounds": args.rounds}

    base = timed(lambda: baseline_pack(stream), args.rounds)
    pub = timed(lambda: NotificationPublisher(InMemorySender()).publish(stream), args.rounds)
    figures["baseline_pack_per_s"] = n / statistics.median(base)
    figures["publisher_per_s"] = n / statistics.median(pub)
    figures["publisher_vs_baseline"] = statistics.median(base) / statistics.median(pub)

    with running_azurite() as azurite, tempfile.TemporaryDirectory() as tmp:
        keys = KeyRing(LocalAesKek("bench", secrets.token_bytes(32)))
        storage = Storage.from_connection_string(azurite.connection_string, keys)
        storage.stores.ensure_containers()
        m = len(spill_stream)
        no_spill = [notification(i) for i in range(m)]
        plain = timed(lambda: NotificationPublisher(InMemorySender(), storage.payloads).publish(no_spill), args.rounds)
        spill = timed(
            lambda: NotificationPublisher(InMemorySender(), storage.payloads).publish(spill_stream), args.rounds
        )
        figures["spill_stream"] = {"notifications": m, "spilled_per_round": m // 200 + (1 if m % 200 else 0)}
        figures["publisher_no_spill_per_s"] = m / statistics.median(plain)
        figures["publisher_with_spill_per_s"] = m / statistics.median(spill)
        figures["spill_vs_no_spill"] = statistics.median(plain) / statistics.median(spill)

        # Retry path vs direct apply, SQLite destination.
        size, count = args.batch_size, args.retry_batches
        version = [0]

        def batches() -> list[list[str]]:
            version[0] += 1
            return [
                [json.dumps([notification(b * size + i, version[0]) for i in range(size)])] for b in range(count)
            ]

        db = Path(tmp) / "bench.db"
        dest = SqliteDestination(str(db), Layout())
        c = single_destination_root(
            DestinationConfig(destination_dsn=f"sqlite:///{db}"), destination=dest, storage=storage,
            retry_policy=RetryPolicy(count=3, interval_seconds=0), profile_id="bench",
        )
        deps = RetryDeps.of(storage, c.router)
        direct_times, park_times, retry_times = [], [], []
        for _ in range(max(3, args.rounds - 2)):
            work = batches()
            started = time.perf_counter()
            for bodies in work:
                handle_notifications(bodies, c)
            direct_times.append(time.perf_counter() - started)
            work = batches()
            started = time.perf_counter()
            for bodies in work:
                park_batch(deps, parse_bodies(bodies), Resolution(), ConnectionError("bench: destination down"))
            park_times.append(time.perf_counter() - started)
            names = [s.name for s in storage.retries.states("bench")]
            started = time.perf_counter()
            for name in names:
                if process_retry_blob(name, deps).status is not Status.RESOLVED:
                    print(f"retry of {name} did not resolve", file=sys.stderr)
                    return 1
            retry_times.append(time.perf_counter() - started)
        dest.close()
        total = size * count
        figures["retry"] = {"batches": count, "batch_size": size}
        figures["direct_apply_per_s"] = total / statistics.median(direct_times)
        figures["park_per_s"] = total / statistics.median(park_times)
        figures["retry_apply_per_s"] = total / statistics.median(retry_times)
        figures["park_plus_retry_per_s"] = total / (statistics.median(park_times) + statistics.median(retry_times))
        figures["retry_path_vs_direct"] = statistics.median(direct_times) / (
            statistics.median(park_times) + statistics.median(retry_times)
        )

    print(f"publisher, {n:,} notifications (~{len(json.dumps(stream[0]))} bytes each), medians of {args.rounds}:")
    print(f"  hand-written packing (baseline)  {figures['baseline_pack_per_s']:>12,.0f} notifications/s")
    print(f"  publisher -> local sink          {figures['publisher_per_s']:>12,.0f} notifications/s"
          f"   ({figures['publisher_vs_baseline']:.2f}x baseline)")
    print(f"claim checks, {m:,} notifications, 1 in 200 of ~300 KB spilled to Azurite (encrypted):")
    print(f"  publisher, no spill              {figures['publisher_no_spill_per_s']:>12,.0f} notifications/s")
    print(f"  publisher, with spill            {figures['publisher_with_spill_per_s']:>12,.0f} notifications/s"
          f"   ({figures['spill_vs_no_spill']:.2f}x no spill)")
    print(f"retry path, {count} batches of {size} notifications, SQLite destination, Azurite:")
    print(f"  direct apply (baseline)          {figures['direct_apply_per_s']:>12,.0f} notifications/s")
    print(f"  park (encrypt + upload)          {figures['park_per_s']:>12,.0f} notifications/s")
    print(f"  retry (download, decrypt, apply) {figures['retry_apply_per_s']:>12,.0f} notifications/s")
    print(f"  park + retry                     {figures['park_plus_retry_per_s']:>12,.0f} notifications/s"
          f"   ({figures['retry_path_vs_direct']:.2f}x direct)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
