"""Replay a file of Service Bus message bodies (one per line) through the sync engine, streaming."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.rejects import RejectFiles

DEFAULT_BATCH_SIZE = 5000


@dataclass
class ReplayReport:
    result: BatchResult
    seconds: float
    lines: int

    def summary(self) -> dict[str, object]:
        rate = self.result.received / self.seconds if self.seconds else 0.0
        return {**self.result.counts(), "lines": self.lines, "seconds": round(self.seconds, 3),
                "notifications_per_second": round(rate, 1)}


def batches(fh: IO[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for line in fh:
        line = line.strip()
        if not line:
            continue
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def replay(
    path: Path,
    engine: SyncEngine,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rejects: RejectFiles | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Apply every line of ``path``; never holds more than one batch in memory."""
    total = BatchResult()
    lines = 0
    started = time.perf_counter()
    with path.open("rb") as fh:
        for batch in batches(fh, batch_size):
            result = engine.apply_bodies(batch)
            lines += len(batch)
            if rejects is not None:
                rejects.failures(result.failures)
                rejects.unprocessable(result.unprocessables)
            result.failures.clear()
            result.unprocessables.clear()
            total.merge(result)
            if progress is not None:
                progress(fh.tell())
    return ReplayReport(total, time.perf_counter() - started, lines)
