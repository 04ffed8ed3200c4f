"""``POST /sources/tables`` against the Dataverse simulator: the environment's tables from its metadata,
a table with change tracking off flagged with the reason, a refused token and an unreachable
environment answered with the reason, behind the admin key, in the OpenAPI schema.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared import config as S
from shared.api import ApiServices, AuthConfig, create_app
from shared.root import api_root
from shared.tools.dataverse_sim import RunningSimulator, run_simulator
from tests.support.admin import ADMIN_KEY

pytestmark = pytest.mark.integration

HEADERS = {"x-functions-key": ADMIN_KEY}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with run_simulator(records=3, seed=2) as running:
        yield running


def client_for(tmp_path: Path, token: str) -> Iterator[TestClient]:
    env = {S.ADMIN_STORE: f"sqlite:///{tmp_path / 'admin.db'}", S.ALLOW_LITERAL_DESTINATIONS: "true",
           S.DATAVERSE_TOKEN: token, S.REJECTS_DIR: str(tmp_path / "rejects")}  # fmt: skip
    root = api_root(S.AppConfig.from_env(env))
    try:
        rt = root.runtime
        assert rt is not None
        app = create_app(ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=ADMIN_KEY)))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        root.close()


@pytest.fixture
def client(tmp_path: Path, sim: RunningSimulator) -> Iterator[TestClient]:
    yield from client_for(tmp_path, sim.token)


def source(url: str) -> dict[str, Any]:
    return {"environmentUrl": url, "auth": {"kind": "developmentToken"}}


def test_tables_listed_with_change_tracking_flagged(client: TestClient, sim: RunningSimulator) -> None:
    r = client.post("/sources/tables", json=source(sim.environment_url), headers=HEADERS)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["environmentUrl"] == sim.environment_url.rstrip("/")
    tables = {t["logicalName"]: t for t in doc["tables"]}
    assert [t["logicalName"] for t in doc["tables"]] == sorted(tables)
    assert set(tables) == set(sim.sim.state.entities)
    account = tables["account"]
    assert account["entitySetName"] == "accounts"
    assert account["changeTrackingEnabled"] is True
    assert account["exportable"] is True
    assert account["reason"] is None
    assert account["displayName"] == "Account"
    user = tables["systemuser"]
    assert user["changeTrackingEnabled"] is False
    assert user["exportable"] is False
    assert "change tracking is off" in user["reason"]
    assert tables["des_account_contact"]["isIntersect"] is True
    assert tables["des_account_contact"]["exportable"] is True
    # the flags follow the environment's metadata, not a list of ours
    assert {n for n, t in tables.items() if t["changeTrackingEnabled"]} == {
        n for n, e in sim.sim.state.entities.items() if sim.sim.state.change_tracking_enabled(e)
    }


def test_refused_token_answered_with_the_reason(tmp_path: Path, sim: RunningSimulator) -> None:
    for client in client_for(tmp_path, "not-the-simulators-token"):
        r = client.post("/sources/tables", json=source(sim.environment_url), headers=HEADERS)
        assert r.status_code == 409, r.text  # a valid request the source refuses (schemathesis: not a 422)
        assert "refused the token (HTTP 401)" in r.json()["detail"]
        assert "not-the-simulators-token" not in r.text


def test_unreachable_environment_is_503_and_bad_bodies_4xx(client: TestClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = client.post("/sources/tables", json=source(f"http://127.0.0.1:{port}"), headers=HEADERS)
    assert r.status_code == 503, r.text
    assert "the source could not be read" in r.json()["detail"]
    r = client.post("/sources/tables", json=source("http://contoso.crm.dynamics.com"), headers=HEADERS)
    assert r.status_code == 422
    assert "https" in r.text
    r = client.post("/sources/tables", json={"environmentUrl": "https://contoso.crm.dynamics.com"}, headers=HEADERS)
    assert r.status_code == 422
    assert client.post("/sources/tables", json=source("https://contoso.crm.dynamics.com")).status_code == 401


def test_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json", headers=HEADERS).json()
    op = schema["paths"]["/sources/tables"]["post"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SourceTablesOut")
    assert {"409", "422", "503", "401"} <= set(op["responses"])
    assert "changeTrackingEnabled" in schema["components"]["schemas"]["SourceTableOut"]["properties"]
