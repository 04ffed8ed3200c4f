"""``des demo --stream``: the Service Bus path on the embedded default, end to end, in seconds.

(``des demo`` without ``--stream`` is the DES story from a Dataverse environment:
:mod:`shared.tools.demo_dataverse`.)

A simulated Dataverse organization (accounts, contacts, opportunities) runs an initial sync and a
stream of changes. The demo starts the admin HTTP API in process (uvicorn on a loopback port, with
an admin key generated for the run and an embedded store next to the database), creates and
activates its export profile through HTTP (destination: the demo's SQLite file, a literal
connection string as the development setting ``DES_ALLOW_LITERAL_DESTINATIONS`` allows), and then
the notifications travel the way Service Bus delivers them (duplicated, reordered, some in batch
envelopes) through the same handler the function app's Service Bus function uses: the fan-out to
the profile, in Service-Bus-sized batches, into the SQLite file. A few deliberately bad bodies show
the failed and unprocessable outcomes (written to a rejects folder next to the database). The demo
then prints what landed where, reads the profile's metrics back through the API, and checks the
database against the simulator's truth.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared import config as S
from shared.config import ProfilesConfig
from shared.contract.parse import Unprocessable
from shared.destinations import ConnectionFailed, Destination, Layout, open_destination
from shared.destinations.sqlite.dialect import SqliteDestination, quote
from shared.engine.outcomes import BatchResult, RecordFailure
from shared.rejects import RejectFiles
from shared.root import ProfileRuntime, Root, build_runtime, profiles_root
from shared.tools.crm_simulator import ENTITIES, ConvergenceReport, CrmSimulator, DeliveryStats, check_convergence
from shared.tools.demo_handler import handle

log = logging.getLogger(__name__)

BATCH_SIZE = 100  # message bodies per handler call, like a Service Bus trigger batch
EXIT_USAGE = 2
EXIT_CONNECTION = 3
REJECT_FILES = ("failures.csv", "failed-notifications.jsonl", "unprocessable.jsonl")
PROFILE_NAME = "des demo"
BUSY_TIMEOUT_S = 0.1  # the blob phase locks the database: fail fast and park instead of waiting
API_START_SECONDS = 20.0


@dataclass
class Phase:
    name: str
    stream: DeliveryStats
    result: BatchResult = field(default_factory=BatchResult)
    batches: int = 0
    redelivered: int = 0
    conserved: bool = True
    seconds: float = 0.0
    failures: list[RecordFailure] = field(default_factory=list)
    unprocessables: list[Unprocessable] = field(default_factory=list)
    skipped: int = 0  # notifications no active profile took (none expected: one profile exports them all)


def _chunks(bodies: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for body in bodies:
        batch.append(body)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _push(
    c: Root,
    bodies: Iterable[str],
    phase: Phase,
    *,
    rng: random.Random,
    redeliver_rate: float,
) -> None:
    """Deliver bodies batch by batch; now and then a batch comes again (its lock was lost)."""
    started = time.perf_counter()
    for batch in _chunks(bodies, BATCH_SIZE):
        deliveries = 2 if rng.random() < redeliver_rate else 1
        for _ in range(deliveries):
            result, skipped = handle(batch, c)
            phase.batches += 1
            phase.conserved = phase.conserved and result.conserved
            phase.failures.extend(result.failures)
            phase.unprocessables.extend(result.unprocessables)
            result.failures.clear()
            result.unprocessables.clear()
            phase.result.merge(result)
            phase.skipped += skipped
        phase.redelivered += deliveries - 1
    phase.seconds = time.perf_counter() - started


def bad_bodies(sim: CrmSimulator, rng: random.Random, sample: str) -> list[str]:
    """Bodies a real queue can carry: each must end failed or unprocessable, and none may crash.

    ``sample`` is a valid single-notification body of the stream; it is re-sent inside an envelope
    next to an invalid element (the valid one is kept, the invalid one is unprocessable).
    """

    def guid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def note(entity: str, change: str, attributes: dict[str, object] | None, **extra: object) -> dict[str, object]:
        body: dict[str, object] = {
            "schemaVersion": 1,
            "organizationId": sim.organization_id,
            "entity": entity,
            "recordId": guid(),
            "changeType": change,
            "version": 9_000_000_000 + rng.randrange(1000),
            "changedOn": "2026-03-01T12:00:00Z",
        }
        if attributes is not None:
            body["attributes"] = attributes
        body.update(extra)
        return body

    account = {"name": "Misfit Industries", "statecode": 0, "statuscode": 1, "donotemail": False}
    return [
        # Not JSON at all (a truncated body).
        '{"schemaVersion": 1, "entity": "account", "recordId": "3f2b',
        # A newer contract this service does not read yet: unprocessable, never silently dropped.
        json.dumps({**note("account", "create", account), "schemaVersion": 2, "payloadRef": "blob://x"}),
        # Values whose type misfits the existing columns (boolean, integer): failed, with the reason.
        json.dumps(note("account", "update", {**account, "donotemail": "no"})),
        json.dumps(note("account", "update", {**account, "statecode": "Active"})),
        # A hostile attribute name: fails the contract, no SQL is built from it.
        json.dumps(note("contact", "create", {'name"; DROP TABLE contact;--': "x"})),
        # A delete that carries attributes contradicts the contract.
        json.dumps(note("opportunity", "delete", {"name": "gone"})),
        # A batch envelope with one good (a duplicate from the stream) and one bad element.
        "[" + sample + "," + json.dumps(note("Account", "create", account)) + "]",
    ]


def _destination_summary(path: Path, layout: Layout) -> list[tuple[str, int, int, int]]:
    """(table, rows, columns, deletes logged) per entity table."""
    conn = sqlite3.connect(path)
    try:
        logged: dict[str, int] = dict(
            conn.execute(
                f'SELECT "EntityName", COUNT(*) FROM {quote(layout.delete_log_table)} GROUP BY "EntityName"'
            ).fetchall()
        )
        out = []
        for entity in ENTITIES:
            table = layout.entity_table(entity)
            columns = len(conn.execute(f"PRAGMA table_info({quote(table)})").fetchall())
            rows = conn.execute(f"SELECT COUNT(*) FROM {quote(table)}").fetchone()[0] if columns else 0
            out.append((table, int(rows), columns, logged.get(entity, 0)))
        return out
    finally:
        conn.close()


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _print_stream(console: Console, phases: list[Phase]) -> None:
    table = Table(title="Service Bus stream", title_justify="left")
    for name in ("phase", "notifications", "duplicates", "bodies", "envelopes", "batches", "redelivered", "s"):
        table.add_column(name, justify="left" if name == "phase" else "right")
    for p in phases:
        s = p.stream
        table.add_row(
            p.name, f"{s.notifications_out:,}", f"{s.duplicates:,}", f"{s.bodies:,}", f"{s.envelopes:,}",
            f"{p.batches:,}", f"{p.redelivered:,}", f"{p.seconds:.2f}",
        )
    console.print(table)


def _print_outcomes(console: Console, total: BatchResult) -> None:
    table = Table(title="Outcomes", title_justify="left")
    for name in ("entity", "received", "applied", "stale", "failed", "unprocessable"):
        table.add_column(name, justify="left" if name == "entity" else "right")
    named = 0
    for entity in sorted(total.per_entity):
        c = total.per_entity[entity]
        named += c.received
        counts = (c.received, c.applied, c.stale, c.failed, c.unprocessable)
        table.add_row(escape(entity), *(f"{n:,}" for n in counts))
    if total.received > named:
        rest = total.received - named
        table.add_row("(unreadable)", f"{rest:,}", "0", "0", "0", f"{rest:,}")
    table.add_row(
        "[b]total[/b]", f"{total.received:,}", f"{total.applied:,}", f"{total.stale:,}", f"{total.failed:,}",
        f"{total.unprocessable:,}",
    )
    console.print(table)
    mark = "[green]holds[/green]" if total.conserved else "[red]BROKEN[/red]"
    console.print(
        f"Conservation law: received {total.received:,} = applied {total.applied:,} + stale {total.stale:,}"
        f" + failed {total.failed:,} + unprocessable {total.unprocessable:,}: {mark}"
    )


def _print_rejects(console: Console, phases: list[Phase], rejects_dir: Path) -> None:
    table = Table(title=f"Rejected (kept in {escape(str(rejects_dir))})", title_justify="left")
    table.add_column("outcome")
    table.add_column("entity")
    table.add_column("reason", overflow="fold")
    for p in phases:
        for f in p.failures:
            table.add_row("failed", f.entity, escape(f.reason[:160]))
        for u in p.unprocessables:
            table.add_row("unprocessable", escape(u.entity or "?"), escape(u.reason[:160]))
    console.print(table)


def _print_convergence(console: Console, report: ConvergenceReport) -> None:
    table = Table(title="Convergence against the simulator's truth", title_justify="left")
    for name in ("table", "expected", "found", "missing", "unexpected", "mismatched", "wrong version", ""):
        table.add_column(name, justify="left" if name == "table" else "right")
    for r in report.entities.values():
        table.add_row(
            r.table, f"{r.expected:,}", f"{r.found:,}", str(len(r.missing)), str(len(r.unexpected)),
            str(len(r.mismatched)), str(len(r.wrong_version)), "[green]ok[/green]" if r.ok else "[red]DIFFERS[/red]",
        )
    console.print(table)
    for line in report.problems(limit=5):
        console.print(f"  [red]{escape(line)}[/red]")


# ------------------------------------------------------------------------------ admin API
class DemoApiError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoApi:
    """The admin API (the real ASGI app) on uvicorn on a loopback port for one demo run, with an
    admin key generated for the run, and an HTTP client that sends it."""

    def __init__(self, rt: ProfileRuntime) -> None:
        import uvicorn

        from shared.api import ApiServices, AuthConfig, create_app

        self.key = secrets.token_urlsafe(24)
        app = create_app(ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=self.key)))
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="des-demo-api", daemon=True)
        self.http: Any = None

    def __enter__(self) -> DemoApi:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + API_START_SECONDS
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.close()
                raise DemoApiError(f"the admin API did not start on {self.url}")
            time.sleep(0.02)
        self.http = httpx.Client(base_url=self.url, headers={"x-functions-key": self.key}, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        r = self.http.request(method, path, **kwargs)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        if r.status_code >= 300:
            detail = body.get("detail") if isinstance(body, dict) else body
            raise DemoApiError(f"{method} {path} answered {r.status_code}: {detail}")
        return r.status_code, body


def _open_demo_destination(dsn: str, layout: Layout) -> Destination:
    """Profile destinations for the demo: SQLite with a short busy timeout (the blob phase holds a
    lock on purpose; the batch is parked instead of waiting a minute)."""
    if dsn.startswith("sqlite:///"):
        return SqliteDestination(dsn[len("sqlite:///") :], layout, busy_timeout=BUSY_TIMEOUT_S)
    return open_destination(dsn, layout)


def demo_runtime(admin_db: Path) -> ProfileRuntime:
    """The profile machinery on an embedded store next to the demo's database; literal destination
    connection strings allowed (the development setting)."""
    env = {S.ADMIN_STORE: f"sqlite:///{admin_db}", S.ALLOW_LITERAL_DESTINATIONS: "true"}
    return build_runtime(ProfilesConfig.from_env(env), opener=_open_demo_destination)


def create_demo_profile(api: DemoApi, organization_id: str, path: Path, console: Console) -> str:
    """Create the demo's export profile and activate it, through HTTP like an admin would."""
    body = {
        "name": PROFILE_NAME,
        "organizationId": organization_id,
        "destination": f"sqlite:///{path.resolve()}",
        "entities": list(ENTITIES),
        "writeDeleteLog": True,
        "retryCount": 3,
        "retryIntervalSeconds": 1,
    }
    status, created = api.call("POST", "/profiles", json=body)
    pid = str(created["id"])
    console.print(
        f"  POST /profiles -> {status}: profile {escape(PROFILE_NAME)!r} {pid}, {created['state']}, destination "
        f"{escape(str(created['destination']))} ({created['destinationKind']}: {S.ALLOW_LITERAL_DESTINATIONS}=true)"
    )
    status, active = api.call("POST", f"/profiles/{pid}/activate")
    console.print(
        f"  POST /profiles/{pid}/activate -> {status}: {active['state']} "
        "(destination checked live: connect, create and drop a table)"
    )
    return pid


