"""``des demo``: the DES story on the embedded default, end to end, in well under a minute.

1. A Dataverse environment: the Web API simulator (shared/tools/dataverse_sim) on a loopback port,
   with a generated organization (accounts, contacts, opportunities, an N:N relationship).
2. The admin API (the real ASGI app, uvicorn in process, an admin key generated for the run, the
   embedded SQLite store next to the database) and the source's in-process worker (no Functions
   host here: it drains the page queue and polls, as ``source_pages`` and ``source_poll`` do).
3. Over HTTP, like an admin: validate a profile whose source is the environment (each check named),
   create it, activate it. Activation only enqueues the initial sync.
4. The initial sync, watched through ``GET /profiles/{id}/source``: one page per unit of work.
5. Live changes in the environment (Web API writes: update, create, delete; and a burst of random
   changes), polled from the saved delta links and applied: watched until the destination matches.
6. Per-table status (the source's and the sync's metrics), then the SQLite destination checked
   against the simulator's own data (``sim.truth(entity)``). Exit 0 only when it converged.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared import config as S
from shared.destinations import ConnectionFailed, Layout, open_destination
from shared.pull.worker import LocalWorker
from shared.root import Root, api_root
from shared.tools.dataverse_check import TableComparison, compare
from shared.tools.dataverse_sim import RunningSimulator, run_simulator
from shared.tools.demo import DemoApi, DemoApiError, _remove_database

log = logging.getLogger(__name__)

EXIT_USAGE, EXIT_CONNECTION = 2, 3
TABLES = ("account", "contact", "opportunity")
RELATIONSHIPS = ("des_account_contact",)
PROFILE_NAME = "des demo"
PAGE_SIZE = 100
POLL_SECONDS = 1
WAIT_SECONDS = 45.0


def _env(admin_db: Path, rejects: Path, rs: RunningSimulator) -> dict[str, str]:
    """The settings of this run, explicit (the process environment is not read)."""
    return {
        S.ADMIN_STORE: f"sqlite:///{admin_db}", S.ALLOW_LITERAL_DESTINATIONS: "true", S.REJECTS_DIR: str(rejects),
        S.DATAVERSE_TOKEN: rs.token, "DES_DATAVERSE_PAGE_SIZE": str(PAGE_SIZE),
        "DES_SOURCE_POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
    }  # fmt: skip


def _checks_table(title: str, checks: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for name in ("step", "", "detail"):
        t.add_column(name, overflow="fold")
    for c in checks:
        t.add_row(escape(c["name"]), "[green]ok[/green]" if c["ok"] else "[red]FAILED[/red]", escape(c["detail"]))
    return t


def _source_line(source: dict[str, Any]) -> str:
    return "  ".join(
        f"{e['entity']} {e['rowsRead']:,} rows/{e['pages']} pages {e['InitialSyncState']}" for e in source["entities"]
    )


def _watch(what: str, done: Any, progress: Any, console: Console, seconds: float = WAIT_SECONDS) -> bool:
    """Wait until ``done()``, printing ``progress()`` when it changes (about every half second)."""
    deadline = time.monotonic() + seconds
    last = ""
    while True:
        ok = done()
        line = progress()
        if line != last:
            console.print(f"  {escape(line)}", soft_wrap=True)
            last = line
        if ok:
            return True
        if time.monotonic() > deadline:
            console.print(f"  [red]{what}: not there after {seconds:.0f} s[/red]")
            return False
        time.sleep(0.4)


def _live_changes(rs: RunningSimulator, changes: int, seed: int, console: Console) -> None:
    """Writes through the environment's Web API, as a Dynamics user's edits would arrive, and a burst."""
    with httpx.Client(base_url=rs.api, headers=rs.headers(), timeout=30) as web:
        account = sorted(rs.sim.truth("account"))[0]
        r = web.patch(f"accounts({account})", json={"name": "Renamed during the demo"})
        console.print(f"  PATCH accounts({account}) name='Renamed during the demo' -> {r.status_code}")
        r = web.post("contacts", json={"firstname": "Ada", "lastname": "Lovelace",
                                       "parentcustomerid_account@odata.bind": f"/accounts({account})"})  # fmt: skip
        console.print(f"  POST contacts (Ada Lovelace, customer: that account) -> {r.status_code}")
        opportunity = sorted(rs.sim.truth("opportunity"))[-1]
        r = web.delete(f"opportunities({opportunity})")
        console.print(f"  DELETE opportunities({opportunity}) -> {r.status_code}")
    made = rs.sim.random_changes(changes, seed=seed)
    kinds: dict[str, int] = {}
    for m in made:
        kinds[m.split()[0]] = kinds.get(m.split()[0], 0) + 1
    console.print(f"  and {len(made)} random changes: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))


def _comparisons(dsn: str, rs: RunningSimulator) -> list[TableComparison]:
    dest = open_destination(dsn, Layout(write_delete_log=True))
    try:
        return [compare(dest, rs.sim, t) for t in (*TABLES, *RELATIONSHIPS)]
    finally:
        dest.close()


def _status_table(api: DemoApi, pid: str) -> Table:
    _, source = api.call("GET", f"/profiles/{pid}/source")
    _, metrics = api.call("GET", f"/profiles/{pid}/metrics")
    applied = {e["entity"]: e for e in metrics["entities"]}
    t = Table(title=f"Per table (GET /profiles/{pid}/source, /metrics)", title_justify="left")
    for name in ("table", "InitialSyncState", "rows read", "pages", "last poll", "lag s", "next poll", "total",
                 "success", "stale", "failed"):  # fmt: skip
        t.add_column(name, justify="left" if name in ("table", "InitialSyncState") else "right")
    for e in source["entities"]:
        m = applied.get(e["entity"], {})
        t.add_row(
            e["entity"], e["InitialSyncState"], f"{e['rowsRead']:,}", str(e["pages"]), str(e["lastPoll"] or "")[11:19],
            "" if e["sourceLagSeconds"] is None else f"{e['sourceLagSeconds']:.0f}", str(e["nextPoll"] or "")[11:19],
            f"{m.get('TotalNotifications', 0):,}", f"{m.get('SuccessNotifications', 0):,}",
            f"{m.get('StaleNotifications', 0):,}", f"{m.get('FailureNotifications', 0):,}",
        )  # fmt: skip
    return t


def _comparison_table(rows: list[TableComparison]) -> Table:
    t = Table(title="The SQLite destination against the simulator's own data (sim.truth)", title_justify="left")
    for name in ("table", "in Dataverse", "in SQLite", "missing", "deleted but present", "differing", ""):
        t.add_column(name, justify="left" if name == "table" else "right")
    for c in rows:
        t.add_row(c.table, f"{c.expected:,}", f"{c.found:,}", str(len(c.missing)), str(len(c.unexpected)),
                  str(len(c.mismatched)), "[green]ok[/green]" if c.ok else "[red]DIFFERS[/red]")  # fmt: skip
    return t


def run_demo(
    path: Path, seed: int = 7, records: int = 200, *, changes: int | None = None, console: Console | None = None
) -> int:
    """The DES story into the SQLite file ``path`` (replaced); 0 only when the destination converged."""
    if records < 1:
        print("des demo: --records must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = max(console.width, 120)
    started = time.perf_counter()
    changes = changes if changes is not None else max(20, records // 2)
    admin_db, rejects = path.with_name(path.stem + "-admin.db"), path.with_name(path.stem + "-rejects")
    _remove_database(path)
    _remove_database(admin_db)
    dsn = f"sqlite:///{path.resolve()}"
    try:
        open_destination(dsn, Layout(write_delete_log=True)).close()  # fail fast, before starting anything
    except ConnectionFailed as exc:
        print(f"des demo: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    try:
        with run_simulator(seed=seed, records=records) as rs:
            return _story(rs, path, dsn, admin_db, rejects, seed, changes, console, started)
    except (DemoApiError, httpx.HTTPError, RuntimeError) as exc:
        print(f"des demo: {exc}", file=sys.stderr)
        return EXIT_CONNECTION


def _story(
    rs: RunningSimulator, path: Path, dsn: str, admin_db: Path, rejects: Path, seed: int, changes: int,
    console: Console, started: float,
) -> int:  # fmt: skip
    org = rs.sim.state.organization.organization_id
    counts = ", ".join(f"{len(rs.sim.truth(t)):,} {t}" for t in (*TABLES, *RELATIONSHIPS))
    console.print(f"[b]des demo[/b]: Dataverse simulator at {rs.environment_url} (organization {org}; {counts}) "
                  f"-> {escape(dsn)}", soft_wrap=True)  # fmt: skip
    root: Root = api_root(S.AppConfig.from_env(_env(admin_db, rejects, rs)))
    try:
        assert root.runtime is not None
        assert root.source is not None
        with DemoApi(root.runtime) as api, LocalWorker(root.source, poll_seconds=POLL_SECONDS):
            console.print(f"Admin API on {api.url} (admin key generated for this run; store sqlite:///{admin_db}); "
                          f"source worker in process (page queue in memory, poll every {POLL_SECONDS} s)",
                          soft_wrap=True)  # fmt: skip
            body = {
                "name": PROFILE_NAME, "organizationId": org, "destination": dsn, "entities": list(TABLES),
                "relationships": list(RELATIONSHIPS), "writeDeleteLog": True,
                "source": {"environmentUrl": rs.environment_url, "auth": {"kind": "developmentToken"}},
            }  # fmt: skip
            _, valid = api.call("POST", "/profiles/validate", json=body)
            console.print(_checks_table(f"POST /profiles/validate -> valid: {valid['valid']}", valid["checks"]))
            if not valid["valid"]:
                return 1
            status, created = api.call("POST", "/profiles", json=body)
            pid = str(created["id"])
            src = created["source"]
            console.print(f"POST /profiles -> {status}: {pid} ({created['state']}; source {src['environmentUrl']}, "
                          f"auth {src['auth']['kind']})")  # fmt: skip
            t0 = time.perf_counter()
            status, active = api.call("POST", f"/profiles/{pid}/activate")
            took = time.perf_counter() - t0
            console.print(f"POST /profiles/{pid}/activate -> {status}: {active['state']} in {took:.2f} s "
                          "(the initial sync is enqueued, one unit per page)")  # fmt: skip

            def source() -> dict[str, Any]:
                return dict(api.call("GET", f"/profiles/{pid}/source")[1])

            console.print("[b]Initial sync[/b] (GET /profiles/{id}/source):")
            t0 = time.perf_counter()
            synced = _watch(
                "the initial sync",
                lambda: all(e["InitialSyncState"] == "Completed" for e in source()["entities"]),
                lambda: _source_line(source()), console,
            )  # fmt: skip
            initial_seconds = time.perf_counter() - t0
            if synced:
                console.print(f"  initial sync completed in {initial_seconds:.1f} s")
            console.print("[b]Live changes[/b] in the environment:")
            _live_changes(rs, changes, seed, console)
            t0 = time.perf_counter()

            def differing() -> str:
                rows = _comparisons(dsn, rs)
                bad = [f"{c.entity} {len(c.missing) + len(c.unexpected) + len(c.mismatched)}" for c in rows if not c.ok]
                return "waiting for: " + ", ".join(bad) if bad else "the destination matches Dataverse"

            arrived = _watch("the live changes", lambda: all(c.ok for c in _comparisons(dsn, rs)), differing, console)
            if arrived:
                console.print(f"  arrived in {time.perf_counter() - t0:.1f} s (poll every {POLL_SECONDS} s)")
            console.print(_status_table(api, pid))
        final = _comparisons(dsn, rs)
    finally:
        root.close()
    console.print(_comparison_table(final))
    for c in final:
        for line in c.problems():
            console.print(f"  [red]{escape(line)}[/red]")
    seconds = time.perf_counter() - started
    ok = all(c.ok for c in final)
    if ok:
        console.print(f"[green]Converged[/green]: the destination matches the environment, in {seconds:.1f} s.")
        console.print(f'Look inside: sqlite3 {path} "SELECT name, revenue, address1_city FROM account LIMIT 5"',
                      soft_wrap=True)  # fmt: skip
    else:
        console.print(f"[red]The demo failed: the destination does not match the environment[/red] ({seconds:.1f} s).")
    log.info("demo finished in %.2f s: ok=%s", seconds, ok)
    return 0 if ok else 1
