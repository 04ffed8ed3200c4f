"""Fan-out to two profiles with two real destinations (a SQLite file and a PostgreSQL database),
managed through the admin API: activation, deactivation (skipped, not applied), a destination
that is down (only that profile's notifications wait), unrouted notifications, metrics recorded
in one store call per batch, delete (profile and metrics gone, destination tables kept), and the
PostgreSQL password in no response and no log line.

Key Vault is :class:`tests.support.admin.KeyVaultDouble` (a test double at the HTTP boundary).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared.api import ApiServices, AuthConfig, create_app
from shared.config import ProfilesConfig
from shared.profiles.fanout import FanOutResult
from shared.root import ProfileRuntime, build_runtime
from tests.support.admin import ADMIN_KEY, KeyVaultDouble, auth, secret_uri, vault_resolver
from tests.support.postgres import admin_dsn, fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
OTHER_ORG = "9a2504e0-4f89-11d3-9a0c-0305e82c3302"
PG_PASSWORD = f"Fanout-Pw-{uuid.uuid4().hex[:10]}"


def note(entity: str, i: int, version: int, org: str = ORG, change: str = "update", **attrs: Any) -> dict[str, Any]:
    n: dict[str, Any] = {
        "schemaVersion": 1,
        "organizationId": org,
        "entity": entity,
        "recordId": f"00000000-0000-0000-0000-{i:012d}",
        "changeType": change,
        "version": version,
        "changedOn": f"2026-11-21T10:{version % 60:02d}:00Z",
    }
    if change != "delete":
        n["attributes"] = {"name": f"{entity} {i} v{version}", **attrs}
    return n


@dataclass
class World:
    client: TestClient
    rt: ProfileRuntime
    vault: KeyVaultDouble
    sqlite_path: Path
    pg_dsn: str
    responses: list[str]

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.client.request(method, path, headers=auth(), **kwargs)
        self.responses.append(r.text)
        return r

    def send(self, *notes: dict[str, Any]) -> FanOutResult:
        out = self.rt.fanout.apply_bodies([json.dumps(list(notes))])
        self.rt.store.record_batch(out.metrics_entries())  # what the handler does, once per batch
        return out

    def sqlite_rows(self, table: str) -> dict[str, str]:
        with sqlite3.connect(self.sqlite_path) as conn:
            return dict(conn.execute(f'SELECT "Id", name FROM "{table}"').fetchall())

    def pg_rows(self, table: str) -> dict[str, str]:
        with psycopg.connect(self.pg_dsn) as conn:
            return {str(r[0]): r[1] for r in conn.execute(f'SELECT "Id", name FROM public."{table}"')}

    def metrics(self, pid: str) -> dict[str, dict[str, Any]]:
        body = self.call("GET", f"/profiles/{pid}/metrics").json()
        return {e["entity"]: e for e in body["entities"]}


@pytest.fixture
def pg_with_password() -> Iterator[str]:
    """A fresh database owned by a new login role with a distinctive password."""
    role = f"des_fo_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
    try:
        with fresh_database() as dsn:
            name = urlsplit(dsn).path.lstrip("/")
            with psycopg.connect(admin_dsn(), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" OWNER TO {role}')
            parts = urlsplit(dsn)
            yield urlunsplit(parts._replace(netloc=f"{role}:{PG_PASSWORD}@{parts.hostname}:{parts.port}"))
    finally:
        with psycopg.connect(admin_dsn(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def world(tmp_path: Path, pg_with_password: str, caplog: pytest.LogCaptureFixture) -> Iterator[World]:
    caplog.set_level(logging.DEBUG)
    sqlite_path = tmp_path / "dest.db"
    vault = KeyVaultDouble(
        {
            "sqlite-dest": f"sqlite:///{sqlite_path}",
            "pg-dest": pg_with_password,
            "down-dest": f"postgresql://nobody:{PG_PASSWORD}@127.0.0.1:1/none",
        }
    )
    rt = build_runtime(
        ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", profile_cache_seconds=60),
        resolver=vault_resolver(vault),
    )
    app = create_app(ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=ADMIN_KEY)))
    with TestClient(app) as client:
        yield World(client, rt, vault, sqlite_path, pg_with_password, [])
    rt.close()


def create(w: World, name: str, secret: str, entities: list[str], org: str = ORG, **extra: Any) -> str:
    body = {"name": name, "organizationId": org, "destination": secret_uri(secret), "entities": entities, **extra}
    r = w.call("POST", "/profiles", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_fan_out_to_two_destinations_with_deactivate_and_delete(world: World, caplog: pytest.LogCaptureFixture) -> None:
    w = world
    a = create(w, "to sqlite", "sqlite-dest", ["account", "contact"])
    b = create(w, "to postgres", "pg-dest", ["account"], prefix="crm")
    draft = create(w, "other org draft", "sqlite-dest", ["account"], org=OTHER_ORG)
    for pid in (a, b):
        r = w.call("POST", f"/profiles/{pid}/activate")
        assert r.status_code == 200, r.text

    # 1. both profiles get the accounts; contacts only go to SQLite; lead and the other org are unrouted
    out = w.send(
        note("account", 1, 1, change="create"), note("account", 2, 1, change="create"), note("account", 1, 2),
        note("contact", 7, 1, change="create"), note("lead", 9, 1, change="create"),
        note("account", 3, 1, org=OTHER_ORG, change="create"),
    )  # fmt: skip
    assert set(out.outcomes) == {a, b}
    assert out.unrouted == {"lead": 1, "account": 1}
    assert all(o.error is None for o in out.outcomes.values())
    assert w.sqlite_rows("account") == {
        "00000000-0000-0000-0000-000000000001": "account 1 v2",
        "00000000-0000-0000-0000-000000000002": "account 2 v1",
    }
    assert w.sqlite_rows("contact") == {"00000000-0000-0000-0000-000000000007": "contact 7 v1"}
    assert w.pg_rows("crm_account") == w.sqlite_rows("account")
    ma, mb = w.metrics(a), w.metrics(b)
    assert (
        ma["account"]["TotalNotifications"],
        ma["account"]["SuccessNotifications"],
        ma["account"]["StaleNotifications"],
    ) == (3, 2, 1)
    assert ma["contact"]["SuccessNotifications"] == 1
    assert set(mb) == {"account"}
    assert mb["account"]["SuccessNotifications"] == 2
    assert mb["account"]["LastExportStatus"] == "Success"
    assert mb["account"]["lagSeconds"] > 0
    unrouted = {e["entity"]: e["SkippedNotifications"] for e in w.call("GET", "/metrics").json()["unrouted"]}
    assert unrouted == {"lead": 1, "account": 1}

    # 2. deactivate the PostgreSQL profile: SQLite moves on, PostgreSQL keeps the old state
    assert w.call("POST", f"/profiles/{b}/deactivate").json()["state"] == "inactive"
    out = w.send(note("account", 1, 3), note("account", 2, 3))
    assert out.outcomes[b].notifications == []
    assert out.outcomes[b].skipped == {"account": 2}
    assert w.sqlite_rows("account")["00000000-0000-0000-0000-000000000001"] == "account 1 v3"
    assert w.pg_rows("crm_account")["00000000-0000-0000-0000-000000000001"] == "account 1 v2"
    mb = w.metrics(b)
    assert (mb["account"]["SkippedNotifications"], mb["account"]["SuccessNotifications"]) == (2, 2)

    # 3. activate again: applying resumes
    assert w.call("POST", f"/profiles/{b}/activate").json()["state"] == "active"
    w.send(note("account", 1, 4))
    assert w.pg_rows("crm_account")["00000000-0000-0000-0000-000000000001"] == "account 1 v4"

    # 4. a third profile whose destination is down: its notifications wait, the others are applied
    c = create(w, "down", "down-dest", ["account"])
    assert w.call("POST", f"/profiles/{c}/activate", params={"check": "false"}).status_code == 200
    out = w.send(note("account", 1, 5))
    assert out.outcomes[c].error is not None
    assert out.outcomes[c].pending == 1
    applied = out.outcomes[a].result
    assert applied is not None
    assert applied.applied == 1
    assert w.pg_rows("crm_account")["00000000-0000-0000-0000-000000000001"] == "account 1 v5"
    assert w.call("GET", f"/profiles/{c}/metrics").json()["pendingRetry"] == 1

    # 5. delete the SQLite profile: gone with its metrics, its tables stay
    assert w.call("DELETE", f"/profiles/{a}").status_code == 200
    assert w.call("GET", f"/profiles/{a}").status_code == 404
    assert w.rt.store.metrics(a).entities == []
    out = w.send(note("contact", 7, 2))
    assert a not in out.outcomes
    assert out.unrouted == {"contact": 1}
    assert w.sqlite_rows("contact") == {"00000000-0000-0000-0000-000000000007": "contact 7 v1"}  # kept, not updated
    assert draft not in out.outcomes

    # the PostgreSQL password: in no response, no log line
    for text in w.responses:
        assert PG_PASSWORD not in text
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert PG_PASSWORD not in logged


def test_profile_lookups_are_cached_briefly(world: World) -> None:
    w = world
    pid = create(w, "cached", "sqlite-dest", ["account"])
    w.call("POST", f"/profiles/{pid}/activate")
    loads = w.rt.directory.loads
    for v in range(1, 6):
        w.send(note("account", 1, v, change="create" if v == 1 else "update"))
    assert w.rt.directory.loads == loads + 1  # one store read for five batches
    assert w.sqlite_rows("account") == {"00000000-0000-0000-0000-000000000001": "account 1 v5"}
