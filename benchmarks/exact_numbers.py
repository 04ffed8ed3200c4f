"""Same-run cost of the contract's exact-number check (docs/dataverse.md, "Mapping"):

    python benchmarks/exact_numbers.py

``parse_bodies`` on 20,000 distinct ~700-byte account bodies (no number beyond 15 digits, so every
body takes the fast path), with ``has_long_number`` on and switched off, interleaved, best of 7.
"""

from __future__ import annotations

import json
import time
import uuid

from shared.contract import parse as P


def body(i: int) -> bytes:
    return json.dumps({
        "schemaVersion": 1, "organizationId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "entity": "account",
        "recordId": str(uuid.UUID(int=i)), "changeType": "update", "version": 1000 + i,
        "changedOn": "2026-11-21T10:00:00Z",
        "attributes": {"name": f"Contoso {i}", "revenue": 20000.5 + i, "numberofemployees": i,
                       "telephone1": "+1 555 0100", "description": "x" * 200,
                       "parentaccountid": {"id": str(uuid.UUID(int=i + 1)), "logicalName": "account"},
                       "modifiedon": "2026-11-21T10:00:00Z"},
    }).encode()  # fmt: skip


def main() -> None:
    bodies = [body(i) for i in range(20_000)]
    real = P.has_long_number

    def run(check: bool) -> float:
        P.has_long_number = real if check else (lambda _b: False)  # type: ignore[assignment]
        start = time.perf_counter()
        P.parse_bodies(bodies)
        return time.perf_counter() - start

    on, off = [], []
    try:
        for _ in range(7):
            off.append(run(False))
            on.append(run(True))
    finally:
        P.has_long_number = real  # type: ignore[assignment]
    print(f"parse_bodies, 20,000 bodies: check off {min(off) * 1e3:.0f} ms, on {min(on) * 1e3:.0f} ms, "
          f"ratio {min(on) / min(off):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
