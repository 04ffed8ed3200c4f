"""``des api``: the admin HTTP API served locally by uvicorn (in Azure the function app serves it)."""

from __future__ import annotations

import argparse
import os
import sys

from shared import settings as S

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
    if args.store:
        os.environ[S.ADMIN_STORE] = args.store
    store = os.environ.get(S.ADMIN_STORE) or S.DEFAULT_ADMIN_STORE
    from shared.destinations import redact

    print(f"des api: admin store {redact(store)}; http://{args.host}:{args.port}/docs?code=<key>", file=sys.stderr)
    from shared.profiles.runtime import runtime

    # The same process-wide runtime the function app uses: with AzureWebJobsStorage set (Azurite
    # locally), the failures routes and profile deletion reach Blob storage too.
    uvicorn.run(build_app(runtime=runtime), host=args.host, port=args.port, access_log=False, log_level="info")
    return 0
