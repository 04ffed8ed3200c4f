"""Replay a file of Service Bus message bodies (one per line) through the sync engine, streaming.

A line is a contract v1 body, a Dataverse message body (RemoteExecutionContext JSON), or a Dataverse
message with its application properties (``{"applicationProperties": {...}, "body": {...}}``):
shared.source.dataverse.push. A Dataverse message that needs a re-read (no full post-image) is
re-read through the environment given with ``des replay --dataverse URL`` (one worker then);
without it, it is unprocessable with the reason.

Memory is bounded: a batch holds at most ``batch_size`` lines **and** ``batch_bytes`` bytes of them
(defaults 5,000 lines and 2 MiB), and a line longer than ``max_line_bytes`` (default 16 MiB) is
unprocessable without being read whole (its first 4 KiB are kept with the reason). So a worker holds
one batch (plus the parsed notifications and rows made from it, about six times its bytes) on top of
its start-up size: with the defaults about 35 MB + 8 x 2 MiB per worker, whatever the file (BENCHMARKS.md).
Workers exit when the replaying process dies (they are told by the kernel, and check each batch).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shared.config import DEFAULT_BATCH_BYTES
from shared.contract.parse import ParsedBatch, Unprocessable, unprocessable
from shared.destinations import Layout, open_destination
from shared.destinations.sqlite.dialect import SqliteDestination
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.rejects import RejectFiles
from shared.source.dataverse.push import Reread, parse_lines

DEFAULT_BATCH_SIZE = 5000
# des replay into SQLite commits the writes of every 64 MiB of input together (one batch is 2 MiB):
# measured in BENCHMARKS.md (issue 14, third and fifth passes). The group's page cache: 12 MiB (peak
# RSS), whatever the group's size.
DEFAULT_COMMIT_BYTES = 64 * 2**20
GROUP_CACHE_KIB = 12 * 1024
# A replaying SQLite connection checkpoints its WAL every 20,000 pages (80 MiB) instead of 1,000.
IMPORT_WAL_PAGES = 20_000
# A replay worker's page cache (its batches commit one by one): a batch's transaction touches more
# pages than SQLite's default 2,000 KiB hold, so with the default it wrote pages out and read them
# back within the transaction (BENCHMARKS.md, issue 14, fifth pass).
WORKER_CACHE_KIB = 8 * 1024
DEFAULT_MAX_LINE_BYTES = 16 * 2**20
KEPT_OF_A_LONG_LINE = 4096
log = logging.getLogger(__name__)
_SKIP_CHUNK = 2**20
READ_BUFFER = 2**18  # the input is read 256 KiB at a time (the default 8 KiB: a system call per ~5 lines)


@dataclass
class ReplayReport:
    result: BatchResult
    seconds: float
    lines: int

    def summary(self) -> dict[str, object]:
        rate = self.result.received / self.seconds if self.seconds else 0.0
        return {**self.result.counts(), "lines": self.lines, "seconds": round(self.seconds, 3),
                "notifications_per_second": round(rate, 1)}


@dataclass
class Batch:
    """Lines of one batch, and the lines too long to read (unprocessable), in file order."""

    lines: list[bytes] = field(default_factory=list)
    too_long: list[Unprocessable] = field(default_factory=list)
    size: int = 0  # bytes of ``lines``
    count: int = 0  # lines, long ones included
    start: int = 0  # file offset the batch starts at: ``batches`` from there yields this batch again


def batches(
    fh: IO[bytes],
    batch_size: int,
    max_bytes: int = DEFAULT_BATCH_BYTES,
    max_line: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[Batch]:
    """Batches of at most ``batch_size`` lines and ``max_bytes`` bytes (a longer line is a batch alone).

    Deterministic from a batch's start: reading from ``fh.seek(b.start)`` yields ``b`` and the
    batches after it again (a commit group that must be redone re-reads its batches)."""
    pos = fh.tell()
    readline = fh.readline
    read = max_line + 1
    # The batch being filled, in locals (the loop runs once per line): its lines, their bytes, its
    # line count (long ones included), where it starts, and the lines too long to read.
    lines: list[bytes] = []
    size = count = 0
    start = pos
    too_long: list[Unprocessable] = []
    while True:
        line = readline(read)
        if not line:
            break
        at = pos
        pos += len(line)
        if len(line) > max_line and not line.endswith(b"\n"):
            head = line[:KEPT_OF_A_LONG_LINE]
            del line
            reason, skipped = _too_long_from(fh, head, read)
            pos += skipped
            too_long.append(reason)
            count += 1
            continue
        line = line.strip()
        if not line:
            continue
        n = len(line)
        if lines and size + n > max_bytes:
            yield Batch(lines, too_long, size, count, start)
            lines, too_long, size, count, start = [], [], 0, 0, at
        lines.append(line)
        size += n
        count += 1
        if count >= batch_size:
            yield Batch(lines, too_long, size, count, start)
            lines, too_long, size, count, start = [], [], 0, 0, pos
    if lines or too_long:
        yield Batch(lines, too_long, size, count, start)


def _too_long_from(fh: IO[bytes], head: bytes, read: int) -> tuple[Unprocessable, int]:
    """The reason for a line too long to read, and the bytes skipped after its first ``read``."""
    total = read
    while True:
        chunk = fh.readline(_SKIP_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if chunk.endswith(b"\n"):
            break
    reason = unprocessable(
        head.decode("utf-8", "backslashreplace"),
        f"the line is {total} bytes long, longer than the {read - 1} bytes replay reads; "
        f"its first {len(head)} bytes are kept here",
    )
    return reason, total - read


def _apply(engine: SyncEngine, batch: Batch, reread: Reread | None = None) -> BatchResult:
    parsed = parse_lines(batch.lines, reread)
    batch.lines.clear()  # the parsed batch is what stays in memory while it is applied
    return _finish(engine, parsed, batch)


def _finish(engine: SyncEngine, parsed: ParsedBatch, batch: Batch) -> BatchResult:
    result = engine.apply_parsed(parsed)
    if batch.too_long:
        result.add_unprocessable(batch.too_long)
    return result


def _settle(result: BatchResult, rejects: RejectFiles | None, total: BatchResult) -> None:
    """Write a batch's failures and unprocessables out, then add its counts (only) to the total."""
    if rejects is not None:
        rejects.failures(result.failures)
        rejects.unprocessable(result.unprocessables)
    result.failures.clear()
    result.unprocessables.clear()
    total.merge(result)


