"""Command line: ``python -m shared`` (installed as ``des``).

Not part of the function app (which never imports it). Subcommands built on tooling (demo, bench,
api, profiles, failures, metrics) import their :mod:`shared.tools` module inside the subcommand, so
``des replay`` loads neither rich (unless stderr is a terminal) nor uvicorn nor httpx."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import config as S
from shared.destinations import (
    ConnectionFailed,
    Layout,
    LayoutError,
    TransientDestinationError,
    UnsupportedDestination,
    open_destination,
    redact,
)
from shared.destinations.redaction import install_log_redaction, redact_text
from shared.replay import DEFAULT_COMMIT_BYTES, DEFAULT_MAX_LINE_BYTES

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger("shared.cli")

EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_TRANSIENT = 4
DEFAULT_WORKERS = max(1, min(2, os.cpu_count() or 1))


def _replay(args: argparse.Namespace) -> int:
    from shared.engine.engine import SyncEngine
    from shared.rejects import RejectFiles
    from shared.replay import ReplayReport, replay, replay_parallel

    path = Path(args.input)
    if not path.is_file():
        print(f"des replay: input file {str(path)!r} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if args.batch_size < 1:
        print("des replay: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.workers is None:
        args.workers = 1 if args.dataverse else DEFAULT_WORKERS
    if args.workers < 1:
        print("des replay: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.dataverse and args.workers != 1:
        print("des replay: --dataverse re-reads through one client: use --workers 1", file=sys.stderr)
        return EXIT_USAGE
    if args.dataverse and not args.dataverse.startswith(("http://", "https://")):
        print("des replay: --dataverse must be an http(s) URL such as https://org.crm.dynamics.com", file=sys.stderr)
        return EXIT_USAGE
    if args.batch_bytes < 1 or args.max_line_bytes < 1:
        print("des replay: --batch-bytes and --max-line-bytes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.commit_bytes < 0:
        print("des replay: --commit-bytes must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    try:
        layout = Layout(args.schema, args.prefix or "", args.write_delete_log)
        dest = open_destination(args.destination, layout)
    except (LayoutError, UnsupportedDestination) as exc:
        print(f"des replay: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectionFailed as exc:
        print(f"des replay: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_CONNECTION
    if args.workers > 1:
        dest.close()  # opened to fail fast on a bad DSN or credentials; each worker opens its own
    source: tuple[Any, Any] | None = None  # (Dataverse client, re-read source)
    if args.dataverse:
        made = _replay_source(args, dest)
        if isinstance(made, int):
            dest.close()
            return made
        source = made
    size = path.stat().st_size
    rejects_dir = Path(args.rejects_dir)
    rejects = RejectFiles(rejects_dir) if args.workers == 1 else None

    def run(progress: Callable[[int], None] | None) -> ReplayReport:
        if rejects is None:
            return replay_parallel(
                path, args.destination, layout, workers=args.workers, batch_size=args.batch_size,
                rejects_dir=rejects_dir, progress=progress, batch_bytes=args.batch_bytes,
                max_line_bytes=args.max_line_bytes,
            )
        return replay(
            path, SyncEngine(dest), batch_size=args.batch_size, rejects=rejects, progress=progress,
            batch_bytes=args.batch_bytes, max_line_bytes=args.max_line_bytes,
            reread=source[1] if source is not None else None, commit_bytes=args.commit_bytes,
        )

    try:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=_stderr_console(),
            ) as bar:
                task = bar.add_task("replaying", total=size)
                report = run(lambda pos: bar.update(task, completed=min(pos, size)))
        else:
            report = run(None)
    except TransientDestinationError as exc:
        print(
            f"des replay: destination {redact(args.destination)} kept failing ({redact_text(str(exc))}); "
            "batches that committed stay applied, and replaying again is safe",
            file=sys.stderr,
        )
        return EXIT_TRANSIENT
    except ConnectionFailed as exc:
        print(f"des replay: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_CONNECTION
    except Exception as exc:
        code = _dataverse_exit(exc) if source is not None else None
        if code is None:
            raise
        print(f"des replay: Dataverse {args.dataverse}: {redact_text(str(exc))}; batches that committed stay "
              "applied, and replaying again is safe", file=sys.stderr)  # fmt: skip
        return code
    finally:
        if source is not None:
            source[0].close()
        if rejects is not None:
            rejects.close()
            dest.close()
    summary = report.summary()
    if report.result.failed or report.result.unprocessable:
        summary["rejects_dir"] = str(Path(args.rejects_dir).resolve())
    print(json.dumps(summary))
    return 0


def _dataverse_exit(exc: BaseException) -> int | None:
    """The exit code of a Dataverse error (as ``des sync``'s): refused 3, unavailable 4; None: not one."""
    from shared.source.dataverse.client import AccessDenied, DataverseError, ExpiredToken

    if isinstance(exc, AccessDenied | ExpiredToken):
        return EXIT_CONNECTION
    if isinstance(exc, DataverseError):
        return EXIT_TRANSIENT if exc.transient else EXIT_CONNECTION
    return None


def _replay_source(args: argparse.Namespace, dest: Any) -> tuple[Any, Any] | int:
    """``--dataverse``: (client, re-read source), or an exit code. The token as ``des sync`` gets it:
    DES_DATAVERSE_TOKEN, else azure-identity for ``<URL>/.default``."""
    from shared.source.dataverse.client import DataverseClient
    from shared.source.dataverse.push_reread import environment_reread
    from shared.source.dataverse.settings import DataverseSettings, SettingsError

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        settings = DataverseSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"des replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = DataverseClient(args.dataverse, settings)
    try:
        return client, environment_reread(client, dest, args.organization_id)
    except Exception as exc:
        client.close()
        code = _dataverse_exit(exc)
        if code is None:
            raise
        print(f"des replay: Dataverse {args.dataverse}: {redact_text(str(exc))}", file=sys.stderr)
        return code


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _demo(args: argparse.Namespace) -> int:
    if args.stream:
        from shared.tools.demo import run_stream_demo

        return run_stream_demo(Path(args.database), seed=args.seed, records=args.records or 2000)
    from shared.tools.demo_dataverse import run_demo

    return run_demo(Path(args.database), seed=args.seed, records=args.records or 1000)


def _bench(args: argparse.Namespace) -> int:
    from shared.tools.bench import run_bench

    return run_bench(args)


def _simulate_dataverse(args: argparse.Namespace) -> int:
    from shared.tools.dataverse_sim.cli import main as simulator_main

    return simulator_main(list(args.rest))


_PASS_THROUGH = ("simulate", "dataverse")


def _schema(args: argparse.Namespace) -> int:
    from shared.contract.schema import schema_json

    print(schema_json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="des", description="Data Export Service replacement: replicate Dataverse changes into SQL."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("replay", help="apply a file of Service Bus message bodies (one per line)")
    r.add_argument("input", help="JSON Lines file: each line one message body (a notification or an array)")
    r.add_argument("--destination", required=True, help="sqlite:///path.db or postgresql://user:pw@host:port/db")
    r.add_argument("--schema", default=None, help="destination schema (PostgreSQL default: public)")
    r.add_argument("--prefix", default="", help="table prefix, alphanumeric, fewer than 15 characters")
    r.add_argument("--write-delete-log", action="store_true", help="append applied deletes to <prefix>_DeleteLog")
    r.add_argument("--batch-size", type=int, default=5000, help="message bodies per batch (default 5000)")
    r.add_argument(
        "--batch-bytes", type=int, default=S.DEFAULT_BATCH_BYTES,
        help="at most this many bytes of message bodies per batch (default 2 MiB): bounds memory per worker",
    )
    r.add_argument(
        "--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
        help="a longer line is unprocessable, never read whole (default 16 MiB)",
    )
    r.add_argument(
        "--commit-bytes", type=int, default=DEFAULT_COMMIT_BYTES,
        help="SQLite, one worker: commit the writes of this many bytes of input together (default 64 MiB; "
        "0: every batch). A batch counts once its group commits; a write failing inside a group redoes the "
        "group one batch per transaction. After a crash, replay the file again (replay is idempotent)",
    )
    r.add_argument("--rejects-dir", default="des-rejects", help="where failures and unprocessables are written")
    r.add_argument(
        "--workers", type=int, default=None,
        help=f"worker processes applying batches concurrently (default {DEFAULT_WORKERS}: one per core, at most 2; "
        "1 with --dataverse)",
    )
    r.add_argument(
        "--dataverse", default=None, metavar="URL",
        help="the environment (https://org.crm.dynamics.com) that Dataverse messages without a full post-image are "
        "re-read from; token from DES_DATAVERSE_TOKEN, else azure-identity (as des sync)",
    )
    r.add_argument("--organization-id", default=None, help="with --dataverse: its organization id (default: WhoAmI)")
    r.set_defaults(func=_replay)

    d = sub.add_parser("demo", help="the DES story: a simulated Dataverse environment synced into ./des-demo.db "
                       "through the admin API (initial sync, live changes), then checked")  # fmt: skip
    d.add_argument("--database", default="des-demo.db")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--records", type=int, default=None, help="accounts in the environment (default 1000; with "
                   "--stream: records per entity, default 2000)")  # fmt: skip
    d.add_argument("--stream", action="store_true", help="the Service Bus path instead: a generated notification "
                   "stream (duplicated, reordered, hostile bodies, blob paths on Azurite) through the "
                   "handler")  # fmt: skip
    d.set_defaults(func=_demo)

    b = sub.add_parser("bench", help="measure replay throughput against hand-written baselines")
    b.add_argument("--notifications", type=int, default=200_000)
    b.add_argument("--attributes", type=int, default=20)
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--batch-size", type=int, default=5000)
    b.add_argument(
        "--postgres", default=None, help="PostgreSQL DSN to bench too (schemas benchbase/benchours are reset)"
    )
    b.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="replay workers to bench besides 1")
    b.add_argument("--rss-notifications", type=int, default=0, help="also measure peak RSS replaying this many")
    b.add_argument("--workdir", default=None)
    b.set_defaults(func=_bench)

    s = sub.add_parser("schema", help="print the JSON Schema of the wire contract")
    s.set_defaults(func=_schema)

    sim = sub.add_parser("simulate", help="serve a simulator of a source (named as one), for tests and the demo")
    sims = sim.add_subparsers(dest="simulator", required=True)
    dv = sims.add_parser(
        "dataverse", help="a simulated Dataverse Web API (docs/dataverse-simulator.md)", add_help=False
    )
    dv.set_defaults(func=_simulate_dataverse)  # main() hands every later argument to the simulator's own parser

    from shared.source.dataverse.cli import add_parser as add_sync  # des sync (the Dataverse source)

    add_sync(sub)
    _add_admin_commands(sub)
    return parser


def _api(args: argparse.Namespace) -> int:
    from shared.tools.serve import serve

    return serve(args)


def _profiles(args: argparse.Namespace) -> int:
    from shared.tools.api_client import profiles

    return profiles(args)


def _failures(args: argparse.Namespace) -> int:
    from shared.tools.api_client import failures

    return failures(args)


def _metrics(args: argparse.Namespace) -> int:
    from shared.tools.api_client import metrics

    return metrics(args)


def _add_admin_commands(sub: Any) -> None:
    """``api`` (serve the admin API locally) and its client: ``profiles``, ``failures``, ``metrics``."""
    a = sub.add_parser("api", help="serve the admin HTTP API locally (uvicorn)")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=7072)
    a.add_argument(
        "--store", default=None, help=f"admin store DSN (default ${S.ADMIN_STORE} or {S.DEFAULT_ADMIN_STORE})"
    )
    a.set_defaults(func=_api)

    p = sub.add_parser("profiles", help=f"manage export profiles through the admin API (${S.API_URL})")
    pa = p.add_subparsers(dest="action", required=True)
    ls = pa.add_parser("list", help="list profiles")
    ls.add_argument("--organization", default=None)
    ls.add_argument("--state", choices=["draft", "active", "inactive"], default=None)
    for name in ("show", "delete", "activate", "deactivate", "test"):
        pa.add_parser(name, help=f"{name} a profile").add_argument("id")
    c = pa.add_parser("create", help="create a profile from a JSON file (- for stdin)")
    c.add_argument("file")
    c.add_argument("--activate", action="store_true", help="create and activate")
    u = pa.add_parser("update", help="replace a profile's fields from a JSON file")
    u.add_argument("id")
    u.add_argument("file")
    v = pa.add_parser("validate", help="check a profile JSON file, destination included")
    v.add_argument("file")
    p.set_defaults(func=_profiles)

    f = sub.add_parser("failures", help="download or re-sync a profile's failure log")
    fa = f.add_subparsers(dest="action", required=True)
    dl = fa.add_parser("download", help="download failure-log entries (CSV or JSON)")
    dl.add_argument("id")
    dl.add_argument("--format", choices=["csv", "json"], default="csv")
    dl.add_argument("--output", "-o", default="-", help="file to write (default stdout)")
    rs = fa.add_parser("resync", help="re-apply failed records")
    rs.add_argument("id")
    rs.add_argument("--entity", action="append", help="only this entity (repeatable)")
    rs.add_argument("--record", action="append", help="only this record id (repeatable)")
    ln = fa.add_parser("links", help="SAS links of the failure-log blobs (Azure)")
    ln.add_argument("id")
    for parser in (dl, rs, ln):
        parser.add_argument("--start", default=None, help="ISO 8601 (default: 24 hours before --end)")
        parser.add_argument("--end", default=None, help="ISO 8601 (default: now)")
    f.set_defaults(func=_failures)

    m = sub.add_parser("metrics", help="a profile's sync metrics (or the service's, without an id)")
    m.add_argument("id", nargs="?", default=None)
    m.add_argument("--source", action="store_true", help="the profile's Dataverse source per table: initial "
                   "sync state, rows read, pages, last poll, source lag, next poll")  # fmt: skip
    m.set_defaults(func=_metrics)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if tuple(argv[:2]) == _PASS_THROUGH:
        return _simulate_dataverse(argparse.Namespace(rest=argv[2:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("replay", "demo", "bench"):
        from shared.tuning import tune_for_throughput

        tune_for_throughput()
    install_log_redaction()  # every log line through the one redaction
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args))