@dataclass
class StoreCounts:
    """The profile's metrics as the admin API reports them, with the unrouted bucket."""

    profile: dict[str, Any]
    unrouted: list[dict[str, Any]]

    @property
    def totals(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.profile["totals"].items()}

    @property
    def received(self) -> int:
        return self.totals["TotalNotifications"] + sum(int(e["TotalNotifications"]) for e in self.unrouted)

    @property
    def conserved(self) -> bool:
        t = self.totals
        outcomes = ("SuccessNotifications", "FailureNotifications", "StaleNotifications",
                    "UnprocessableNotifications", "SkippedNotifications")  # fmt: skip
        return t["TotalNotifications"] == sum(t[k] for k in outcomes) and int(self.profile["pendingRetry"]) == 0


def read_store_counts(api: DemoApi, pid: str) -> StoreCounts:
    _, profile = api.call("GET", f"/profiles/{pid}/metrics")
    _, service = api.call("GET", "/metrics")
    return StoreCounts(profile, list(service["unrouted"]))


def _print_store_counts(console: Console, pid: str, counts: StoreCounts, delivered: int) -> None:
    table = Table(title=f"Metrics through the admin API (GET /profiles/{pid}/metrics, GET /metrics)",
                  title_justify="left")  # fmt: skip
    names = ("Total", "Success", "Failure", "Stale", "Unprocessable", "Skipped")
    table.add_column("entity")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("LastExportStatus")
    rows = [(escape(e["entity"]), e) for e in counts.profile["entities"]]
    rows += [(f"(no profile) {escape(e['entity'])}", e) for e in counts.unrouted]
    for label, e in rows:
        table.add_row(label, *(f"{int(e[n + 'Notifications']):,}" for n in names), str(e["LastExportStatus"] or ""))
    console.print(table)
    mark = "[green]holds[/green]" if counts.conserved and counts.received == delivered else "[red]BROKEN[/red]"
    console.print(
        f"Store: {counts.totals['TotalNotifications']:,} notifications for the profile, pending retry "
        f"{counts.profile['pendingRetry']}; with the unrouted bucket {counts.received:,} = the {delivered:,} "
        f"delivered: {mark}"
    )


