"""Run the SQLite baseline or the replay once over a bench file, for instruction counting:

    python -m shared bench --notifications 200000 --repeat 1 --workdir /tmp/w   # writes the file
    F=/tmp/w/bench-200000-20.jsonl
    valgrind --tool=callgrind --callgrind-out-file=cg.base python benchmarks/one_run.py base $F
    valgrind --tool=callgrind --callgrind-out-file=cg.ours python benchmarks/one_run.py ours $F
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python benchmarks/one_run.py none x  # imports
    python benchmarks/one_run.py ours $F 2097152   # optional third argument: replay's batch bytes
    python benchmarks/one_run.py ours $F 2097152 0   # optional fourth: commit bytes (0: every batch)
    python benchmarks/one_run.py base-pg $F postgresql://u:p@127.0.0.1/db   # PostgreSQL COPY baseline
    python benchmarks/one_run.py ours-pg $F postgresql://u:p@127.0.0.1/db   # replay into schema benchours
    # optional fourth argument for ours-pg: batch bytes

Callgrind counts instructions, so the totals repeat whatever else the machine is doing; subtract the
`none` run (imports) from both. `callgrind_annotate cg.ours` shows where they go.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from shared.destinations import Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.replay import DEFAULT_BATCH_BYTES, DEFAULT_COMMIT_BYTES, replay
from shared.tools.bench import _remove_db, _reset_pg_schema, baseline_postgres, baseline_sqlite
from shared.tuning import tune_for_throughput


def main() -> None:
    which, data = sys.argv[1], Path(sys.argv[2])
    tune_for_throughput()  # as the CLI does, for both
    work = Path(tempfile.mkdtemp(prefix="des-one-"))
    if which == "base":
        baseline_sqlite(data, work / "base.db", 20, 5000)
    elif which == "ours":
        db = work / "ours.db"
        _remove_db(db)
        dest = open_destination(f"sqlite:///{db}", Layout())
        try:
            batch_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else DEFAULT_BATCH_BYTES
            commit_bytes = int(sys.argv[4]) if len(sys.argv) > 4 else DEFAULT_COMMIT_BYTES
            replay(data, SyncEngine(dest), batch_size=5000, batch_bytes=batch_bytes, commit_bytes=commit_bytes)
        finally:
            dest.close()
    elif which == "base-pg":
        baseline_postgres(data, sys.argv[3], 20, 5000)
    elif which == "ours-pg":
        _reset_pg_schema(sys.argv[3], "benchours")
        dest = open_destination(sys.argv[3], Layout(schema="benchours"))
        try:
            batch_bytes = int(sys.argv[4]) if len(sys.argv) > 4 else DEFAULT_BATCH_BYTES
            replay(data, SyncEngine(dest), batch_size=5000, batch_bytes=batch_bytes)
        finally:
            dest.close()


if __name__ == "__main__":
    main()