def replay(
    path: Path,
    engine: SyncEngine,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rejects: RejectFiles | None = None,
    progress: Callable[[int], None] | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    reread: Reread | None = None,
    commit_bytes: int = DEFAULT_COMMIT_BYTES,
) -> ReplayReport:
    """Apply every line of ``path``; never holds more than one batch in memory. ``reread``: the
    Dataverse source that Dataverse messages without a full post-image are re-read through.

    ``commit_bytes``: on SQLite, the batches' writes commit together every ``commit_bytes`` bytes of
    input (a commit group; :class:`_Groups`); 0, or no more than ``batch_bytes``, commits each batch,
    and so does a replay with ``reread`` (the group would stay open across Dataverse requests)."""
    total = BatchResult()
    lines = 0
    started = time.perf_counter()
    dest = engine.destination
    # Not with re-reads: a group's write transaction would stay open across Dataverse requests.
    grouped = isinstance(dest, SqliteDestination) and commit_bytes > batch_bytes and reread is None
    groups = _Groups(path, engine, rejects, total, batch_size, batch_bytes, max_line_bytes, reread) if grouped else None
    if isinstance(dest, SqliteDestination):
        dest.start_import(IMPORT_WAL_PAGES)
    try:
        with path.open("rb", buffering=READ_BUFFER) as fh:
            for batch in batches(fh, batch_size, batch_bytes, max_line_bytes):
                lines += batch.count
                if groups is None:
                    _settle(_apply(engine, batch, reread), rejects, total)
                else:
                    groups.apply(batch)
                    if groups.size >= commit_bytes:
                        groups.commit()
                if progress is not None:
                    progress(fh.tell())
        if groups is not None:
            groups.commit()
    finally:
        if groups is not None:
            groups.close()  # after an error: the open group (outcomes not reported) rolls back
        if isinstance(dest, SqliteDestination):
            dest.finish_import()
    return ReplayReport(total, time.perf_counter() - started, lines)