# ------------------------------------------------------------------------------------- run
@dataclass
class DemoRun:
    phases: list[Phase]
    blob_report: Any = None  # shared.tools.demo_storage.BlobPhaseReport
    store: StoreCounts | None = None
    profile_id: str = ""


def _sync(c: Root, sim: CrmSimulator, rng: random.Random, changes: int) -> list[Phase]:
    """The initial sync, then the change stream with a few bad bodies, through the handler."""
    initial = Phase("initial sync", DeliveryStats())
    bodies = sim.deliver(sim.initial_sync(), 0.02, 20, 25, stats=initial.stream)
    _push(c, bodies, initial, rng=rng, redeliver_rate=0.0)

    stream = Phase("changes", DeliveryStats())
    change_bodies = list(sim.deliver(sim.changes(changes), 0.08, 40, 10, stats=stream.stream))
    sample = next((b for b in change_bodies if b.startswith("{")), change_bodies[0])
    bad = bad_bodies(sim, rng, sample)
    for body in bad:
        change_bodies.insert(rng.randrange(len(change_bodies) + 1), body)
    stream.stream.bodies += len(bad)
    stream.stream.notifications_out += len(bad) + 1  # the envelope holds two notifications
    _push(c, change_bodies, stream, rng=rng, redeliver_rate=0.03)
    return [initial, stream]


