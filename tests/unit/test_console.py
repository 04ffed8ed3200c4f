"""The admin console's serving (shared/api/routers/console.py) and the metrics history endpoint
(shared/api/routers/history.py), in process on a real SQLite store.

The console's files are the only anonymous paths besides /health, exactly those (an unknown
/console/... path needs the key like any route); the page's Content-Security-Policy allows its
own files and its import map only; in Azure (?code=) every asset URL carries the function key,
and nothing else from the query reaches the page. The history endpoint answers per entity and
minute what the store recorded, validates its query, and is in the OpenAPI schema.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import re
import tomllib
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared.api import ApiServices, AuthConfig, create_app
from shared.api.routers.console import STATIC_DIR, bundle
from shared.config import ProfilesConfig
from shared.engine.outcomes import BatchResult
from shared.root import ProfileRuntime, build_runtime
from tests.support.admin import ADMIN_KEY

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
ROOT = Path(__file__).resolve().parents[2]


class Now:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 21, 10, 30, 20, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, ProfileRuntime, Now]]:
    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True))
    now = Now()
    rt.store.clock = now
    services = ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=ADMIN_KEY), clock=now)
    with TestClient(create_app(services)) as client:
        yield client, rt, now
    rt.close()


KEY = {"x-functions-key": ADMIN_KEY}


# ------------------------------------------------------------------------------------ console
def test_the_console_page_and_its_files_need_no_key_and_nothing_else_does(
    setup: tuple[TestClient, ProfileRuntime, Now],
) -> None:
    client, _, _ = setup
    r = client.get("/console", follow_redirects=False)
    assert r.status_code == 308
    assert r.headers["location"] == "/console/"
    page = client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assets = re.findall(r'(?:href|src)="\./static/([a-z]+\.(?:css|js))\?v=[0-9a-f]{12}"', page.text)
    assert set(assets) == {"console.css", "app.js"}
    names = sorted(p.name for p in STATIC_DIR.iterdir() if p.suffix in (".js", ".css"))
    assert len(names) >= 8
    for name in names:
        f = client.get(f"/console/static/{name}")
        assert f.status_code == 200, name
        assert f.content == (STATIC_DIR / name).read_bytes()
        expected = "text/javascript" if name.endswith(".js") else "text/css"
        assert f.headers["content-type"].startswith(expected)
        assert f.headers["x-content-type-options"] == "nosniff"
    # only those exact paths are open: anything else under /console needs the key
    for path in ("/console/static/nope.js", "/console/static/index.html", "/console/static/../../app.py",
                 "/console/x", "/consolex", "/console/static/"):  # fmt: skip
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=KEY).status_code == 404, path
    assert client.get("/profiles").status_code == 401  # the console does not open the API


def test_the_page_allows_only_its_own_files_and_its_import_map(setup: tuple[TestClient, ProfileRuntime, Now]) -> None:
    client, _, _ = setup
    page = client.get("/console/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "connect-src 'self'" in csp
    assert "http" not in csp  # no CDN, no other origin
    importmap = re.search(r'<script type="importmap">(.*?)</script>', page.text, re.S)
    assert importmap is not None
    digest = base64.b64encode(hashlib.sha256(importmap.group(1).encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in csp
    modules = sorted(p.name for p in STATIC_DIR.glob("*.js"))
    for name in modules:
        assert f'"./static/{name}":"./static/{name}?v={bundle().version}"' in importmap.group(1)
    assert "<script>" not in page.text  # no inline script but the import map


def test_in_azure_every_asset_url_carries_the_function_key_and_nothing_else_gets_in(
    setup: tuple[TestClient, ProfileRuntime, Now],
) -> None:
    client, _, _ = setup
    r = client.get("/console?code=abc_DEF-12==", follow_redirects=False)
    assert r.headers["location"] == "/console/?code=abc_DEF-12=="
    page = client.get("/console/?code=abc_DEF-12==").text
    v = bundle().version
    assert f'src="./static/app.js?v={v}&amp;code=abc_DEF-12%3D%3D"' in page
    assert f'"./static/api.js":"./static/api.js?v={v}&code=abc_DEF-12%3D%3D"' in page
    hostile = client.get("/console/", params={"code": '"></script><script>alert(1)</script>'}).text
    assert "alert" not in hostile
    assert "code=" not in hostile


def test_the_package_ships_every_console_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["shared"]
    shared = ROOT / "shared"
    for path in STATIC_DIR.iterdir():
        rel = path.relative_to(shared).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


# ------------------------------------------------------------------------------------ history
def result(entity: str, *, applied: int = 0, failed: int = 0, changed: datetime | None = None) -> BatchResult:
    r = BatchResult(received=applied + failed, applied=applied, failed=failed)
    c = r.entity(entity)
    c.received, c.applied, c.failed, c.last_changed_on = applied + failed, applied, failed, changed
    return r


def create(client: TestClient, tmp: str = "d") -> str:
    body = {"name": f"p-{tmp}", "organizationId": ORG, "destination": "sqlite:///x.db", "entities": ["account"]}
    r = client.post("/profiles", json=body, headers=KEY)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_metrics_history_per_entity_and_minute(setup: tuple[TestClient, ProfileRuntime, Now]) -> None:
    client, rt, now = setup
    pid = create(client)
    t0 = now.at
    now.at = t0 - timedelta(minutes=5)
    rt.store.record(pid, result("account", applied=4, failed=1, changed=now.at - timedelta(seconds=3)))
    now.at = t0 - timedelta(minutes=200)  # outside the default 180 minutes
    rt.store.record(pid, result("account", applied=9))
    now.at = t0
    rt.store.record(pid, result("contact", failed=2))
    body: dict[str, Any] = client.get(f"/profiles/{pid}/metrics/history", headers=KEY).json()
    minute = t0.replace(second=0)
    assert body["profileId"] == pid
    assert body["bucketSeconds"] == 60
    assert datetime.fromisoformat(body["end"]) == minute + timedelta(minutes=1)
    assert datetime.fromisoformat(body["start"]) == minute + timedelta(minutes=1) - timedelta(minutes=180)
    by = {e["entity"]: e["points"] for e in body["entities"]}
    assert list(by) == ["account", "contact"]
    (acc,) = by["account"]
    assert datetime.fromisoformat(acc["minute"]) == minute - timedelta(minutes=5)
    assert (acc["TotalNotifications"], acc["SuccessNotifications"], acc["FailureNotifications"]) == (5, 4, 1)
    assert acc["lagSeconds"] == 3.0
    (con,) = by["contact"]
    assert (con["FailureNotifications"], con["lagSeconds"]) == (2, None)
    wide = client.get(f"/profiles/{pid}/metrics/history?minutes=300&entity=account", headers=KEY).json()
    assert [e["entity"] for e in wide["entities"]] == ["account"]
    assert [p["SuccessNotifications"] for p in wide["entities"][0]["points"]] == [9, 4]


def test_metrics_history_refuses_bad_queries(setup: tuple[TestClient, ProfileRuntime, Now]) -> None:
    client, _, _ = setup
    pid = create(client)
    for query in ("minutes=0", "minutes=10081", "minutes=x", "entity=Bad-Name", "entity=a%27%3B--"):
        r = client.get(f"/profiles/{pid}/metrics/history?{query}", headers=KEY)
        assert r.status_code == 422, query
        assert "detail" in r.json()
    missing = client.get("/profiles/00000000-0000-0000-0000-000000000000/metrics/history", headers=KEY)
    assert missing.status_code == 404
    assert client.get(f"/profiles/{pid}/metrics/history").status_code == 401


def test_metrics_history_is_in_the_openapi_schema(setup: tuple[TestClient, ProfileRuntime, Now]) -> None:
    client, _, _ = setup
    schema = client.get("/openapi.json", headers=KEY).json()
    op = schema["paths"]["/profiles/{profile_id}/metrics/history"]["get"]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/MetricsHistoryOut"}
    for name in ("MetricsHistoryOut", "EntityHistoryOut", "HistoryPointOut"):
        assert name in schema["components"]["schemas"]
    assert {p["name"] for p in op["parameters"]} == {"profile_id", "minutes", "entity"}
    assert op["security"]
    assert not [p for p in schema["paths"] if p.startswith("/console")]
