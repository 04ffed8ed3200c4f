"""``python -m shared demo``: the main job on the embedded default, end to end, in seconds.

A simulated Dataverse organization (accounts, contacts, opportunities) runs an initial sync and a
stream of changes; the notifications travel the way Service Bus delivers them (duplicated,
reordered, some in batch envelopes) and go through the same engine the function app uses, in
Service-Bus-sized batches, into a SQLite file. A few deliberately bad bodies show the failed and
unprocessable outcomes (written to a rejects folder next to the database). The demo then prints
what landed where and checks the database against the simulator's truth.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.contract.parse import Unprocessable
from shared.destinations import ConnectionFailed, Layout, open_destination
from shared.destinations.sqlite.dialect import quote
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult, RecordFailure
from shared.rejects import RejectFiles
from shared.simulate import ENTITIES, ConvergenceReport, CrmSimulator, DeliveryStats, check_convergence

log = logging.getLogger(__name__)

BATCH_SIZE = 100  # message bodies per engine call, like a Service Bus trigger batch
EXIT_USAGE = 2
EXIT_CONNECTION = 3
REJECT_FILES = ("failures.csv", "failed-notifications.jsonl", "unprocessable.jsonl")


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
    engine: SyncEngine,
    bodies: Iterable[str],
    phase: Phase,
    *,
    rejects: RejectFiles,
    rng: random.Random,
    redeliver_rate: float,
) -> None:
    """Apply bodies batch by batch; now and then a batch comes again (its lock was lost)."""
    started = time.perf_counter()
    for batch in _chunks(bodies, BATCH_SIZE):
        deliveries = 2 if rng.random() < redeliver_rate else 1
        for _ in range(deliveries):
            result = engine.apply_bodies(batch)
            phase.batches += 1
            phase.conserved = phase.conserved and result.conserved
            rejects.failures(result.failures)
            rejects.unprocessable(result.unprocessables)
            phase.failures.extend(result.failures)
            phase.unprocessables.extend(result.unprocessables)
            result.failures.clear()
            result.unprocessables.clear()
            phase.result.merge(result)
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


def run_demo(
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
    _remove_database(path)
    for name in REJECT_FILES:
        (rejects_dir / name).unlink(missing_ok=True)

    sim = CrmSimulator(seed, accounts=records, contacts=records, opportunities=records)
    rng = random.Random(f"demo:{seed}")
    layout = Layout(write_delete_log=True)
    dsn = f"sqlite:///{path}"
    try:
        dest = open_destination(dsn, layout)
    except ConnectionFailed as exc:
        print(f"des demo: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    engine = SyncEngine(dest)
    rejects = RejectFiles(rejects_dir)
    console.print(
        f"[b]des demo[/b]: organization {sim.organization_id}, seed {seed}, {records:,} records per entity, "
        f"{changes:,} changes -> {escape(dsn)}"
    )
    try:
        initial = Phase("initial sync", DeliveryStats())
        bodies = sim.deliver(sim.initial_sync(), 0.02, 20, 25, stats=initial.stream)
        _push(engine, bodies, initial, rejects=rejects, rng=rng, redeliver_rate=0.0)

        stream = Phase("changes", DeliveryStats())
        change_bodies = list(sim.deliver(sim.changes(changes), 0.08, 40, 10, stats=stream.stream))
        sample = next((b for b in change_bodies if b.startswith("{")), change_bodies[0])
        bad = bad_bodies(sim, rng, sample)
        for body in bad:
            change_bodies.insert(rng.randrange(len(change_bodies) + 1), body)
        stream.stream.bodies += len(bad)
        stream.stream.notifications_out += len(bad) + 1  # the envelope holds two notifications
        _push(engine, change_bodies, stream, rejects=rejects, rng=rng, redeliver_rate=0.03)
        phases = [initial, stream]
        blob_report = None
        if blobs:
            from shared.storage.azurite import AzuriteError
            from shared.storage.demo import run_blob_phase

            try:
                blob_report = run_blob_phase(list(sim.changes(max(100, changes // 4))), path, layout, seed)
            except AzuriteError as exc:
                print(f"des demo: {exc}", file=sys.stderr)
                return EXIT_CONNECTION
            blob_phase = Phase(
                "blob paths", DeliveryStats(notifications_out=blob_report.notifications, bodies=blob_report.messages),
                result=blob_report.result, batches=blob_report.batches, seconds=blob_report.seconds,
                conserved=blob_report.result.conserved, failures=list(blob_report.result.failures),
            )
            phases.append(blob_phase)

        total = BatchResult()
        for p in phases:
            total.merge(p.result)
        conserved = total.conserved and all(p.conserved for p in phases)
        report = check_convergence(dest, sim.truth(), layout)
    finally:
        rejects.close()
        dest.close()

    _print_stream(console, phases)
    _print_outcomes(console, total)
    summary = Table(title=f"Destination {escape(dsn)} (delete log on)", title_justify="left")
    for name in ("table", "rows", "columns", "deletes logged"):
        summary.add_column(name, justify="left" if name == "table" else "right")
    for table, rows, columns, logged in _destination_summary(path, layout):
        summary.add_row(table, f"{rows:,}", str(columns), f"{logged:,}")
    console.print(summary)
    _print_rejects(console, phases, rejects_dir)
    if blob_report is not None:
        from shared.storage.demo import print_blob_report

        print_blob_report(console, blob_report)
    _print_convergence(console, report)

    seconds = time.perf_counter() - started
    ok = report.ok and conserved and (blob_report is None or blob_report.ok)
    if ok:
        console.print(f"[green]Converged and conserved[/green] in {seconds:.1f} s.")
        query = f'sqlite3 {path} "SELECT name, revenue, address1_city FROM account LIMIT 5"'
        console.print(f"Look inside: {escape(query)}", soft_wrap=True)
    else:
        checks = (("did not converge", not report.ok), ("broke conservation", not conserved))
        why = [w for w, failed in checks if failed]
        console.print(f"[red]The destination {' and '.join(why)}[/red] ({seconds:.1f} s).")
    log.info("demo finished in %.2f s: ok=%s", seconds, ok)
    return 0 if ok else 1