def _blob_phase(rt: ProfileRuntime, pid: str, sim: CrmSimulator, changes: int, path: Path, seed: int) -> Any:
    from shared.tools.demo_storage import run_blob_phase

    return run_blob_phase(list(sim.changes(max(100, changes // 4))), rt, pid, path, seed)


def _run(
    rt: ProfileRuntime, sim: CrmSimulator, path: Path, *, seed: int, changes: int, rejects: RejectFiles,
    console: Console, blobs: bool,
) -> DemoRun:  # fmt: skip
    rng = random.Random(f"demo:{seed}")
    with DemoApi(rt) as api:
        console.print(
            f"Admin API on {api.url} (uvicorn, in process; admin key generated for this run; "
            f"store {escape(rt.config.store_dsn)})"
        )
        pid = create_demo_profile(api, sim.organization_id, path, console)
        # The Service Bus function's container in profile mode, without Blob storage: failures and
        # unprocessable bodies of every profile go to the demo's rejects folder.
        c = profiles_root(rt, rejects_for=lambda _profile: rejects)
        run = DemoRun(_sync(c, sim, rng, changes), profile_id=pid)
        if blobs:
            run.blob_report = _blob_phase(rt, pid, sim, changes, path, seed)
            r = run.blob_report
            run.phases.append(Phase(
                "blob paths", DeliveryStats(notifications_out=r.notifications, bodies=r.messages), result=r.result,
                batches=r.batches, seconds=r.seconds, conserved=r.result.conserved, failures=list(r.result.failures),
                skipped=r.skipped,
            ))  # fmt: skip
        run.store = read_store_counts(api, pid)
    return run


def run_stream_demo(
    path: Path,
    seed: int = 7,
    records: int = 2000,
    *,
    changes: int | None = None,
    console: Console | None = None,
    blobs: bool = True,
) -> int:
    """Run the demo into the SQLite file ``path`` (replaced); 0 when converged and conserved.

    With ``blobs`` a last phase runs with Blob storage on a real Azurite (started here): a
    claim-check spill, a retry after a locked database, and a failure-log entry.
    """
    if records < 1:
        print("des demo: --records must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = max(console.width, 110)  # piped or captured: room for the tables
    started = time.perf_counter()
    changes = changes if changes is not None else max(100, 2 * records)
    rejects_dir = path.with_name(path.stem + "-rejects")
    admin_db = path.with_name(path.stem + "-admin.db")
    _remove_database(path)
    _remove_database(admin_db)
    for name in REJECT_FILES:
        (rejects_dir / name).unlink(missing_ok=True)

    sim = CrmSimulator(seed, accounts=records, contacts=records, opportunities=records)
    layout = Layout(write_delete_log=True)
    dsn = f"sqlite:///{path}"
    try:
        open_destination(dsn, layout).close()  # fail fast, before starting anything
    except ConnectionFailed as exc:
        print(f"des demo: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    console.print(
        f"[b]des demo[/b]: organization {sim.organization_id}, seed {seed}, {records:,} records per entity, "
        f"{changes:,} changes -> {escape(dsn)}"
    )
    from shared.tools.azurite import AzuriteError

    rt = demo_runtime(admin_db)
    rejects = RejectFiles(rejects_dir)
    try:
        run = _run(rt, sim, path, seed=seed, changes=changes, rejects=rejects, console=console, blobs=blobs)
    except (AzuriteError, DemoApiError) as exc:
        print(f"des demo: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    finally:
        rejects.close()
        rt.close()
    dest = open_destination(dsn, layout)
    try:
        report = check_convergence(dest, sim.truth(), layout)
    finally:
        dest.close()
    return _finish(console, run, report, path, layout, rejects_dir, started)


def _finish(
    console: Console, run: DemoRun, report: ConvergenceReport, path: Path, layout: Layout, rejects_dir: Path,
    started: float,
) -> int:  # fmt: skip
    """Print what happened; 0 when the destination converged and every count conserved."""
    phases = run.phases
    total = BatchResult()
    for p in phases:
        total.merge(p.result)
    delivered = total.received + sum(p.skipped for p in phases)
    conserved = total.conserved and all(p.conserved for p in phases)
    store_ok = run.store is not None and run.store.conserved and run.store.received == delivered
    _print_stream(console, phases)
    _print_outcomes(console, total)
    if run.store is not None:
        _print_store_counts(console, run.profile_id, run.store, delivered)
    summary = Table(title=f"Destination sqlite:///{escape(str(path))} (delete log on)", title_justify="left")
    for name in ("table", "rows", "columns", "deletes logged"):
        summary.add_column(name, justify="left" if name == "table" else "right")
    for table, rows, columns, logged in _destination_summary(path, layout):
        summary.add_row(table, f"{rows:,}", str(columns), f"{logged:,}")
    console.print(summary)
    _print_rejects(console, phases, rejects_dir)
    if run.blob_report is not None:
        from shared.tools.demo_storage import print_blob_report

        print_blob_report(console, run.blob_report)
    _print_convergence(console, report)

    seconds = time.perf_counter() - started
    ok = report.ok and conserved and store_ok and (run.blob_report is None or run.blob_report.ok)
    if ok:
        console.print(f"[green]Converged and conserved[/green] in {seconds:.1f} s.")
        query = f'sqlite3 {path} "SELECT name, revenue, address1_city FROM account LIMIT 5"'
        console.print(f"Look inside: {escape(query)}", soft_wrap=True)
    else:
        checks = (
            ("the destination did not converge", not report.ok),
            ("the outcomes broke conservation", not conserved),
            ("the store's metrics do not add up", not store_ok),
            ("a blob path did not work", run.blob_report is not None and not run.blob_report.ok),
        )
        why = [w for w, failed in checks if failed]
        console.print(f"[red]The demo failed: {'; '.join(why)}[/red] ({seconds:.1f} s).")
    log.info("demo finished in %.2f s: ok=%s", seconds, ok)
    return 0 if ok else 1