class _Groups:
    """Commit groups for a single-connection SQLite replay: the write transactions of several batches
    are one (``SqliteDestination.hold_commits``), committed every ``commit_bytes`` of input.

    Per-batch commits were most of the gap to one hand-written transaction (BENCHMARKS.md, issue 14,
    third pass). A batch's outcomes (counts, failure log, unprocessable lines) are settled only once
    its group commits. When a write fails inside a group (a transient or environmental error, a
    transaction SQLite rolled back), the whole group rolls back and its batches are applied again
    from the file, one transaction each, exactly as without groups: the same outcomes, the same
    tables, the same counts; only the file offsets of a group's batches are kept for that, not their
    lines. DDL commits the open group first; a batch with entity metadata is applied outside groups.
    A crash mid-group loses that group's writes and nothing else; replaying the file again (from the
    start: replay is idempotent, every write version-guarded) applies them.
    """

    def __init__(
        self,
        path: Path,
        engine: SyncEngine,
        rejects: RejectFiles | None,
        total: BatchResult,
        batch_size: int,
        batch_bytes: int,
        max_line_bytes: int,
        reread: Reread | None,
    ) -> None:
        assert isinstance(engine.destination, SqliteDestination)
        self.dest: SqliteDestination = engine.destination
        self.path, self.engine, self.rejects, self.total = path, engine, rejects, total
        self.limits = (batch_size, batch_bytes, max_line_bytes)
        self.reread = reread
        self.pending: list[tuple[int, BatchResult]] = []  # (start offset, outcomes) not yet committed
        self.size = 0  # input bytes of the pending batches
        self.dest.hold_commits(cache_kib=GROUP_CACHE_KIB)

    def apply(self, batch: Batch) -> None:
        parsed = parse_lines(batch.lines, self.reread)
        batch.lines.clear()
        if parsed.metadata:
            # Entity metadata commits on its own, before the batch's records; redoing the batch
            # would find it applied (stale the second time). Such a batch is applied as without
            # groups, after the open group commits.
            self.commit()
            self.dest.release_commits()
            try:
                result = _finish(self.engine, parsed, batch)
            finally:
                self.dest.hold_commits(cache_kib=GROUP_CACHE_KIB)
            _settle(result, self.rejects, self.total)
            return
        commits = self.dest.group_commits
        try:
            result = _finish(self.engine, parsed, batch)
        except Exception:
            self._settle_committed(commits)
            if not self.dest.group_lost:
                self.commit()  # the batches before this one commit, as without groups
                raise
            self._redo(batch.start)  # raises again if this batch's error does without groups
            return
        self._settle_committed(commits)
        if self.dest.group_lost:  # the engine retried after the group rolled back
            self._redo(batch.start)
            return
        self.pending.append((batch.start, result))
        self.size += batch.size

    def commit(self) -> None:
        try:
            self.dest.commit_group()
        except Exception:
            if not self.dest.group_lost:
                raise
            self._redo(None)
            return
        self._settle_committed(None)

    def close(self) -> None:
        """Back to one commit per transaction; a group still open (after an error) rolls back."""
        self.dest.rollback_group()
        self.dest.group_lost = False
        self.dest.release_commits()

    def _settle_committed(self, commits: int | None) -> None:
        """Settle the pending batches if a group committed since ``commits`` (None: it just did)."""
        if commits is not None and self.dest.group_commits == commits:
            return
        for _, result in self.pending:
            _settle(result, self.rejects, self.total)
        self.pending.clear()
        self.size = 0

    def _redo(self, failed_at: int | None) -> None:
        """The group rolled back: apply its batches again (and the one at ``failed_at``, whose
        apply saw the failure), each in its own transaction, and settle them one by one."""
        self.dest.rollback_group()  # what the engine's retry may have written since
        self.dest.group_lost = False
        starts = [start for start, _ in self.pending]
        if failed_at is not None:
            starts.append(failed_at)
        self.pending.clear()
        self.size = 0
        if not starts:
            return
        log.warning("a write failed inside a commit group: applying its %s batches one by one", len(starts))
        self.dest.release_commits()
        try:
            with self.path.open("rb") as fh:
                fh.seek(starts[0])
                again = batches(fh, *self.limits)
                for start in starts:
                    batch = next(again, None)
                    if batch is None or batch.start != start:
                        raise RuntimeError(f"{self.path} changed during the replay: its batches cannot be read again")
                    _settle(_apply(self.engine, batch, self.reread), self.rejects, self.total)
        finally:
            self.dest.hold_commits(cache_kib=GROUP_CACHE_KIB)


