"""Where a PostgreSQL replay's time goes, per statement kind: the backend's CPU (from
/proc/<pid>/schedstat, the server runs on this machine) and the client's thread CPU around each
statement, COPY and psycopg's own BEGIN/SAVEPOINT/COMMIT, summed over a whole replay:

    python benchmarks/pg_statements.py F postgresql://u:p@127.0.0.1/db    # replays into schema benchours

Run it against another checkout with PYTHONPATH=<its root> (from outside this worktree) for an A/B.
It wraps psycopg's cursor methods; the destination's code is not touched.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psycopg import Connection, Cursor

from shared.destinations import Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.replay import replay
from shared.tools.bench import _reset_pg_schema
from shared.tuning import tune_for_throughput

STATS: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # calls, backend s, client s


def backend_cpu(conn: Connection[Any]) -> float:
    with open(f"/proc/{conn.info.backend_pid}/schedstat") as fh:
        return int(fh.read().split()[0]) / 1e9


def kind(query: Any, conn: Connection[Any]) -> str:
    text = query if isinstance(query, str | bytes) else query.as_string(conn)
    text = text.decode() if isinstance(text, bytes) else text
    return " ".join(text.split()[:2])[:40]


def count(key: str, backend: float, client: float) -> None:
    s = STATS[key]
    s[0] += 1
    s[1] += backend
    s[2] += client


def instrument() -> None:
    execute, copy, exec_command = Cursor.execute, Cursor.copy, Connection._exec_command

    def timed_execute(self: Cursor[Any], query: Any, params: Any = None, **kw: Any) -> Any:
        b, c = backend_cpu(self.connection), time.thread_time()
        try:
            return execute(self, query, params, **kw)
        finally:
            count(kind(query, self.connection), backend_cpu(self.connection) - b, time.thread_time() - c)

    @contextmanager
    def timed_copy(self: Cursor[Any], statement: Any, *a: Any, **kw: Any) -> Iterator[Any]:
        b, c = backend_cpu(self.connection), time.thread_time()
        with copy(self, statement, *a, **kw) as cp:
            yield cp
        count("<COPY>", backend_cpu(self.connection) - b, time.thread_time() - c)

    def timed_command(self: Connection[Any], command: Any, *a: Any) -> Generator[Any, Any, Any]:
        b, c = backend_cpu(self), time.thread_time()
        result = yield from exec_command(self, command, *a)
        count("<psycopg> " + kind(command, self), backend_cpu(self) - b, time.thread_time() - c)
        return result

    Cursor.execute = timed_execute  # type: ignore[method-assign]
    Cursor.copy = timed_copy  # type: ignore[method-assign,assignment]
    Connection._exec_command = timed_command  # type: ignore[method-assign,assignment]


def main() -> None:
    data, dsn = Path(sys.argv[1]), sys.argv[2]
    tune_for_throughput()
    instrument()
    _reset_pg_schema(dsn, "benchours")
    STATS.clear()
    dest = open_destination(dsn, Layout(schema="benchours"))
    try:
        report = replay(data, SyncEngine(dest))
    finally:
        dest.close()
    print(report.result.counts())
    total_b = total_c = 0.0
    for key, (n, b, c) in sorted(STATS.items(), key=lambda kv: -kv[1][1]):
        total_b, total_c = total_b + b, total_c + c
        print(f"backend {b:7.3f} s  client {c:7.3f} s  {int(n):5d}  {key}")
    print(f"total   {total_b:7.3f} s  client {total_c:7.3f} s")


if __name__ == "__main__":
    main()
