"""The embedded default serves the whole admin API (issue 12): with no Blob storage configured the
failure log (JSON and CSV) and re-sync work from the local reject store (``DES_REJECTS_DIR``), a
deleted profile's files go with it; ``?code=<key>`` is accepted as the Functions host accepts it
(the URL ``des api`` prints); Swagger UI is served by the app itself from the vendored, pinned
swagger-ui-dist files, with Subresource Integrity, and no CDN."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared import config as S
from shared.api import build_app
from shared.api.app import SWAGGER_UI, swagger_manifest
from shared.handlers import handle_notifications
from shared.root import Root, build_root

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

KEY = "local-admin-key-4711"
ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
RID1, RID2 = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"


def note(rid: str, version: int, **attrs: Any) -> str:
    return json.dumps({
        "schemaVersion": 1, "organizationId": ORG, "entity": "account", "recordId": rid, "changeType": "update",
        "version": version, "changedOn": "2026-11-21T10:00:00Z", "attributes": attrs,
    })  # fmt: skip


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[Root, TestClient]]:
    """The function app's and ``des api``'s defaults: an embedded SQLite store, local rejects, no Blob storage."""
    env = {
        S.ADMIN_STORE: f"sqlite:///{tmp_path / 'admin.db'}", S.REJECTS_DIR: str(tmp_path / "rejects"),
        S.ADMIN_API_KEY: KEY, S.ALLOW_LITERAL_DESTINATIONS: "true",
    }  # fmt: skip
    root = build_root(S.AppConfig.from_env(env))
    assert root.storage is None
    with TestClient(build_app(lambda: root)) as client:
        client.headers["x-functions-key"] = KEY
        yield root, client
    root.close()


def profile(client: TestClient, tmp_path: Path) -> str:
    body = {"name": "local", "organizationId": ORG, "destination": f"sqlite:///{tmp_path / 'dest.db'}",
            "entities": ["account"]}  # fmt: skip
    created = client.post("/profiles", json=body)
    assert created.status_code == 201, created.text
    pid = str(created.json()["id"])
    assert client.post(f"/profiles/{pid}/activate").status_code == 200
    return pid


def test_the_failure_log_and_resync_work_from_the_local_reject_store(
    local: tuple[Root, TestClient], tmp_path: Path
) -> None:
    root, client = local
    pid = profile(client, tmp_path)
    handle_notifications([note(RID1, 1, employees=5)], root)
    out = handle_notifications([note(RID2, 1, employees="many")], root)  # the integer column refuses it
    assert out.final().failed == 1

    listed = client.get(f"/profiles/{pid}/failures")
    assert listed.status_code == 200, listed.text
    [entry] = listed.json()
    assert (entry["Entity"], entry["RecordId"], entry["Version"]) == ("account", RID2, "1")
    assert "employees" in entry["FailureReason"]
    assert entry["LoggedAt"].endswith("Z")
    as_csv = client.get(f"/profiles/{pid}/failures", headers={"accept": "text/csv"})
    assert as_csv.status_code == 200
    assert as_csv.text.splitlines()[0].startswith("Entity,RecordId,")
    assert len(as_csv.text.splitlines()) == 2
    early = client.get(f"/profiles/{pid}/failures", params={"start": "2020-01-01T00:00:00Z",
                                                          "end": "2020-01-02T00:00:00Z"})  # fmt: skip
    assert early.json() == []

    again = client.post(f"/profiles/{pid}/failures/resync", json={})  # re-applied: still refused
    assert again.status_code == 200, again.text
    assert (again.json()["selected"], again.json()["missing"]) == (1, 0), again.text
    assert again.json()["counts"]["failed"] == 1, again.text
    none = client.post(f"/profiles/{pid}/failures/resync", json={"recordIds": [RID1]})  # never failed
    assert (none.status_code, none.json()["selected"]) == (200, 0)

    links = client.get(f"/profiles/{pid}/failures/links")
    assert links.status_code == 409
    assert "Azure only" in links.json()["detail"]
    assert client.delete(f"/profiles/{pid}").status_code == 200
    assert not (tmp_path / "rejects" / pid).exists()  # the deleted profile's local files went with it


def test_code_is_accepted_as_the_functions_host_accepts_it(
    local: tuple[Root, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = local
    caplog.set_level(logging.INFO)
    anonymous = {"x-functions-key": ""}
    assert client.get(f"/docs?code={KEY}", headers=anonymous).status_code == 200
    assert client.get(f"/profiles?code={KEY}", headers=anonymous).status_code == 200
    assert client.get("/profiles?code=wrong", headers=anonymous).status_code == 401
    assert client.get("/docs", headers=anonymous).status_code == 401
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("shared")]
    assert any("GET /docs 200" in m for m in ours)
    assert not any(KEY in m for m in ours)  # access lines are logged without the query string


def test_swagger_ui_is_served_by_the_app_from_the_pinned_vendored_files(local: tuple[Root, TestClient]) -> None:
    _, client = local
    manifest = swagger_manifest()
    assert (manifest["package"], manifest["version"]) == ("swagger-ui-dist", "5.35.0")
    for name, integrity in manifest["files"].items():  # the files are the ones vendored
        digest = base64.b64encode(hashlib.sha384((SWAGGER_UI / name).read_bytes()).digest()).decode()
        assert integrity == f"sha384-{digest}", name
    page = client.get(f"/docs?code={KEY}", headers={"x-functions-key": ""})
    assert "cdn" not in page.text.lower()
    assert "https://" not in page.text
    assert "http://" not in page.text
    assert manifest["files"]["swagger-ui-bundle.js"] in page.text  # Subresource Integrity
    assert manifest["files"]["swagger-ui.css"] in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    js = client.get(f"/docs/assets/swagger-ui-bundle.js?code={KEY}", headers={"x-functions-key": ""})
    assert js.status_code == 200
    assert js.content == (SWAGGER_UI / "swagger-ui-bundle.js").read_bytes()
    assert js.headers["content-type"].startswith("text/javascript")
    css = client.get("/docs/assets/swagger-ui.css")
    assert (css.status_code, css.headers["content-type"].split(";")[0]) == (200, "text/css")
    assert client.get("/docs/assets/MANIFEST.json").status_code == 404  # only the page's assets
    assert client.get("/docs/assets/swagger-ui.css", headers={"x-functions-key": ""}).status_code == 401
