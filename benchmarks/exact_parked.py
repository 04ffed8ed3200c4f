"""Same-run cost of exact JSON on the retry-blob path (docs/storage.md, "Copies keep exact numbers"):

    python benchmarks/exact_parked.py

A retry blob of 1,000 account notifications (~850 KB): written (``RetryBatch.to_bytes``), named
(``batch_key``) and read (``RetryBatch.from_bytes``) with exact JSON, against main's ``json.dumps`` /
``json.loads`` of the same documents, interleaved, CPU time, best of 7 (20 calls each). Once with
ordinary money (a double holds it: the common case) and once with 38-digit money in every notification.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.contract.models import notification_doc
from shared.contract.parse import parse_bodies
from shared.storage.blobs import RetryBatch, batch_key, iso

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def body(i: int, money: str) -> str:
    attrs: dict[str, Any] = {f"attr{k}": f"value {k} of record {i} ÄÖ" for k in range(12)}
    attrs.update({"revenue": "<m>", "numberofemployees": i, "latitude": 47.1234 + i, "donotemail": False,
                  "primarycontactid": {"id": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "logicalName": "contact"}})
    return json.dumps({
        "schemaVersion": 1, "organizationId": ORG, "entity": "account", "recordId": f"00000000-0000-0000-0000-{i:012d}",
        "changeType": "update", "version": i, "changedOn": "2026-11-21T10:00:00Z", "attributes": attrs,
    }).replace('"<m>"', money)  # fmt: skip


def main_key(docs: list[dict[str, Any]]) -> str:
    """main's batch_key (json.dumps): the baseline."""
    h = hashlib.sha256()
    for n in docs:
        h.update(json.dumps(n, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:40]


def best(f: Callable[[], object]) -> float:
    t = time.process_time()
    for _ in range(20):
        f()
    return (time.process_time() - t) / 20


def one(label: str, money: str) -> None:
    docs = [notification_doc(n) for n in parse_bodies([body(i, money) for i in range(1000)]).notifications]
    floats = json.loads(json.dumps(docs, default=float))  # what main parked: the Decimals as doubles
    batch = RetryBatch("p", datetime.now(UTC), docs)
    data = batch.to_bytes()

    def main_to_bytes() -> bytes:  # main's RetryBatch.to_bytes
        doc = {"format": "des-retry/1", "profile": "p", "firstSeen": iso(batch.first_seen), "notifications": floats}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    main_data = main_to_bytes()
    cases: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "write (to_bytes)": (main_to_bytes, batch.to_bytes),
        "name (batch_key)": (lambda: main_key(floats), lambda: batch_key(docs)),
        "read (from_bytes)": (lambda: json.loads(main_data), lambda: RetryBatch.from_bytes(data)),
    }  # fmt: skip
    print(f"{label}: 1000 notifications, blob {len(data)} bytes")
    for name, (old, new) in cases.items():
        t = {"main": 1e9, "exact": 1e9}
        for _ in range(7):
            t["main"] = min(t["main"], best(old))
            t["exact"] = min(t["exact"], best(new))
        print(f"  {name:18} main {t['main'] * 1e3:6.2f} ms  exact {t['exact'] * 1e3:6.2f} ms"
              f"  ratio {t['exact'] / t['main']:.2f}")  # fmt: skip


def main() -> None:
    one("ordinary money 20000.25", "20000.25")
    one("38-digit money", "1234567890123456789012345678901234.5678")


if __name__ == "__main__":
    main()
