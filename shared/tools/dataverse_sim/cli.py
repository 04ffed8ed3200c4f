"""Command line of the Dataverse Web API simulator.

``python -m shared.tools.dataverse_sim --port 8790 --seed 1 --records 200`` serves a generated
organization on 127.0.0.1 until interrupted; it prints one JSON line first: the environment URL, the
Web API root and the bearer token to use. ``--switch name=value`` sets a switch (value as JSON,
else as a string); ``--push-file PATH`` appends push messages for live changes to a JSONL file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.tools.dataverse_sim.switches import PushOptions, Switches


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assignments(items: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{what} {item!r}: use name=value")
        out[name.strip()] = _parse_value(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="des simulate dataverse",
                                description="Serve a simulated Dataverse organization's Web API on 127.0.0.1.")
    p.add_argument("--port", type=int, default=8790, help="TCP port on 127.0.0.1 (0: any free port)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated organization")
    p.add_argument("--records", type=int, default=50, help="accounts to generate (about 2x contacts, 1x opportunities)")
    p.add_argument("--org-name", default="simorg")
    p.add_argument("--token", action="append", default=[], help="accepted bearer token (repeatable)")
    p.add_argument("--token-ttl", type=float, default=None, help="seconds until the --token tokens expire")
    p.add_argument("--no-auth", action="store_true", help="accept requests without a bearer token")
    p.add_argument("--switch", action="append", default=[], metavar="NAME=VALUE",
                   help="set a Web API switch (see docs/dataverse-simulator.md)")
    p.add_argument("--churn", type=float, default=0.0, metavar="PER_SECOND",
                   help="make about this many random live changes a second (0: none)")
    p.add_argument("--push-file", type=Path, help="append Service Bus messages for live changes to this JSONL file")
    p.add_argument("--push", action="append", default=[], metavar="NAME=VALUE",
                   help="set a push option, e.g. duplicate_rate=0.1, line_format=\"message\"")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from shared.tools.dataverse_sim.server import free_port, serve_forever
    from shared.tools.dataverse_sim.simulator import DEFAULT_TOKEN, DataverseSimulator

    try:
        switches = Switches()
        switches.update(_assignments(args.switch, "--switch"))
        push = PushOptions()
        push.update(_assignments(args.push, "--push"))
    except (KeyError, ValueError) as exc:
        print(f"des simulate dataverse: {exc}", file=sys.stderr)
        return 2
    if args.records < 0:
        print("des simulate dataverse: --records must be at least 0", file=sys.stderr)
        return 2
    import time

    tokens: dict[str, float | None] = {}
    for token in args.token or [DEFAULT_TOKEN]:
        tokens[token] = None if args.token_ttl is None else time.time() + args.token_ttl
    port = args.port or free_port()
    sim = DataverseSimulator(seed=args.seed, records=args.records, switches=switches, push=push,
                             push_path=args.push_file, tokens=tokens, require_auth=not args.no_auth,
                             org_name=args.org_name, org_url=f"http://127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    print(json.dumps({"environment_url": url, "api": f"{url}/api/data/v9.2/", "token": next(iter(tokens)),
                      "organization_id": sim.state.organization.organization_id,
                      "entities": sim.state.tracked_entities(), "control": f"{url}/_sim/"}), flush=True)
    if args.churn > 0:
        sim.start_churn(args.churn, args.seed)
    try:
        serve_forever(sim, port)
    finally:
        sim.close()
    return 0
