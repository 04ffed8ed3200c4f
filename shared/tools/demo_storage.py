"""The demo's blob-storage phase: a claim-check spill, a retry and a failure-log entry, on a real Azurite.

Runs a further stream of the simulated organization's changes through the publisher (packed into
Standard-tier messages; one account note too large for a message goes by claim check into
``data/``) and through the same Service Bus handler the function app uses (profile mode: the
fan-out to the demo's profile, created through the admin API), with Blob storage on:

- while one batch is applied, another process holds the SQLite database (a real lock): the
  profile's notifications are parked, encrypted, in ``retry/<profile>/`` and then retried the way
  the blob trigger does it, with the profile's retry interval;
- a value that does not fit its column fails and lands in ``failurelog/<profile>/yyyy/mm/dd/hh/``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.engine.outcomes import BatchResult
from shared.publisher import STANDARD_MAX_MESSAGE_BYTES, InMemorySender, NotificationPublisher
from shared.retry.attempt import Status, run_retry_blob
from shared.retry.ports import RetryDeps
from shared.root import ProfileRuntime, profiles_root
from shared.storage.account import Storage
from shared.storage.blobs import DATA, FAILURELOG, RETRY, UNPROCESSABLE
from shared.storage.crypto import KeyRing, generate_local_aes_spec, parse_key_spec
from shared.tools.azurite import running_azurite
from shared.tools.demo_handler import handle


@dataclass
class BlobPhaseReport:
    result: BatchResult = field(default_factory=BatchResult)
    profile_id: str = ""
    skipped: int = 0  # notifications no active profile took
    notifications: int = 0
    messages: int = 0
    spilled: int = 0
    spill_bytes: int = 0
    data_blobs_left: int = -1
    parked_batches: int = 0
    parked_notifications: int = 0
    retry_status: str = ""
    retry_attempts: int = 0
    retry_blobs_left: int = -1
    failure_log_blobs: list[str] = field(default_factory=list)
    failure_lines: list[dict[str, str]] = field(default_factory=list)
    unprocessable_blobs: int = 0
    plaintext_found: bool = True
    kid: str = ""
    seconds: float = 0.0
    batches: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.spilled >= 1
            and self.data_blobs_left == 0
            and self.parked_batches >= 1
            and self.retry_status == Status.RESOLVED.value
            and self.retry_blobs_left == 0
            and bool(self.failure_lines)
            and not self.plaintext_found
        )


def _misfit(org: str, rng: random.Random) -> dict[str, Any]:
    """A record whose value misfits the column type (numberofemployees is an integer column)."""
    rid = f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
    return {
        "schemaVersion": 1, "organizationId": org, "entity": "account", "recordId": rid,
        "changeType": "update", "version": 9_500_000_000, "changedOn": "2026-03-02T08:00:00Z",
        "attributes": {"name": "Misfit Blob GmbH", "numberofemployees": "a few hundred"},
    }


def run_blob_phase(
    stream: list[dict[str, Any]], rt: ProfileRuntime, profile_id: str, db: Path, seed: int
) -> BlobPhaseReport:
    """Publish ``stream`` (simulated changes) and sync it with Blob storage on, fanned out to the
    profiles of ``rt`` (the demo's ``profile_id``: its destination is the SQLite file ``db``)."""
    started = time.perf_counter()
    rng = random.Random(f"blobs:{seed}")
    report = BlobPhaseReport(profile_id=profile_id)
    # One account note far over a Standard message: the claim check. The attributes dict is the
    # simulator's own record state, so its truth (the convergence check) has the long text too.
    accounts = [n for n in stream if n["entity"] == "account" and n.get("attributes") is not None]
    big = accounts[-1]
    big["attributes"]["description"] = "Lange Notiz über das Großprojekt. " * (STANDARD_MAX_MESSAGE_BYTES // 30)
    stream = [*stream, _misfit(stream[0]["organizationId"], rng)]

    with running_azurite() as azurite:
        key = parse_key_spec(generate_local_aes_spec(f"demo-{seed}"))
        report.kid = key.get_kid()
        storage = Storage.from_connection_string(azurite.connection_string, KeyRing(key))
        # The Service Bus function's container in profile mode, now with Blob storage.
        c = profiles_root(rt, storage=storage)
        try:
            sender = InMemorySender()
            published = NotificationPublisher(sender, storage.payloads).publish(stream)
            report.notifications, report.messages, report.spilled = (
                published.notifications, published.messages, published.spilled,
            )
            report.spill_bytes = max(
                (len(json.dumps(n)) for n in stream if n is big), default=0
            )
            bodies = sender.bodies
            # The messages carry ~hundreds of notifications each: deliver them one message per call.
            lock_at = len(bodies) // 2
            for i in range(0, len(bodies), 1):
                batch = bodies[i : i + 1]
                holder = None
                if i == lock_at:
                    holder = sqlite3.connect(db, isolation_level=None, timeout=0.1)
                    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
                try:
                    result, skipped = handle(batch, c)
                finally:
                    if holder is not None:
                        holder.execute("ROLLBACK")
                        holder.close()
                report.batches += 1
                report.result.merge(result)
                report.skipped += skipped
            states = list(storage.retries.states(profile_id))
            report.parked_batches = len(states)
            report.parked_notifications = sum(s.count for s in states)
            for s in states:  # what the blob trigger does for each new retry blob
                outcome = run_retry_blob(s.name, RetryDeps.of(storage, c.router))
                report.retry_status = outcome.status.value
                report.retry_attempts = outcome.attempt
                if outcome.result is not None:
                    report.result.merge(outcome.result)
            report.data_blobs_left = len(list(storage.stores.names(DATA)))
            report.retry_blobs_left = len(list(storage.stores.names(RETRY)))
            report.failure_log_blobs = sorted(storage.stores.names(FAILURELOG))
            report.failure_lines = list(storage.failure_log.rows(profile_id))
            report.unprocessable_blobs = len(list(storage.stores.names(UNPROCESSABLE)))
            # What an attacker with the storage account but not the key sees: no record value.
            found = False
            for container in (RETRY, DATA, "failednotifications"):
                for name in storage.stores.names(container):
                    raw, _ = storage.stores.raw(container, name)
                    found = found or b"Misfit Blob GmbH" in raw or "Großprojekt".encode() in raw
            report.plaintext_found = found
        finally:
            c.close()
    report.seconds = time.perf_counter() - started
    return report


def print_blob_report(console: Any, r: BlobPhaseReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Blob storage on Azurite (profile {r.profile_id}, key {escape(r.kid)})", title_justify="left")
    table.add_column("path")
    table.add_column("what happened", overflow="fold")
    table.add_column("", justify="right")
    mark = {True: "[green]ok[/green]", False: "[red]NO[/red]"}
    table.add_row(
        "publisher", f"{r.notifications:,} notifications packed into {r.messages} Standard-tier (256 KB) message(s)", ""
    )
    table.add_row(
        "data/ (claim check)",
        f"{r.spilled} notification of {r.spill_bytes:,} bytes spilled to an encrypted blob, sent as a reference, "
        f"resolved and applied; blobs left after the commit: {r.data_blobs_left}",
        mark[r.spilled >= 1 and r.data_blobs_left == 0],
    )
    table.add_row(
        "retry/",
        f"database locked by another writer during one batch: the profile's {r.parked_notifications} notifications "
        f"parked in {r.parked_batches} encrypted blob(s); retry {r.retry_status} at attempt {r.retry_attempts}; "
        f"retry blobs left: {r.retry_blobs_left}",
        mark[r.parked_batches >= 1 and r.retry_status == Status.RESOLVED.value and r.retry_blobs_left == 0],
    )
    line = r.failure_lines[0] if r.failure_lines else {}
    table.add_row(
        "failurelog/",
        f"{len(r.failure_lines)} line(s) in {escape(', '.join(r.failure_log_blobs))}: "
        f"{escape(line.get('Entity', '?'))} {escape(line.get('RecordId', '?'))} - "
        f"{escape(line.get('FailureReason', '')[:200])}",
        mark[bool(r.failure_lines)],
    )
    table.add_row(
        "encryption",
        "raw stored bytes (read without the key) contain no record value",
        mark[not r.plaintext_found],
    )
    console.print(table)
