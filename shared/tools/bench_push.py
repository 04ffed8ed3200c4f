"""Change-to-row latency through Dataverse push, on the embedded default: ``python -m shared.tools.bench_push``.

The Dataverse simulator (served over HTTP on loopback) makes one change at a time to an account;
the message it posts (reference C: RemoteExecutionContext JSON) is translated
(shared.source.dataverse.push) and applied through the sync engine to a SQLite destination file. One
sample = from the write at the simulator until the row is committed in SQLite, in one thread. Three
paths, rotated every round:

- ``push_image``: the step has a post-image with every column (no Web API call);
- ``push_reread``: no post-image (an Update's Target holds only the changed column): the record is
  re-read by id through the Web API client;
- ``app_reread``: the same message through the Service Bus function's handler on the function app's
  root (profile mode: the profile's Dataverse source re-reads it, the fan-out applies it, the batch's
  metrics go to the admin store, a SQLite file);
- ``baseline``: the same post-image message applied by hand: ``json.loads``, the image's attributes
  picked out, one version-guarded ``INSERT ... ON CONFLICT`` with stdlib ``sqlite3`` (WAL,
  ``synchronous=NORMAL``, as the destination).

Not included (no broker here): Service Bus delivery and Dataverse's asynchronous system job, which
dominate in production (seconds). Prints p50/p99 per path and the ratios against the baseline.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PATHS = ("baseline", "push_image", "push_reread", "app_reread")


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _by_hand(db: sqlite3.Connection) -> Callable[[bytes], None]:
    db.execute("PRAGMA journal_mode=WAL")  # as the SQLite destination sets them
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS account (Id TEXT PRIMARY KEY, versionnumber INTEGER, name TEXT, "
               "numberofemployees INTEGER, revenue REAL, industrycode INTEGER, modifiedon TEXT)")  # fmt: skip

    def apply(body: bytes) -> None:
        doc = json.loads(body.decode("utf-8-sig"))
        image: dict[str, Any] = {}
        for pair in doc["PostEntityImages"][0]["value"]["Attributes"]:
            value = pair["value"]
            image[pair["key"]] = value.get("Value", value.get("Id")) if isinstance(value, dict) else value
        with db:
            db.execute(
                "INSERT INTO account VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (Id) DO UPDATE SET "
                "versionnumber = excluded.versionnumber, name = excluded.name, numberofemployees = "
                "excluded.numberofemployees, revenue = excluded.revenue, industrycode = excluded.industrycode, "
                "modifiedon = excluded.modifiedon WHERE excluded.versionnumber > account.versionnumber",
                (doc["PrimaryEntityId"], 2 * int(image["versionnumber"]), image.get("name"),
                 image.get("numberofemployees"), image.get("revenue"), image.get("industrycode"),
                 image.get("modifiedon")),
            )  # fmt: skip

    return apply


def _app_root(tmp: Path, environment_url: str, organization_id: str) -> Any:
    """The function app's root in profile mode with one active profile reading ``account`` from the
    simulator (its initial sync done), as ``sync_notifications`` gets it."""
    from shared import config as S
    from shared.profiles.model import ProfileCreate
    from shared.pull.worker import LocalWorker
    from shared.root import build_root
    from shared.source.dataverse.cursors import InitialSyncState
    from shared.tools.dataverse_sim import DEFAULT_TOKEN

    env = {S.ADMIN_STORE: f"sqlite:///{tmp / 'admin.db'}", S.ALLOW_LITERAL_DESTINATIONS: "true",
           S.DATAVERSE_TOKEN: DEFAULT_TOKEN, S.REJECTS_DIR: str(tmp / "rejects")}  # fmt: skip
    root = build_root(S.AppConfig.from_env(env))
    service = root.profiles().service
    p = service.create(ProfileCreate.model_validate({
        "name": "bench", "organizationId": organization_id, "destination": f"sqlite:///{tmp / 'app.db'}",
        "entities": ["account"], "source": {"environmentUrl": environment_url, "auth": {"kind": "developmentToken"}},
    }))  # fmt: skip
    service.activate(p.id)
    source = root.source
    assert source is not None  # profile mode with an SQL admin store
    worker = LocalWorker(source, poll_seconds=0.5)
    deadline = time.monotonic() + 120
    while (c := source.cursors.get(p.id, "account")) is None or c.initial_sync_state is not InitialSyncState.COMPLETED:
        if time.monotonic() > deadline:
            raise RuntimeError("the initial sync of the bench profile did not complete")
        if worker.run_once() == 0:
            time.sleep(0.05)
    return root


def run(samples: int, rounds: int) -> dict[str, Any]:
    from shared.destinations import Layout, open_destination
    from shared.engine.engine import SyncEngine
    from shared.handlers import handle_notifications
    from shared.source.dataverse.client import DataverseClient, StaticToken
    from shared.source.dataverse.push import parse_messages
    from shared.source.dataverse.push_reread import MetadataInfos, SourceReread
    from shared.source.dataverse.settings import DataverseSettings
    from shared.tools.dataverse_sim import DEFAULT_TOKEN, DataverseSimulator, PushOptions, run_simulator

    options = PushOptions(post_image="all")
    sim = DataverseSimulator(records=50, push=options)
    state = sim.state
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    with tempfile.TemporaryDirectory(prefix="des-push-bench-") as tmp, run_simulator(sim) as running:
        dest = open_destination(f"sqlite:///{Path(tmp) / 'dest.db'}", Layout())
        engine = SyncEngine(dest)
        hand = sqlite3.connect(Path(tmp) / "baseline.db", isolation_level=None)
        by_hand = _by_hand(hand)
        client = DataverseClient(running.environment_url, DataverseSettings(), tokens=StaticToken(DEFAULT_TOKEN))
        org = state.organization.organization_id
        reread = SourceReread(client, org, MetadataInfos(client, org, frozenset({"account"})))
        root = _app_root(Path(tmp), running.environment_url, org)
        ids = state.ids("account")
        counter = 0

        def change(path: str) -> float:
            nonlocal counter
            counter += 1
            rid = ids[counter % len(ids)]
            options.post_image = "none" if path in ("push_reread", "app_reread") else "all"
            t0 = time.perf_counter()
            state.update("account", rid, {"name": f"change {counter}", "numberofemployees": counter})
            (message,) = sim.push.drain()
            if path == "baseline":
                by_hand(message.body)
            elif path == "app_reread":
                fan = handle_notifications([(message.body, message.application_properties)], root)
                if fan.final().applied != 1:
                    raise RuntimeError(f"{path}: {fan.final().counts()} {[u.reason for u in fan.unprocessable]}")
            else:
                parsed = parse_messages([(message.body, message.application_properties)], reread)
                result = engine.apply_parsed(parsed)
                if result.applied != 1:
                    raise RuntimeError(f"{path}: {result.counts()} {[u.reason for u in parsed.unprocessable]}")
            return (time.perf_counter() - t0) * 1000

        for path in PATHS:  # warm-up: metadata cached, tables and columns created, connections open
            for _ in range(5):
                change(path)
        order = list(PATHS)
        for _ in range(rounds):
            for path in order:
                times[path].extend(change(path) for _ in range(samples))
            order = order[1:] + order[:1]
        client.close()
        root.close()
        dest.close()
        hand.close()
    report: dict[str, Any] = {}
    base = statistics.median(times["baseline"])
    for path in PATHS:
        p50 = statistics.median(times[path])
        report[path] = {"p50_ms": round(p50, 3), "p99_ms": round(_percentile(times[path], 0.99), 3),
                        "samples": len(times[path]), "p50_vs_baseline": round(p50 / base, 2)}  # fmt: skip
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shared.tools.bench_push",
                                description=__doc__.splitlines()[0] if __doc__ else "")  # fmt: skip
    p.add_argument("--samples", type=int, default=100, help="changes per path per round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    report = run(args.samples, args.rounds)
    for path in PATHS:
        r = report[path]
        print(f"{path:12s} p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   "
              f"p50 {r['p50_vs_baseline']:5.2f}x baseline")  # fmt: skip
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