# ------------------------------------------------------------------------------ several workers
def _exit_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the replaying process dies (Linux), and check once now:
    a worker must never go on writing for a replay nobody waits for."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _replay_part(
    path: str,
    dsn: str,
    layout: Layout,
    batch_size: int,
    index: int,
    workers: int,
    rejects_dir: str | None,
    write_lock: str | None,
    positions: Any,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    parent: int | None = None,
) -> tuple[BatchResult, int]:
    """One worker process: every ``workers``-th batch, starting with batch ``index``."""
    from shared.tuning import tune_for_throughput

    if parent is not None:
        _exit_with_parent(parent)
    tune_for_throughput()
    dest = open_destination(dsn, layout)
    if isinstance(dest, SqliteDestination):
        dest.start_import(IMPORT_WAL_PAGES, cache_kib=WORKER_CACHE_KIB)
        if write_lock is not None:
            dest.writer_lock = write_lock  # each write transaction takes turns; parsing and preparing do not
    engine = SyncEngine(dest)
    rejects = RejectFiles(Path(rejects_dir), shared=True) if rejects_dir else None
    total = BatchResult()
    lines = 0
    try:
        with open(path, "rb", buffering=READ_BUFFER) as fh:
            for i, batch in enumerate(batches(fh, batch_size, batch_bytes, max_line_bytes)):
                if i % workers != index:
                    continue
                if parent is not None and os.getppid() != parent:
                    raise SystemExit("the replaying process died; this worker stops")  # committed batches stay
                parsed = parse_lines(batch.lines)  # in parallel with the other workers' writes
                batch.lines.clear()
                result = engine.apply_parsed(parsed)
                if batch.too_long:
                    result.add_unprocessable(batch.too_long)
                _settle(result, rejects, total)
                lines += batch.count
                positions[index] = fh.tell()
    finally:
        if rejects is not None:
            rejects.close()
        if isinstance(dest, SqliteDestination):
            dest.finish_import()
        dest.close()
    return total, lines


def replay_parallel(
    path: Path,
    dsn: str,
    layout: Layout,
    *,
    workers: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rejects_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> ReplayReport:
    """Replay with several worker processes, each with its own connection and engine.

    Worker ``i`` applies batches ``i, i + workers, ...``: batches are applied out of file order and
    concurrently, which the engine makes safe (the latest version wins, tombstones keep deleted
    records deleted, every notification gets exactly one outcome; tests/integration/
    test_concurrency.py). Parsing and validation run in parallel; on SQLite, whose writers take
    turns anyway, the writes take turns on a lock file beside the database.
    """
    started = time.perf_counter()
    write_lock = f"{dsn[len('sqlite:///') :]}.replay-lock" if dsn.startswith("sqlite:///") else None
    ctx = multiprocessing.get_context("fork")  # the parent has every module loaded: workers start at once
    positions = ctx.Array("q", workers, lock=False)  # bytes read per worker, for the progress bar
    results: Any = ctx.SimpleQueue()
    procs = [
        ctx.Process(
            target=_run_part,
            args=(results, str(path), dsn, layout, batch_size, i, workers,
                  str(rejects_dir) if rejects_dir else None, write_lock, positions,
                  batch_bytes, max_line_bytes, os.getpid()),
            name=f"des-replay-{i}",
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    total = BatchResult()
    lines = 0
    reported: set[int] = set()
    failure: BaseException | None = None
    try:
        while len(reported) < workers:
            if results.empty():
                if progress is not None:
                    progress(min(positions[i] for i in range(workers) if i not in reported))
                dead = [i for i, proc in enumerate(procs) if i not in reported and proc.exitcode not in (None, 0)]
                if dead and results.empty():
                    raise RuntimeError(f"replay worker {dead[0]} died (exit code {procs[dead[0]].exitcode})")
                time.sleep(0.05)
                continue
            index, outcome, payload = results.get()
            reported.add(index)
            if outcome == "error":
                failure = failure or payload
                for proc in procs:  # the others' committed batches stay; replaying again is safe
                    proc.terminate()
                break
            part, n = payload
            total.merge(part)
            lines += n
    finally:
        for proc in procs:
            proc.join()
    if failure is not None:
        raise failure
    return ReplayReport(total, time.perf_counter() - started, lines)


def _run_part(results: Any, *args: Any) -> None:
    index = args[4]
    try:
        results.put((index, "ok", _replay_part(*args)))
    except BaseException as exc:  # reported to the parent, which re-raises it
        try:
            results.put((index, "error", exc))
        except Exception:  # an exception that does not pickle
            results.put((index, "error", RuntimeError(f"replay worker {index}: {exc!r}")))
