"""The command line's admin client: ``des profiles``, ``des failures``, ``des metrics`` are a thin
client of the admin API (``des api`` locally, see :mod:`shared.tools.serve`, or the function app in Azure).

The client finds the API in ``DES_API_URL`` (default http://127.0.0.1:7072) and the key in
``DES_ADMIN_API_KEY`` (sent as ``x-functions-key``: the local admin key, or a function key in
Azure). Output is the API's JSON, pretty-printed; errors print the API's reason and exit non-zero.
Long failure-log downloads show progress on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
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
    if getattr(args, "source", False):
        if not args.id:
            raise ClientError("--source needs a profile id", EXIT_USAGE)
        _print(_call("GET", f"/profiles/{args.id}/source"))
        return 0
    _print(_call("GET", f"/profiles/{args.id}/metrics" if args.id else "/metrics"))
    return 0


def _moment(text: str) -> str:
    """``--start``/``--end`` as the API takes them (RFC 3339 with an offset): a date or a time
    without an offset is taken as UTC, as before."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ClientError(f"not an ISO 8601 date or time: {text!r}", EXIT_USAGE) from exc
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat()


def _failures(args: argparse.Namespace) -> int:
    params = {k: _moment(v) for k, v in (("start", args.start), ("end", args.end)) if v}
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


def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def runner(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except ClientError as exc:
            print(f"des {args.command}: {exc}", file=sys.stderr)
            return exc.code

    return runner


# The ``des`` subcommands (their arguments are declared in shared/cli.py).
profiles = _run(_profiles)
failures = _run(_failures)
metrics = _run(_metrics)
