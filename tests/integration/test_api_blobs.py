"""The admin API's failure routes and profile deletion on a real Azurite (issue 3's blob stores):
failure log by time range as JSON and streamed CSV, re-sync from the parked (encrypted) failed
notifications with stale ones skipped, and delete removing the profile's blobs in every container
while another profile's stay."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared.api import ApiServices, AuthConfig, create_app
from shared.config import ProfilesConfig
from shared.contract.models import Notification, notification_doc
from shared.contract.parse import parse_bodies
from shared.engine.outcomes import RecordFailure
from shared.profiles.blob_ports import PROFILE_CONTAINERS, BlobFailureLog, BlobParkedFailureReader, BlobProfileBlobs
from shared.root import ProfileRuntime, build_runtime
from shared.storage.account import Storage
from tests.support.admin import ADMIN_KEY, KeyVaultDouble, auth, secret_uri, vault_resolver
from tests.support.metadata_scenarios import attr, metadata

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def notification(i: int, version: int, **attrs: Any) -> Notification:
    return Notification.model_validate(
        {
            "schemaVersion": 1,
            "organizationId": ORG,
            "entity": "account",
            "recordId": f"00000000-0000-0000-0000-{i:012d}",
            "changeType": "update",
            "version": version,
            "changedOn": "2026-11-21T10:00:00Z",
            "attributes": {"name": f"a{i} v{version}", **attrs},
        }
    )


class Setup:
    def __init__(self, client: TestClient, rt: ProfileRuntime, storage: Storage, dest: Path) -> None:
        self.client, self.rt, self.storage, self.dest = client, rt, storage, dest

    def call(self, method: str, path: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers={**auth(), **kw.pop("headers", {})}, **kw)

    def profile(self, name: str) -> str:
        body = {"name": name, "organizationId": ORG, "destination": secret_uri("dest"), "entities": ["account"]}
        pid = str(self.call("POST", "/profiles", json=body).json()["id"])
        assert self.call("POST", f"/profiles/{pid}/activate").status_code == 200
        return pid

    def fail(self, pid: str, *notes: Notification) -> None:
        """What the sync path does with records the destination rejected (issue 3's stores)."""
        failures = [RecordFailure(n, f"destination rejected record {n.recordId}") for n in notes]
        self.storage.failure_log.append(pid, failures)
        self.storage.parked.put(pid, failures)

    def rows(self) -> dict[str, str]:
        with sqlite3.connect(self.dest) as conn:
            return dict(conn.execute('SELECT "Id", name FROM account').fetchall())


@pytest.fixture
def setup(storage: Storage, tmp_path: Path) -> Iterator[Setup]:
    vault = KeyVaultDouble({"dest": f"sqlite:///{tmp_path / 'dest.db'}"})
    rt = build_runtime(
        ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}"),
        resolver=vault_resolver(vault),
        failure_log=BlobFailureLog(storage),
        parked=BlobParkedFailureReader(storage),
        blobs=BlobProfileBlobs(storage),
    )
    app = create_app(ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=ADMIN_KEY)))
    with TestClient(app) as client:
        yield Setup(client, rt, storage, tmp_path / "dest.db")
    rt.close()


def test_failures_download_json_and_csv_by_time_range(setup: Setup) -> None:
    pid = setup.profile("p")
    setup.fail(pid, notification(1, 5), notification(2, 6))
    r = setup.call("GET", f"/profiles/{pid}/failures")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    rows = r.json()
    assert [(x["RecordId"], x["Version"]) for x in rows] == [
        ("00000000-0000-0000-0000-000000000001", "5"),
        ("00000000-0000-0000-0000-000000000002", "6"),
    ]
    assert rows[0]["FailureReason"].startswith("destination rejected")
    c = setup.call("GET", f"/profiles/{pid}/failures", headers={"accept": "text/csv"})
    assert c.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(c.text)))
    assert [x["RecordId"][-1] for x in parsed] == ["1", "2"]
    past = datetime.now(UTC) - timedelta(days=3)
    empty = setup.call(
        "GET",
        f"/profiles/{pid}/failures",
        params={"start": past.isoformat(), "end": (past + timedelta(hours=1)).isoformat()},
    )
    assert empty.json() == []
    assert setup.call("GET", f"/profiles/{pid}/failures/links").status_code == 409  # Azurite: shared key, no SAS


def test_resync_reapplies_parked_failures_and_skips_stale(setup: Setup) -> None:
    pid = setup.profile("p")
    setup.rt.fanout.apply_bodies([json.dumps(notification_doc(notification(2, 9)))])  # a newer change arrived
    setup.fail(pid, notification(1, 5), notification(2, 6))
    r = setup.call("POST", f"/profiles/{pid}/failures/resync", json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["selected"] == 2
    assert body["missing"] == 0
    assert (body["counts"]["applied"], body["counts"]["stale"]) == (1, 1)
    assert setup.rows() == {
        "00000000-0000-0000-0000-000000000001": "a1 v5",
        "00000000-0000-0000-0000-000000000002": "a2 v9",
    }
    only = setup.call(
        "POST", f"/profiles/{pid}/failures/resync", json={"recordIds": ["00000000-0000-0000-0000-000000000001"]}
    )
    assert only.json()["selected"] == 1


def test_delete_removes_the_profiles_blobs_only(setup: Setup) -> None:
    gone, kept = setup.profile("gone"), setup.profile("kept")
    for pid in (gone, kept):
        setup.fail(pid, notification(1, 5))
        setup.storage.retries.park(
            pid,
            [notification_doc(notification(3, 1))],
            reason="down",
            now=datetime.now(UTC),
            not_before=datetime.now(UTC),
        )

    def count(pid: str) -> int:
        return sum(len(list(setup.storage.stores.names(c, f"{pid}/"))) for c in PROFILE_CONTAINERS)

    assert count(gone) == 3
    r = setup.call("DELETE", f"/profiles/{gone}")
    assert r.status_code == 200
    assert r.json()["blobsDeleted"] == 3
    assert count(gone) == 0
    assert count(kept) == 3
    assert setup.call("GET", f"/profiles/{gone}/failures").status_code == 404


def test_a_failed_long_money_value_is_downloaded_and_resynced_exactly(setup: Setup) -> None:
    """A failure logged with a money value of 38 significant digits (more than a double holds): its
    parked copy (encrypted, failednotifications/) re-syncs without a source with every digit."""
    money = Decimal("1234567890123456789012345678901234.5678")
    pid = setup.profile("p")
    md = metadata("account", 1, attr("accountid", "Uniqueidentifier"), attr("name", "String", maxLength=160),
                  attr("revenue", "Money", precision=4))  # fmt: skip
    setup.rt.fanout.apply_bodies([json.dumps({**md, "organizationId": ORG})])  # a DECIMAL(38,4) column
    body = json.dumps(notification_doc(notification(1, 5))).replace('"a1 v5"}', f'"a1 v5", "revenue": {money}}}')
    [n] = parse_bodies([body]).notifications
    setup.fail(pid, n)
    rows = setup.call("GET", f"/profiles/{pid}/failures").json()
    assert [(x["RecordId"], x["Version"]) for x in rows] == [("00000000-0000-0000-0000-000000000001", "5")]
    r = setup.call("POST", f"/profiles/{pid}/failures/resync", json={})
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["applied"] == 1
    with sqlite3.connect(setup.dest) as conn:
        [(value, kind)] = conn.execute("SELECT revenue, typeof(revenue) FROM account").fetchall()
    assert kind == "text"  # the exact text (the column has no affinity), never a double
    assert Decimal(value) == money
