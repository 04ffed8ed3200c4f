"""``des sync``: the Dataverse source in one process, applying straight through the engine to a DSN.

``des sync --dataverse URL --destination DSN --entities account,contact [--store DSN] [--page-size N]
[--once]`` runs the same runner as the function app (one page per unit, the cursor in the admin
store), with the engine as the sink instead of Service Bus. ``--once``: the initial sync, or one
delta pass from the cursor saved in ``--store``, per entity, then exit; without it, a delta pass per
entity every ``--interval`` seconds until interrupted. The last stdout line is one JSON object with
the counts; a progress bar per entity goes to stderr on a terminal.

Exit codes (as ``des replay``): 0 done (failed records counted and written to ``--rejects-dir``);
2 usage (bad DSN, prefix, entity, or an entity that cannot be synced: change tracking off, no such
table, no privilege); 3 cannot connect (destination, admin store, or Dataverse refused the token);
4 transient (the destination or Dataverse kept failing: cursors stay on the last delivered page,
running again resumes there).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE, EXIT_CONNECTION, EXIT_TRANSIENT = 0, 2, 3, 4
DEFAULT_STORE = "sqlite:///des-admin.db"
_ENTITY = re.compile(r"^[a-z][a-z0-9_]{0,127}$")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataverse", required=True, help="environment URL (https://org.crm.dynamics.com) or any base "
                   "whose /api/data/v9.2/ serves the Web API")  # fmt: skip
    p.add_argument("--destination", required=True, help="sqlite:///path.db, postgresql://..., mssql://...")
    p.add_argument("--entities", required=True, help="comma-separated logical names: account,contact")
    p.add_argument("--store", default=None, help=f"admin store DSN for cursors (default: $DES_ADMIN_STORE or "
                   f"{DEFAULT_STORE})")  # fmt: skip
    p.add_argument("--page-size", type=int, default=None, help="odata.maxpagesize, 1..5000 (default 5000)")
    p.add_argument("--once", action="store_true", help="initial sync or one delta pass per entity, then exit")
    p.add_argument("--interval", type=float, default=None, help="seconds between delta passes (default 60)")
    p.add_argument("--schema", default=None, help="destination schema (PostgreSQL default: public)")
    p.add_argument("--prefix", default="", help="table prefix, alphanumeric, fewer than 15 characters")
    p.add_argument("--write-delete-log", action="store_true", help="append applied deletes to <prefix>_DeleteLog")
    p.add_argument("--rejects-dir", default="des-rejects", help="where failures and unprocessables are written")
    p.add_argument("--profile-id", default=None, help="cursor key (default: derived from --dataverse and "
                   "--destination)")  # fmt: skip
    p.add_argument("--organization-id", default=None, help="organization id (default: read with WhoAmI)")


def add_parser(sub: Any) -> None:
    """Register ``des sync`` on the ``des`` command line (shared/cli.py)."""
    p = sub.add_parser("sync", help="sync Dataverse tables into a database through change tracking")
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="des sync", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    return run(args)


def _say(message: str) -> None:
    print(f"des sync: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from shared.destinations import (
        ConnectionFailed,
        Layout,
        LayoutError,
        TransientDestinationError,
        UnsupportedDestination,
        open_destination,
        redact,
    )
    from shared.engine.engine import SyncEngine
    from shared.rejects import RejectFiles
    from shared.source.dataverse.client import AccessDenied, DataverseClient, SourceUnavailable
    from shared.source.dataverse.cursors import CursorStore
    from shared.source.dataverse.runner import EntityFailed, SourceRunner
    from shared.source.dataverse.settings import DataverseSettings, SettingsError
    from shared.source.dataverse.sink import EngineSink
    from shared.store import StoreError, StoreUnavailable, open_store

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    entities = [e.strip() for e in args.entities.split(",") if e.strip()]
    bad = [e for e in entities if not _ENTITY.match(e)]
    if not entities or bad:
        _say(f"--entities needs logical names (lower case letters, digits, _); got {bad or args.entities!r}")
        return EXIT_USAGE
    if not args.dataverse.startswith(("http://", "https://")):
        _say("--dataverse must be an http(s) URL such as https://org.crm.dynamics.com")
        return EXIT_USAGE
    try:
        settings = DataverseSettings.from_env(os.environ)
        if args.page_size is not None:
            if not 1 <= args.page_size <= 5000:
                raise SettingsError("--page-size must be between 1 and 5000")
            settings = replace(settings, page_size=args.page_size)
        if args.interval is not None:
            settings = replace(settings, poll_interval_seconds=max(1, int(args.interval)))
    except SettingsError as exc:
        _say(str(exc))
        return EXIT_USAGE
    profile_id = args.profile_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"des-sync|{args.dataverse}|{args.destination}"))
    try:
        uuid.UUID(profile_id)
    except ValueError:
        _say("--profile-id must be a GUID")
        return EXIT_USAGE
    store_dsn = args.store or os.environ.get("DES_ADMIN_STORE") or DEFAULT_STORE
    try:
        layout = Layout(args.schema, args.prefix or "", args.write_delete_log)
        dest = open_destination(args.destination, layout)
    except (LayoutError, UnsupportedDestination) as exc:
        _say(str(exc))
        return EXIT_USAGE
    except ConnectionFailed as exc:
        _say(str(exc))
        return EXIT_CONNECTION
    try:
        store = open_store(store_dsn)
    except StoreUnavailable as exc:
        dest.close()
        _say(str(exc))
        return EXIT_CONNECTION
    except StoreError as exc:
        dest.close()
        _say(str(exc))
        return EXIT_USAGE
    rejects = RejectFiles(Path(args.rejects_dir))
    sink = EngineSink(SyncEngine(dest), rejects=rejects, metrics=store, profile_id=profile_id)
    client = DataverseClient(args.dataverse, settings)
    runner = SourceRunner(cursors=CursorStore(store), client=client, sink=sink, profile_id=profile_id,
                          settings=settings, organization_id=args.organization_id)  # fmt: skip
    totals = {"upserts": 0, "deletes": 0, "pages": 0, "rows": 0}
    failed_entities: dict[str, str] = {}
    started = time.perf_counter()
    code = EXIT_OK

    def one_round(progress: Callable[[str, Any], None] | None) -> None:
        for entity in entities:
            if entity in failed_entities:
                continue
            try:
                for r in _pass(runner, entity):
                    totals["upserts"] += r.upserts
                    totals["deletes"] += r.deletes
                    totals["pages"] += r.pages
                    totals["rows"] += r.rows
                    if progress is not None:
                        progress(entity, r)
            except EntityFailed as exc:
                failed_entities[entity] = str(exc)
                _say(str(exc))

    try:
        with _progress(entities) as progress:
            while True:
                one_round(progress)
                if args.once or len(failed_entities) == len(entities):
                    break
                time.sleep(settings.poll_interval_seconds)
    except KeyboardInterrupt:
        _say("interrupted; cursors stay on the last delivered page")
    except TransientDestinationError as exc:
        _say(f"destination {redact(args.destination)} kept failing ({exc}); cursors stay on the last delivered "
             "page, and running again resumes there")  # fmt: skip
        code = EXIT_TRANSIENT
    except ConnectionFailed as exc:
        _say(str(exc))
        code = EXIT_CONNECTION
    except AccessDenied as exc:
        _say(f"Dataverse refused the request: {exc}")
        code = EXIT_CONNECTION
    except SourceUnavailable as exc:
        _say(f"{exc}; running again resumes from the last delivered page")
        code = EXIT_TRANSIENT
    except StoreUnavailable as exc:
        _say(str(exc))
        code = EXIT_TRANSIENT
    finally:
        client.close()
        rejects.close()
        dest.close()
        store.close()
    if code == EXIT_OK and failed_entities:
        code = EXIT_USAGE
    total = sink.total
    summary: dict[str, Any] = {
        **total.counts(), **totals, "seconds": round(time.perf_counter() - started, 3),
        "entities": {e: ("failed" if e in failed_entities else "ok") for e in entities},
    }  # fmt: skip
    if total.failed or total.unprocessable:
        summary["rejects_dir"] = str(Path(args.rejects_dir).resolve())
    print(json.dumps(summary))
    return code


def _pass(runner: Any, entity: str) -> Any:
    """Units of work until the entity completes a pass (a generator, so progress shows per page)."""
    while True:
        r = runner.run_page(entity)
        yield r
        if r.pass_complete:
            return


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(entities: Sequence[str]) -> Any:
    """A rich progress bar per entity on a terminal (stderr); nothing otherwise."""
    if not sys.stderr.isatty():
        return _NoBar()
    from contextlib import contextmanager

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    @contextmanager
    def bars() -> Any:
        with Progress(TextColumn("{task.description:<24}"), BarColumn(), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn(), console=Console(stderr=True)) as bar:  # fmt: skip
            tasks = {e: bar.add_task(e, total=None, info="waiting") for e in entities}
            counts = dict.fromkeys(entities, 0)

            def update(entity: str, r: Any) -> None:
                counts[entity] += r.rows
                bar.update(tasks[entity], info=f"{counts[entity]} rows, {r.next_phase.value}")
                if r.pass_complete:
                    bar.update(tasks[entity], total=1, completed=1)

            yield update

    return bars()
