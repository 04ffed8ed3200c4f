"""The command line's admin commands: ``des api`` serves the admin API locally, and ``des profiles``,
``des failures``, ``des metrics`` are a thin client of it (or of the function app in Azure).

The client finds the API in ``DES_API_URL`` (default http://127.0.0.1:7072) and the key in
``DES_ADMIN_API_KEY`` (sent as ``x-functions-key``: the local admin key, or a function key in
Azure). Output is the API's JSON, pretty-printed; errors print the API's reason and exit non-zero.
Long failure-log downloads show progress on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared import config as S

EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_API = 5


class ClientError(Exception):
    def __init__(self, message: str, code: int = EXIT_API) -> None:
        super().__init__(message)
        self.code = code


def _base_url() -> str:
    return (os.environ.get(S.API_URL) or S.DEFAULT_API_URL).rstrip("/")


def _client(timeout: float = 60.0) -> Any:
    import httpx

    key = os.environ.get(S.ADMIN_API_KEY)
    if not key:
        raise ClientError(f"set {S.ADMIN_API_KEY} to the admin key (a function key in Azure)", EXIT_USAGE)
    return httpx.Client(base_url=_base_url(), headers={"x-functions-key": key}, timeout=timeout)


def _call(method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    with _client() as http:
        try:
            r = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the admin API at {_base_url()}: {exc}", EXIT_CONNECTION) from exc
    return _result(r)


def _result(r: Any) -> Any:
    try:
        body = r.json()
    except ValueError:
        body = r.text
    if r.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else body
        if isinstance(detail, list):
            detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
        checks = body.get("checks") if isinstance(body, dict) else None
        extra = ""
        if checks:
            extra = "\n" + "\n".join(f"  {'ok ' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}" for c in checks)
        raise ClientError(f"{r.status_code}: {detail}{extra}")
    return body


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2, ensure_ascii=False))


def _load_body(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ClientError(f"{path}: not valid JSON: {exc}", EXIT_USAGE) from exc


# --------------------------------------------------------------------------------- commands
def _profiles(args: argparse.Namespace) -> int:
    action = args.action
    if action == "list":
        params = {k: v for k, v in (("organizationId", args.organization), ("state", args.state)) if v}
        _print(_call("GET", "/profiles", params=params))
    elif action == "show":
        _print(_call("GET", f"/profiles/{args.id}"))
    elif action == "create":
        body = _load_body(args.file)
        if args.activate:
            body["state"] = "active"
        _print(_call("POST", "/profiles", json=body))
    elif action == "update":
        _print(_call("PUT", f"/profiles/{args.id}", json=_load_body(args.file)))
    elif action == "delete":
        _print(_call("DELETE", f"/profiles/{args.id}"))
    elif action in ("activate", "deactivate"):
        _print(_call("POST", f"/profiles/{args.id}/{action}"))
    elif action == "validate":
        body = _call("POST", "/profiles/validate", json=_load_body(args.file))
        _print(body)
        return 0 if body.get("valid") else 1
    elif action == "test":
        body = _call("GET", f"/profiles/{args.id}/test")
        _print(body)
        return 0 if body.get("valid") else 1
    return 0


def _metrics(args: argparse.Namespace) -> int:
    _print(_call("GET", f"/profiles/{args.id}/metrics" if args.id else "/metrics"))
    return 0


def _failures(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("start", args.start), ("end", args.end)) if v}
    if args.action == "resync":
        body: dict[str, Any] = {"entities": args.entity or [], "recordIds": args.record or []}
        body.update(params)
        _print(_call("POST", f"/profiles/{args.id}/failures/resync", json=body))
        return 0
    if args.action == "links":
        _print(_call("GET", f"/profiles/{args.id}/failures/links", params=params))
        return 0
    return _download(args.id, params, args.format, args.output)


def _download(profile_id: str, params: dict[str, str], fmt: str, output: str) -> int:
    import httpx

    accept = "text/csv" if fmt == "csv" else "application/json"
    out = sys.stdout.buffer if output == "-" else Path(output).open("wb")  # noqa: SIM115
    written = 0
    try:
        with _client(timeout=300.0) as http:
            try:
                with http.stream(
                    "GET", f"/profiles/{profile_id}/failures", params=params, headers={"accept": accept}
                ) as r:
                    if r.status_code >= 400:
                        r.read()
                        _result(r)
                    progress = _progress() if sys.stderr.isatty() and output != "-" else None
                    try:
                        task = progress.add_task("downloading", total=None) if progress else None
                        for chunk in r.iter_bytes():
                            out.write(chunk)
                            written += len(chunk)
                            if progress is not None and task is not None:
                                progress.update(task, completed=written)
                    finally:
                        if progress is not None:
                            progress.stop()
            except httpx.HTTPError as exc:
                raise ClientError(f"download from {_base_url()} failed: {exc}", EXIT_CONNECTION) from exc
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    if output != "-":
        print(json.dumps({"output": str(Path(output).resolve()), "bytes": written}), file=sys.stderr)
    return 0


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, SpinnerColumn, TransferSpeedColumn

    p = Progress(SpinnerColumn(), "[progress.description]{task.description}", DownloadColumn(), TransferSpeedColumn(),
                 console=Console(stderr=True))  # fmt: skip
    p.start()
    return p


def _serve(args: argparse.Namespace) -> int:
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

    print(f"des api: admin store {redact(store)}; http://{args.host}:{args.port}/docs?code=<key>", file=sys.stderr)
    from shared.root import api_root

    # The profile runtime the function app would build: with AzureWebJobsStorage set (Azurite
    # locally), the failures routes and profile deletion reach Blob storage too.
    root = functools.cache(lambda: api_root(config))
    uvicorn.run(build_app(root), host=args.host, port=args.port, access_log=False, log_level="info")
    return 0


def _run(func: Any) -> Any:
    def runner(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except ClientError as exc:
            print(f"des {args.command}: {exc}", file=sys.stderr)
            return exc.code

    return runner


def add_commands(sub: Any) -> None:
    """Add ``api``, ``profiles``, ``failures`` and ``metrics`` to the ``des`` command line."""
    a = sub.add_parser("api", help="serve the admin HTTP API locally (uvicorn)")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=7072)
    a.add_argument(
        "--store", default=None, help=f"admin store DSN (default ${S.ADMIN_STORE} or {S.DEFAULT_ADMIN_STORE})"
    )
    a.set_defaults(func=_serve)

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
    p.set_defaults(func=_run(_profiles))

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
    f.set_defaults(func=_run(_failures))

    m = sub.add_parser("metrics", help="a profile's sync metrics (or the service's, without an id)")
    m.add_argument("id", nargs="?", default=None)
    m.set_defaults(func=_run(_metrics))
