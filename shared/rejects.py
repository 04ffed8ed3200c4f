"""Where what could not be applied goes (:class:`RejectSink`), and the local sinks: failure-log CSV and
unprocessable bodies (JSONL).

The command line uses these; the function app uses the Blob storage sinks (same columns).
"""

from __future__ import annotations

import csv
import fcntl
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

from shared.contract import exactjson
from shared.contract.models import notification_doc
from shared.contract.parse import Unprocessable
from shared.destinations.redaction import redact_text
from shared.engine.failure_schema import COLUMNS as FAILURE_LOG_COLUMNS
from shared.engine.outcomes import RecordFailure


def redact_failures(items: list[RecordFailure]) -> list[RecordFailure]:
    """Failures with their reasons through the one redaction (a reason quotes the destination's
    error message): what every failure log and parked copy keeps."""
    out = []
    for f in items:
        reason = redact_text(f.reason)
        out.append(f if reason == f.reason else RecordFailure(f.notification, reason))
    return out


PARKED_FILE = "failed-notifications.jsonl"  # each failed notification, its reason and when it was logged


class RejectSink(Protocol):
    """Where failed records (the failure log) and unprocessable bodies are kept."""

    def failures(self, items: list[RecordFailure]) -> None: ...

    def unprocessable(self, items: list[Unprocessable]) -> None: ...


class RejectFiles:
    """Appends failures to ``failures.csv`` and unprocessable bodies to ``unprocessable.jsonl``.

    ``shared=True`` when several processes append to the same directory (``replay --workers``):
    every write then holds an exclusive ``flock`` on ``.lock`` until its lines are flushed, so
    lines never interleave and the CSV header is written once.
    """

    def __init__(self, directory: Path, *, shared: bool = False) -> None:
        self.directory = directory
        self.shared = shared
        self._failures: IO[str] | None = None
        self._unprocessable: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self.shared:
            yield
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def failures(self, items: list[RecordFailure]) -> None:
        if not items:
            return
        items = redact_failures(items)
        with self._exclusive():
            self._write_failures(items)

    def _write_failures(self, items: list[RecordFailure]) -> None:
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / "failures.csv"
            new = not path.exists() or path.stat().st_size == 0
            self._failures = path.open("a", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._failures, FAILURE_LOG_COLUMNS)
            if new:
                self._writer.writeheader()
        for f in items:
            self._writer.writerow(f.log_row())
        assert self._failures is not None
        self._failures.flush()
        # Keep the notification itself too, so the record can be re-synced.
        # With when it was logged: the admin API reads the local failure log by time range from it.
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self._park([
            {"reason": f.reason, "notification": notification_doc(f.notification, exclude_unset=False), "loggedAt": now}
            for f in items
        ])  # fmt: skip

    def _park(self, rows: list[dict[str, object]]) -> None:
        with (self.directory / PARKED_FILE).open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(exactjson.dumps(row) + "\n")

    def unprocessable(self, items: list[Unprocessable]) -> None:
        if not items:
            return
        with self._exclusive():
            self._write_unprocessable(items)

    def _write_unprocessable(self, items: list[Unprocessable]) -> None:
        if self._unprocessable is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._unprocessable = (self.directory / "unprocessable.jsonl").open("a", encoding="utf-8")
        for u in items:
            self._unprocessable.write(json.dumps({"reason": u.reason, "body": u.body}, ensure_ascii=False) + "\n")
        self._unprocessable.flush()

    def close(self) -> None:
        for fh in (self._failures, self._unprocessable):
            if fh is not None:
                fh.close()


class LocalRejects:
    """Profile mode without Blob storage: ``<rejects dir>/<profile>/`` per profile (``unrouted/``
    for what belongs to none), in the replay CLI's file formats."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sinks: dict[str, RejectFiles] = {}
        self._lock = threading.Lock()

    def __call__(self, profile_id: str) -> RejectSink:
        with self._lock:
            sink = self._sinks.get(profile_id)
            if sink is None:
                sink = self._sinks[profile_id] = RejectFiles(self.directory / profile_id)
            return sink

    def close(self) -> None:
        with self._lock:
            for sink in self._sinks.values():
                sink.close()
            self._sinks.clear()
