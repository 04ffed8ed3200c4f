"""``des api``: the admin HTTP API served locally by uvicorn (in Azure the function app serves it)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import replace

from shared import config as S

EXIT_USAGE = 2


def serve(args: argparse.Namespace) -> int:
    """``des api``: the admin API on uvicorn, with the embedded store in the working directory."""
    import uvicorn

    from shared.api import build_app

    if not os.environ.get(S.ADMIN_API_KEY):
        print(
            f"des api: set {S.ADMIN_API_KEY} first (no anonymous admin access), for example\n"
            f"  export {S.ADMIN_API_KEY}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            file=sys.stderr,
        )
        return EXIT_USAGE
    config = S.AppConfig.from_env()
    if args.store:
        config = replace(config, profiles=replace(config.profiles, store_dsn=args.store))
    store = config.profiles.store_dsn
    from shared.destinations import redact

    print(
        f"des api: admin store {redact(store)}; console http://{args.host}:{args.port}/console, "
        f"API docs http://{args.host}:{args.port}/docs?code=<key>",
        file=sys.stderr,
    )
    from shared.root import api_root

    # The profile runtime the function app would build: with AzureWebJobsStorage set (Azurite
    # locally), the failures routes and profile deletion reach Blob storage too.
    built = api_root(config)
    root = functools.cache(lambda: built)
    worker = None
    if built.source is not None and config.source.local_worker:
        from shared.pull.worker import LocalWorker

        # No Functions host here: the Dataverse source's page units and poll run in this process.
        worker = LocalWorker(built.source, poll_seconds=config.dataverse.poll_interval_seconds).start()
        print(f"des api: Dataverse source worker on (poll every {config.dataverse.poll_interval_seconds} s; "
              f"{S.SOURCE_LOCAL_WORKER}=false turns it off)", file=sys.stderr)  # fmt: skip
    try:
        uvicorn.run(build_app(root), host=args.host, port=args.port, access_log=False, log_level="info")
    finally:
        if worker is not None:
            worker.stop()
        built.close()
    return 0
