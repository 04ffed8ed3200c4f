"""The admin console end to end in a real headless Chromium against the real admin API (uvicorn,
embedded SQLite store, Azurite for the failure log): sign in with the admin key, create a profile
through the wizard (the API's own validation message shown at the field), validate and test the
destination (each named check), activate it, feed the simulator's notifications through the
Service Bus handler (the demo's path) and see them arrive in the status table, the charts, the
failures with a CSV download and a re-sync, the list, a phone-sized view, deactivate, delete.
Without Blob storage the failures page shows the API's 503 reason.

Screenshots of each page (1280x800, one 390x844) go where ``DES_CONSOLE_SCREENSHOTS`` says
(docs/console/ for the README) or to tmp_path.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.config import ProfilesConfig
from shared.handlers import handle_notifications
from shared.root import Root, build_runtime, profiles_root
from shared.storage.account import Storage
from shared.tools.crm_simulator import CrmSimulator
from shared.tools.demo import bad_bodies
from tests.browser.conftest import DESKTOP, PHONE, Served, serve

pytestmark = [pytest.mark.browser, pytest.mark.integration]

BATCH = 20


class StoreClock:
    """The admin store's clock: real time, or a past moment while the test replays older traffic."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


def _retime(body: str, at: datetime, delay: float, rng: random.Random) -> str:
    """``changedOn`` a few seconds before ``at`` (Dataverse's delivery delay: the lag the console shows)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body  # a deliberately broken body stays broken
    for n in doc if isinstance(doc, list) else [doc]:
        if isinstance(n, dict) and "changedOn" in n:
            n["changedOn"] = (at - timedelta(seconds=delay + rng.uniform(0, 3))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(doc)


def feed(
    c: Root, bodies: Iterable[str], clock: StoreClock, rng: random.Random, minutes_ago: tuple[float, float]
) -> None:
    """Batches through the function app's Service Bus handler (the demo's path), spread from
    ``minutes_ago[0]`` to ``minutes_ago[1]`` minutes ago by the store's clock (the metrics history)."""
    items = list(bodies)
    batches = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
    now = datetime.now(UTC)
    first, last = minutes_ago
    for k, batch in enumerate(batches):
        at = now - timedelta(minutes=first + (last - first) * k / max(1, len(batches) - 1))
        clock.at = at if first or last else None
        delay = rng.uniform(1, 40)
        handle_notifications([_retime(b, at, delay, rng) for b in batch], c)
    clock.at = None


def screenshot(page: Any, path: Path, *, full_page: bool = False) -> None:
    """A screenshot once a passing message (the toast) has gone."""
    from playwright.sync_api import expect

    expect(page.locator("#toast.show")).to_have_count(0, timeout=7_000)
    page.screenshot(path=path, full_page=full_page)


def metric(served: Served, pid: str, entity: str, name: str) -> int:
    m = served.api("GET", f"/profiles/{pid}/metrics").json()
    return int(next(e[name] for e in m["entities"] if e["entity"] == entity))


def page_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    return errors


