"""The admin API answers a method a path does not take with 405 and an ``Allow`` header listing
exactly the methods of that path (RFC 9110; schemathesis' unsupported_method and
allow_header_conformance checks, issue 12). Before: ``PUT /profiles/validate`` reached
``PUT /profiles/{profile_id}`` (a 422 about the id) and ``OPTIONS /profiles`` said ``Allow: GET``."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared.api import ApiServices, AuthConfig, create_app
from shared.config import ProfilesConfig
from shared.root import build_runtime
from tests.support.admin import ADMIN_KEY

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}"))
    app = create_app(ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=ADMIN_KEY)))
    with TestClient(app) as c:
        c.headers["x-functions-key"] = ADMIN_KEY
        yield c
    rt.close()


def documented(client: TestClient) -> dict[str, set[str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return {path: {m.upper() for m in ops} for path, ops in paths.items()}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/profiles/validate", "POST"),  # a fixed path beside /profiles/{profile_id}
        ("GET", "/profiles/validate", "POST"),
        ("DELETE", "/profiles/validate", "POST"),
        ("OPTIONS", "/profiles", "GET, POST"),  # two routes, one path: both methods
        ("PATCH", f"/profiles/{PID}", "GET, PUT, DELETE"),
        ("POST", f"/profiles/{PID}/failures", "GET"),
        ("HEAD", "/profiles", "GET, POST"),
        ("DELETE", "/health", "GET"),
    ],
)
def test_a_method_the_path_does_not_take_is_405_with_all_its_methods(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    r = client.request(method, path, json={})
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    if method != "HEAD":
        assert r.json() == {"detail": "Method Not Allowed"}


def test_every_documented_path_lists_exactly_its_documented_methods(client: TestClient) -> None:
    for path, methods in documented(client).items():
        concrete = path.replace("{profile_id}", PID)
        r = client.request("OPTIONS", concrete)
        assert r.status_code == 405, (path, r.text)
        assert set(r.headers["allow"].split(", ")) == methods, path


def test_declared_methods_still_reach_their_routes(client: TestClient) -> None:
    assert client.get("/profiles").status_code == 200
    assert client.post("/profiles/validate", json={}).status_code == 422  # the body's reasons, not 405
    assert client.get(f"/profiles/{PID}").status_code == 404
    assert client.get("/profiles/not-a-guid").status_code == 422  # the id's reason, as documented
