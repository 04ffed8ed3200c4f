"""A profile's source: the model's rules (clear 4xx reasons, Key Vault URIs only), its round trip
through the store and the API, and ``GET /profiles/{id}/source``."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared.api import ApiServices, AuthConfig, create_app
from shared.config import ProfilesConfig
from shared.profiles.model import DataverseSource, ProfileCreate, SourceAuth
from shared.pull.queue import InMemoryWorkQueue
from shared.pull.work import SourceWork
from shared.root import build_runtime
from shared.source.dataverse.cursors import CursorStore
from shared.source.dataverse.settings import DataverseSettings
from shared.store.sql import SqlStore
from tests.support.dataverse_double import ORG_ID, ORG_URL, DataverseDouble
from tests.support.fakes import FakeSourceSink

pytestmark = pytest.mark.unit

KV = "https://contoso-des.vault.azure.net/secrets/dataverse-secret"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
KEY = "k" * 32


@pytest.mark.parametrize(("auth", "reason"), [
    ({"kind": "clientSecret", "tenantId": TENANT, "clientId": CLIENT}, "needs clientSecretUri"),
    ({"kind": "clientSecret", "tenantId": TENANT, "clientId": CLIENT, "clientSecretUri": "s3cr3t"},
     "must be a Key Vault secret URI"),
    ({"kind": "certificate", "tenantId": TENANT, "clientSecretUri": KV}, "needs certificateUri, clientId"),
    ({"kind": "managedIdentity", "clientSecretUri": KV}, "takes no clientSecretUri"),
    ({"kind": "developmentToken", "clientId": CLIENT}, "takes no clientId"),
    ({"kind": "password"}, "Input should be"),
    ({"kind": "managedIdentity", "secret": "x"}, "Extra inputs are not permitted"),
])  # fmt: skip
def test_source_auth_rules(auth: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SourceAuth.model_validate(auth)
    assert reason in str(caught.value)
    assert "s3cr3t" not in str(caught.value)  # inputs are never echoed


@pytest.mark.parametrize(("url", "reason"), [
    ("http://contoso.crm.dynamics.com", "must use https"),
    ("ftp://contoso.crm.dynamics.com", "environment's URL"),
    ("https://user:pw@contoso.crm.dynamics.com", "no user, query or fragment"),
    ("https://contoso.crm.dynamics.com/?x=1", "no user, query or fragment"),
    ("https:", "at least 8 characters"),
    ("https:///nohost", "environment's URL"),
])  # fmt: skip
def test_environment_url_rules(url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DataverseSource.model_validate({"environmentUrl": url, "auth": {"kind": "managedIdentity"}})
    assert reason in str(caught.value)


def test_scope_and_loopback_simulators() -> None:
    s = DataverseSource.model_validate({"environmentUrl": "https://contoso.crm4.dynamics.com/",
                                        "auth": {"kind": "workloadIdentity"}})  # fmt: skip
    assert s.environmentUrl == "https://contoso.crm4.dynamics.com"
    assert s.scope == "https://contoso.crm4.dynamics.com/.default"
    local = DataverseSource.model_validate({"environmentUrl": "http://127.0.0.1:8790/org1",
                                            "auth": {"kind": "developmentToken"}})  # fmt: skip
    assert local.scope == "http://127.0.0.1:8790/.default"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, SourceWork]]:
    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True))
    assert isinstance(rt.store, SqlStore)
    dv = DataverseDouble()
    dv.upsert("account", name="one")
    work = SourceWork(profiles=rt.service, cursors=CursorStore(rt.store), queue=InMemoryWorkQueue(),
                      sink_for=lambda _p: FakeSourceSink(), settings=DataverseSettings(token="t", page_size=5),
                      secrets=rt.resolver, transport=dv.transport())  # fmt: skip
    rt.service.source = work
    app = create_app(ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=KEY)))
    with TestClient(app, headers={"x-functions-key": KEY}) as c:
        yield c, work
    work.close()
    rt.close()


def test_source_through_the_api_and_its_status(client: tuple[TestClient, SourceWork], tmp_path: Path) -> None:
    c, work = client
    body = {"name": "dv", "organizationId": ORG_ID, "destination": f"sqlite:///{tmp_path / 'd.db'}",
            "entities": ["account"], "source": {"environmentUrl": ORG_URL, "auth": {
                "kind": "clientSecret", "tenantId": TENANT, "clientId": CLIENT, "clientSecretUri": KV}}}  # fmt: skip
    r = c.post("/profiles", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["source"]["auth"] == {"kind": "clientSecret", "tenantId": TENANT, "clientId": CLIENT,
                                         "clientSecretUri": KV, "certificateUri": None}  # fmt: skip
    pid = created["id"]
    assert c.get(f"/profiles/{pid}").json()["source"] == created["source"]  # stored and read back
    r = c.get(f"/profiles/{pid}/source")
    assert r.status_code == 200
    assert r.json()["entities"] == [{
        "entity": "account", "InitialSyncState": "NotStarted", "reason": None, "phase": "", "rowsRead": 0,
        "deletesRead": 0, "pages": 0, "lastPoll": None, "sourceLagSeconds": None, "nextPoll": None,
    }]  # fmt: skip
    # development token: activation checks the source live (the double), then only enqueues
    body["source"]["auth"] = {"kind": "developmentToken"}
    r = c.put(f"/profiles/{pid}", json=body)
    assert r.status_code == 200, r.text
    r = c.post(f"/profiles/{pid}/activate")
    assert r.status_code == 200, r.text
    assert len(work.queue) == 1  # type: ignore[arg-type]
    units = 0
    while (got := work.queue.receive(1, 30)) and units < 20:
        work.handle_page(got[0].text)
        work.queue.delete(got[0])
        units += 1
    account = c.get(f"/profiles/{pid}/source").json()["entities"][0]
    assert account["InitialSyncState"] == "Completed"
    assert account["rowsRead"] == 1
    assert account["nextPoll"] is not None
    assert c.get(f"/profiles/{pid}/metrics").json()["entities"][0]["InitialSyncState"] == "Completed"


def test_source_of_a_profile_without_one_is_404(client: tuple[TestClient, SourceWork], tmp_path: Path) -> None:
    c, _ = client
    p = ProfileCreate.model_validate({"name": "plain", "organizationId": ORG_ID,
                                      "destination": f"sqlite:///{tmp_path / 'd.db'}"})  # fmt: skip
    r = c.post("/profiles", json=p.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert r.status_code == 201, r.text
    r = c.get(f"/profiles/{r.json()['id']}/source")
    assert r.status_code == 404
    assert "no source" in r.json()["detail"]