def test_console_end_to_end(browser: Any, storage: Storage, tmp_path: Path, shots: Path) -> None:
    from playwright.sync_api import expect

    rt = build_runtime(
        ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True), storage=storage
    )
    sim = CrmSimulator(11, accounts=60, contacts=60, opportunities=40)
    rng = random.Random(11)
    clock = StoreClock()
    rt.store.clock = clock
    dest = tmp_path / "crm.db"
    try:
        with serve(rt) as served:
            context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
            page = context.new_page()
            errors = page_errors(page)

            # -- sign in: a wrong key gets the API's reason, the right one the profiles page
            page.goto(served.url + "/console")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.screenshot(path=shots / "01-sign-in.png")
            page.get_by_label("Admin key").fill("not-the-key")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("the admin key is not valid")
            page.get_by_label("Admin key").fill(served.key)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Export profiles")).to_be_visible()
            expect(page.get_by_text("No export profiles yet.")).to_be_visible()

            # -- the wizard: the API's validation message at the field, then validate, create
            page.get_by_role("link", name="New profile").first.click()
            expect(page.get_by_role("heading", name="New export profile")).to_be_visible()
            page.get_by_label("Name", exact=True).fill("Sales to reporting")
            page.get_by_label("Organization id").fill(sim.organization_id)
            page.get_by_label("Destination").fill(f"sqlite:///{dest}")
            page.get_by_label("Table prefix").fill("crm-1")
            page.get_by_label("Retry count").fill("3")
            page.get_by_label("Retry interval (seconds)").fill("1")
            page.get_by_label("Keep a delete log").check()
            page.get_by_role("button", name="Next").click()
            page.get_by_label("Entities (logical names)").fill("account\ncontact\nopportunity")
            page.get_by_role("button", name="Next").click()
            page.get_by_role("button", name="Next").click()
            expect(page.locator(".review")).to_contain_text("account, contact, opportunity")
            page.get_by_role("button", name="Create draft").click()
            prefix_error = page.locator("#f-prefix-error")
            expect(prefix_error).to_contain_text("prefix must be alphanumeric and fewer than 15 characters")
            expect(page.get_by_label("Table prefix")).to_be_focused()
            expect(page.get_by_label("Table prefix")).to_have_attribute("aria-invalid", "true")
            expect(page.get_by_role("alert")).to_contain_text("HTTP 422")
            page.screenshot(path=shots / "03-new-profile.png")
            assert served.api("GET", "/profiles").json() == []  # nothing created

            page.get_by_label("Table prefix").fill("crm")
            page.get_by_role("button", name="Validate").click()
            checks = page.get_by_role("region", name="Validation: passed")
            expect(checks).to_be_visible()
            for name in ("destination", "name", "secret", "connect", "create table", "drop table"):
                expect(checks.locator("li", has_text=name).first).to_be_visible()
            page.get_by_role("button", name="Create draft").click()

            # -- the profile: draft, test the destination, activate (with confirmation)
            expect(page.get_by_role("heading", name="Sales to reporting")).to_be_visible()
            (profile,) = served.api("GET", "/profiles").json()
            pid = profile["id"]
            assert (profile["state"], profile["prefix"], profile["retryCount"]) == ("draft", "crm", 3)
            assert profile["entities"] == ["account", "contact", "opportunity"]
            expect(page.locator(".page-head .badge")).to_have_text("draft")
            page.get_by_role("button", name="Test destination").click()
            expect(page.get_by_role("region", name="Destination test: passed")).to_contain_text("create table")
            page.get_by_role("button", name="Activate").click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text("The destination is checked live first")
            dialog.get_by_role("button", name="Activate").click()
            expect(page.locator(".page-head .badge")).to_have_text("active")
            assert served.api("GET", f"/profiles/{pid}").json()["state"] == "active"

            # -- notifications through the Service Bus handler arrive in the status table
            # (the last hour's traffic first, then live batches)
            c = profiles_root(rt, storage=storage)
            feed(c, sim.deliver(sim.initial_sync(), 0.02, 20, 10), clock, rng, (58, 48))
            changes = list(sim.changes(900))
            sample = json.dumps(changes[0])
            feed(c, sim.deliver(changes[:400], 0.05, 20, 10), clock, rng, (46, 25))
            feed(c, bad_bodies(sim, rng, sample), clock, rng, (24, 24))
            feed(c, sim.deliver(changes[400:800], 0.05, 20, 10), clock, rng, (23, 2))
            total = metric(served, pid, "account", "TotalNotifications")
            assert total >= 60
            cell = page.locator('tr[data-entity="account"] td[data-col="TotalNotifications"]')
            expect(cell).to_have_text(f"{total:,}", timeout=15_000)  # refreshed every 5 s
            feed(c, [*sim.deliver(changes[800:], 0.05, 20, 10), *bad_bodies(sim, rng, sample)], clock, rng, (0, 0))
            total2 = metric(served, pid, "account", "TotalNotifications")
            failed = metric(served, pid, "account", "FailureNotifications")
            assert total2 > total
            assert failed >= 4  # the misfit values: failed records, logged
            expect(cell).to_have_text(f"{total2:,}", timeout=15_000)
            expect(page.locator('tr[data-entity="account"] td[data-col="FailureNotifications"]')).to_have_text(
                f"{failed:,}"
            )
            expect(page.locator("tfoot td[data-col='TotalNotifications']")).to_have_text(
                f"{served.api('GET', f'/profiles/{pid}/metrics').json()['totals']['TotalNotifications']:,}"
            )
            expect(page.locator(".chart-slot svg rect").first).to_be_visible()
            screenshot(page, shots / "04-profile.png")

            # -- charts from the metrics history
            page.get_by_role("link", name="Charts").click()
            expect(page.get_by_role("heading", name="Charts of “Sales to reporting”")).to_be_visible()
            figures = page.locator("figure.chart-box")
            expect(figures).to_have_count(3)
            expect(figures.nth(0).locator("svg rect").first).to_be_visible()
            expect(figures.nth(1).locator("svg path").first).to_be_attached()
            expect(figures.nth(2).locator("svg path").first).to_be_attached()
            page.get_by_label("Time window").select_option("60")
            history = served.api("GET", f"/profiles/{pid}/metrics/history?minutes=60").json()
            in_history = sum(p["TotalNotifications"] for e in history["entities"] for p in e["points"])
            assert in_history == served.api("GET", f"/profiles/{pid}/metrics").json()["totals"]["TotalNotifications"]
            desc = figures.nth(0).locator("desc")
            expect(desc).to_have_text(re.compile(rf"^{in_history} notifications in the window"))
            expect(page.locator("main")).to_contain_text("per minute. Updated every 30 s.")
            screenshot(page, shots / "05-charts.png", full_page=True)  # 1280 wide, all three charts

            # -- failures: the log, the entity filter, the CSV download, re-sync of a selection
            page.go_back()
            page.get_by_role("link", name="Failures").click()
            expect(page.get_by_role("heading", name="Failures of “Sales to reporting”")).to_be_visible()
            logged = served.api("GET", f"/profiles/{pid}/failures").json()
            assert len(logged) >= 4
            rows = page.locator("table.failures tbody tr")
            expect(rows).to_have_count(len(logged))
            expect(rows.first).to_contain_text(logged[0]["FailureReason"][:40])
            screenshot(page, shots / "06-failures.png")
            page.get_by_label("Entity").select_option("account")
            page.get_by_role("button", name="Show failures").click()
            expect(rows).to_have_count(len([r for r in logged if r["Entity"] == "account"]))
            with page.expect_download() as download:
                page.get_by_role("button", name="Download CSV").click()
            saved = Path(download.value.path()).read_text(encoding="utf-8")
            assert download.value.suggested_filename.startswith("failures-Sales_to_reporting-")
            parsed = list(csv.DictReader(io.StringIO(saved)))
            assert list(parsed[0]) == ["Entity", "RecordId", "NotificationTime", "ChangeType", "Version",
                                       "FailureReason", "LoggedAt"]  # fmt: skip
            assert {(r["RecordId"], r["Version"]) for r in parsed} == {(r["RecordId"], r["Version"]) for r in logged}
            rows.first.get_by_role("checkbox").check()
            page.get_by_role("button", name="Re-sync selected (1)").click()
            page.get_by_role("dialog").get_by_role("button", name="Re-sync").click()
            expect(page.locator(".notice")).to_contain_text("Re-sync: 1 selected, 0 without a parked notification")

            # -- the list: state, entities, last sync, failures in the last 24 hours
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Profiles").click()
            row = page.locator("table.profiles tbody tr")
            expect(row).to_have_count(1)
            failures24 = sum(
                p["FailureNotifications"]
                for e in served.api("GET", f"/profiles/{pid}/metrics/history?minutes=1440").json()["entities"]
                for p in e["points"]
            )
            assert failures24 >= failed
            expect(row.locator("td").nth(3)).to_have_text(f"{failures24:,}")
            expect(row).to_contain_text("active")
            expect(row).to_contain_text("3: account, contact, opportunity")
            screenshot(page, shots / "02-profiles.png")

            # -- on a phone: the same page, no sideways scrolling of the page itself
            phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
            phone.add_init_script(f"sessionStorage.setItem('des-admin-key', {json.dumps(served.key)})")
            small = phone.new_page()
            phone_errors = page_errors(small)
            small.goto(f"{served.url}/console/#/profiles/{pid}")
            expect(small.get_by_role("heading", name="Sales to reporting")).to_be_visible()
            expect(small.locator('tr[data-entity="account"] td[data-col="TotalNotifications"]')).to_have_text(
                f"{metric(served, pid, 'account', 'TotalNotifications'):,}"
            )
            assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            small.screenshot(path=shots / "07-phone-profile.png")
            phone.close()

            # -- edit: the API's message for a bad entity name at its field, then a saved change
            row.get_by_role("link", name="Sales to reporting").click()
            page.get_by_role("link", name="Edit").click()
            expect(page.get_by_role("heading", name="Edit “Sales to reporting”")).to_be_visible()
            page.get_by_label("Retry count").fill("5")
            page.get_by_role("button", name="2. Entities").click()
            page.get_by_label("Entities (logical names)").fill("account\ncontact\nopportunity\nBad-Name")
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#f-entities-error")).to_contain_text("entities[3]: entities must be logical names")
            expect(page.get_by_label("Entities (logical names)")).to_be_focused()
            page.get_by_label("Entities (logical names)").fill("account\ncontact\nopportunity\nlead")
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_role("heading", name="Sales to reporting")).to_be_visible()
            expect(page.locator("dl.definition")).to_contain_text("5 \u00d7 every 1 s")
            edited = served.api("GET", f"/profiles/{pid}").json()
            assert (edited["retryCount"], edited["entities"][-1], edited["revision"]) == (5, "lead", 3)
            assert edited["destination"] == profile["destination"]  # left empty: kept

            # -- deactivate, then delete, each confirmed
            page.get_by_role("button", name="Deactivate").click()
            page.get_by_role("dialog").get_by_role("button", name="Deactivate").click()
            expect(page.locator(".page-head .badge")).to_have_text("inactive")
            page.get_by_role("button", name="Delete").click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text("The destination's tables are kept")
            dialog.get_by_role("button", name="Delete profile").click()
            expect(page.get_by_text("No export profiles yet.")).to_be_visible()
            assert served.api("GET", f"/profiles/{pid}").status_code == 404
            assert dest.exists()  # never the destination's tables
            context.close()
            assert errors == []
            assert phone_errors == []
    finally:
        rt.close()


def test_failures_page_shows_the_api_reason_without_blob_storage(browser: Any, tmp_path: Path, shots: Path) -> None:
    from playwright.sync_api import expect

    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True))
    try:
        with serve(rt) as served:
            body = {
                "name": "No blobs", "organizationId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
                "destination": f"sqlite:///{tmp_path / 'd.db'}", "entities": ["account"],
            }  # fmt: skip
            pid = served.api("POST", "/profiles", json=body).json()["id"]
            context = browser.new_context(viewport=DESKTOP)
            context.add_init_script(f"sessionStorage.setItem('des-admin-key', {json.dumps(served.key)})")
            page = context.new_page()
            errors = page_errors(page)
            page.goto(f"{served.url}/console/#/profiles/{pid}/failures")
            alert = page.get_by_role("alert")
            expect(alert).to_contain_text("The failure log is not available (HTTP 503)")
            expect(alert).to_contain_text("the failure log (Blob storage) is not configured for this app")
            page.screenshot(path=shots / "08-failures-unavailable.png")
            context.close()
            assert errors == []
    finally:
        rt.close()


def test_wizard_offers_the_sources_tables(browser: Any, tmp_path: Path, shots: Path) -> None:
    """A profile with a Dataverse source (the simulator): "Load tables from the source" lists the
    environment's tables as checkboxes, a table without change tracking disabled with the reason; the
    picked tables and a typed one become the profile's entities, the source is stored with it."""
    from playwright.sync_api import expect

    from shared import config as S
    from shared.root import api_root
    from shared.tools.dataverse_sim import run_simulator

    with run_simulator(records=3, seed=5) as running:
        env = {S.ADMIN_STORE: f"sqlite:///{tmp_path / 'admin.db'}", S.ALLOW_LITERAL_DESTINATIONS: "true",
               S.DATAVERSE_TOKEN: running.token, S.REJECTS_DIR: str(tmp_path / "rejects")}  # fmt: skip
        root = api_root(S.AppConfig.from_env(env))
        try:
            assert root.runtime is not None
            with serve(root.runtime) as served:
                context = browser.new_context(viewport=DESKTOP)
                context.add_init_script(f"sessionStorage.setItem('des-admin-key', {json.dumps(served.key)})")
                page = context.new_page()
                errors = page_errors(page)
                page.goto(f"{served.url}/console/#/new")
                page.get_by_label("Name", exact=True).fill("From the source")
                page.get_by_label("Organization id").fill(running.sim.state.organization.organization_id)
                page.get_by_label("Destination").fill(f"sqlite:///{tmp_path / 'd.db'}")
                page.get_by_role("button", name="Next").click()
                load = page.get_by_role("button", name="Load tables from the source")
                expect(load).to_be_disabled()  # no source URL yet
                page.get_by_label("Dataverse environment URL (optional)").fill(running.environment_url)
                page.get_by_label("Authentication").select_option("developmentToken")
                load.click()
                expect(page.get_by_label("Account (account)")).to_be_enabled()
                user = page.get_by_label("Systemuser (systemuser)")
                expect(user).to_be_disabled()
                expect(page.locator("#t-systemuser-reason")).to_contain_text("change tracking is off")
                page.get_by_label("Account (account)").check()
                page.get_by_label("Contact (contact)").check()
                page.get_by_label("Contact (contact)").uncheck()
                page.get_by_label("Opportunity (opportunity)").check()
                entities = page.get_by_label("Entities (logical names)")
                expect(entities).to_have_value("account\nopportunity")
                entities.fill("account\nopportunity\nlead")  # a typed name is still allowed
                page.screenshot(path=shots / "09-wizard-source-tables.png", full_page=True)
                page.get_by_role("button", name="Create draft").click()
                expect(page.locator(".page-head .badge")).to_have_text("draft")
                (p,) = served.api("GET", "/profiles").json()
                assert p["entities"] == ["account", "opportunity", "lead"]
                assert p["source"]["environmentUrl"] == running.environment_url.rstrip("/")
                assert p["source"]["auth"]["kind"] == "developmentToken"
                context.close()
                assert errors == []
        finally:
            root.close()
