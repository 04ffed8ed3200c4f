"""The admin API in-process (FastAPI TestClient) on a real SQLite store and SQLite destinations.

Key Vault is :class:`tests.support.admin.KeyVaultDouble` (a test double at the HTTP boundary; the
real SecretClient runs). Proves: no route answers without a credential; the issue's validation
cases get clear 4xx reasons; the profile life cycle (create, activate, deactivate, update with
If-Match, delete); validate/test name each failed step; the destination secret appears in no
response and no log line; Easy Auth's app role.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared.api import ApiServices, AuthConfig, create_app
from shared.config import AuthMode, ProfilesConfig, SettingsError
from shared.root import ProfileRuntime, build_runtime
from shared.store.migrations import MIGRATIONS
from tests.support.admin import ADMIN_KEY, KeyVaultDouble, auth, secret_uri, vault_resolver

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
PASSWORD = "Pw-Never-Shown-4711"
UNREACHABLE = f"postgresql://des:{PASSWORD}@127.0.0.1:1/crm"  # nothing listens on port 1


class Api:
    def __init__(self, client: TestClient, runtime: ProfileRuntime, vault: KeyVaultDouble, tmp: Path) -> None:
        self.client = client
        self.rt = runtime
        self.vault = vault
        self.tmp = tmp
        self.responses: list[str] = []

    def call(self, method: str, path: str, *, key: str | None = ADMIN_KEY, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers.setdefault("x-functions-key", key)
        r = self.client.request(method, path, headers=headers, **kwargs)
        self.responses.append(r.text + json.dumps(dict(r.headers)))
        return r

    def sqlite_secret(self, name: str) -> str:
        self.vault.secrets[name] = f"sqlite:///{self.tmp / (name + '.db')}"
        return secret_uri(name)

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {"name": f"p-{uuid.uuid4().hex[:8]}", "organizationId": ORG, "entities": ["account"]}
        body.setdefault("destination", self.sqlite_secret(f"db-{uuid.uuid4().hex[:8]}"))
        body.update(fields)
        r = self.call("POST", "/profiles", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    vault = KeyVaultDouble()
    rt = build_runtime(
        ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True),
        resolver=vault_resolver(vault, allow_literal=True),
    )
    services = ApiServices(
        store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=ADMIN_KEY), max_body_bytes=64 * 1024
    )
    with TestClient(create_app(services)) as client:
        yield Api(client, rt, vault, tmp_path)
    rt.close()


def routes(api: Api) -> list[tuple[str, str]]:
    pid = str(uuid.uuid4())
    out = []
    for path, ops in api.client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method in ops:
            out.append((method.upper(), path.replace("{profile_id}", pid)))
    return [*out, ("GET", "/openapi.json"), ("GET", "/docs")]


# ------------------------------------------------------------------------------------- auth
def test_every_route_but_health_refuses_without_a_key(api: Api) -> None:
    checked = 0
    for method, path in routes(api):
        if path == "/health":
            assert api.call(method, path, key=None).status_code == 200
            continue
        for headers in (
            {},
            {"x-functions-key": "wrong"},
            {"authorization": "Bearer wrong"},
            {"authorization": ADMIN_KEY},
        ):
            r = api.call(method, path, key=None, headers=headers, json={"name": "x"})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert "detail" in r.json()
        checked += 1
    assert checked >= 13
    # malformed JSON and oversized bodies are still 401 for an anonymous caller
    assert api.call("POST", "/profiles", key=None, content=b"{not json").status_code == 401
    assert api.call("POST", "/profiles", key=None, content=b"x" * 200_000).status_code == 401


def test_bearer_and_function_key_headers_both_work(api: Api) -> None:
    assert api.call("GET", "/profiles").status_code == 200
    r = api.call("GET", "/profiles", key=None, headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200


def test_without_a_configured_key_nothing_is_open(api: Api) -> None:
    app = create_app(ApiServices(store=api.rt.store, profiles=api.rt.service, auth=AuthConfig(api_key=None)))
    with TestClient(app) as client:
        r = client.get("/profiles", headers={"x-functions-key": ""})
        assert r.status_code == 401
        assert "DES_ADMIN_API_KEY" in r.json()["detail"]
        assert client.get("/health").status_code == 200


def principal(*roles: str) -> str:
    doc = {
        "auth_typ": "aad",
        "name_typ": "name",
        "role_typ": "roles",
        "claims": [{"typ": "name", "val": "Ada"}, *({"typ": "roles", "val": r} for r in roles)],
    }
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_entra_mode_requires_the_app_role_in_the_client_principal(api: Api) -> None:
    cfg = AuthConfig.from_env({"DES_AUTH_MODE": "entra", "WEBSITE_AUTH_ENABLED": "True"}, hosted=True)
    assert (cfg.mode, cfg.easy_auth_enabled) == (AuthMode.ENTRA, True)
    app = create_app(ApiServices(store=api.rt.store, profiles=api.rt.service, auth=cfg))
    with TestClient(app) as client:
        assert client.get("/profiles").status_code == 401  # no principal
        assert client.get("/profiles", headers={"x-ms-client-principal": "%%%"}).status_code == 401
        assert client.get("/profiles", headers={"x-ms-client-principal": principal("Reader")}).status_code == 403
        assert client.get("/profiles", headers={"x-ms-client-principal": principal("DES.Admin")}).status_code == 200
        # A function key is no way around the role in this mode.
        assert client.get("/profiles", headers={"x-functions-key": "anything"}).status_code == 401
        assert client.get("/health").status_code == 200


def test_entra_mode_without_app_service_authentication_lets_nobody_in(api: Api) -> None:
    # The principal header is trusted only while App Service authentication strips forged ones.
    cfg = AuthConfig.from_env({"DES_AUTH_MODE": "entra"}, hosted=True)
    app = create_app(ApiServices(store=api.rt.store, profiles=api.rt.service, auth=cfg))
    with TestClient(app) as client:
        r = client.get("/profiles", headers={"x-ms-client-principal": principal("DES.Admin")})
        assert r.status_code == 503
        assert "WEBSITE_AUTH_ENABLED" in r.text


def test_function_keys_mode_trusts_the_functions_host(api: Api) -> None:
    cfg = AuthConfig.from_env({"DES_AUTH_MODE": "function-keys"}, hosted=True)
    app = create_app(ApiServices(store=api.rt.store, profiles=api.rt.service, auth=cfg))
    with TestClient(app) as client:
        assert client.get("/profiles").status_code == 200  # the host checked the key before


def test_function_keys_mode_is_refused_without_the_functions_host() -> None:
    with pytest.raises(SettingsError, match="use DES_AUTH_MODE=local-key"):
        AuthConfig.from_env({"DES_AUTH_MODE": "function-keys"}, hosted=False)


def test_local_key_mode_ignores_azure_variables_and_headers(api: Api) -> None:
    # WEBSITE_* variables decide nothing, and a principal header is not trusted: the key is required.
    env = {"WEBSITE_INSTANCE_ID": "abc", "WEBSITE_AUTH_ENABLED": "True", "DES_ADMIN_API_KEY": "Zq-key-9"}
    local = AuthConfig.from_env(env, hosted=True)
    assert local.mode is AuthMode.LOCAL_KEY
    assert local.api_key == "Zq-key-9"
    assert "Zq-key-9" not in repr(local)
    app = create_app(ApiServices(store=api.rt.store, profiles=api.rt.service, auth=local))
    with TestClient(app) as client:
        assert client.get("/profiles", headers={"x-ms-client-principal": principal("DES.Admin")}).status_code == 401
        assert client.get("/profiles", headers={"x-functions-key": "Zq-key-9"}).status_code == 200


# ------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("fields", "where", "words"),
    [
        ({"prefix": "abcdefghijklmno"}, "prefix", "fewer than 15"),
        ({"schema": "sales-data"}, "schema", "alphanumeric"),
        ({"retryCount": 21}, "retryCount", "less than or equal to 20"),
        ({"retryIntervalSeconds": 3601}, "retryIntervalSeconds", "3600"),
        ({"organizationId": "12345"}, "organizationId", "GUID"),
        ({"id": "zzzz-not-a-guid"}, "id", "GUID"),
        ({"name": ""}, "name", "at least 1"),
        ({"entities": ["Account"]}, "entities", "logical names"),
    ],
)
def test_field_validation_gives_clear_reasons(api: Api, fields: dict[str, Any], where: str, words: str) -> None:
    body = {"name": "x", "organizationId": ORG, "destination": secret_uri("db"), **fields}
    r = api.call("POST", "/profiles", json=body)
    assert r.status_code == 422
    items = r.json()["detail"]
    hit = [i for i in items if where in [str(p) for p in i["loc"]]]
    assert hit, items
    assert words in hit[0]["msg"]
    assert all("input" not in i for i in items)


def test_duplicate_name_is_a_conflict_ignoring_case(api: Api) -> None:
    api.create(name="Sales Export")
    r = api.call(
        "POST", "/profiles", json={"name": "sales export", "organizationId": ORG, "destination": secret_uri("x")}
    )
    assert r.status_code == 409
    assert "already exists" in r.json()["detail"]


def test_duplicate_id_is_a_conflict(api: Api) -> None:
    p = api.create()
    r = api.call(
        "POST",
        "/profiles",
        json={"id": p["id"].upper(), "name": "other", "organizationId": ORG, "destination": secret_uri("x")},
    )
    assert r.status_code == 409


@pytest.mark.parametrize("path", ["/profiles/not-a-guid", "/profiles/123/metrics", "/profiles/{x}/activate"])
def test_malformed_guids_in_paths(api: Api, path: str) -> None:
    method = "POST" if path.endswith("activate") else "GET"
    r = api.call(method, path)
    assert r.status_code == 422
    assert "GUID" in r.json()["detail"][0]["msg"]


def test_oversized_bodies_are_refused(api: Api) -> None:
    big = {
        "name": "x",
        "organizationId": ORG,
        "destination": secret_uri("x"),
        "entities": ["e" + str(i) for i in range(20_000)],
    }
    data = json.dumps(big).encode()
    assert len(data) > 64 * 1024
    r = api.call("POST", "/profiles", content=data, headers={"content-type": "application/json"})
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    r = api.call("POST", "/profiles", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert (
        api.call("POST", "/profiles", content=b"{broken", headers={"content-type": "application/json"}).status_code
        == 422
    )


def test_literal_destinations_need_the_development_setting(api: Api, tmp_path: Path) -> None:
    strict = build_runtime(
        ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'strict.db'}"), resolver=vault_resolver(api.vault)
    )
    app = create_app(ApiServices(store=strict.store, profiles=strict.service, auth=AuthConfig(api_key=ADMIN_KEY)))
    with TestClient(app) as client:
        body = {"name": "lit", "organizationId": ORG, "destination": UNREACHABLE}
        r = client.post("/profiles", json=body, headers=auth())
        assert r.status_code == 422
        assert "DES_ALLOW_LITERAL_DESTINATIONS" in r.json()["detail"]
        assert PASSWORD not in r.text
    strict.close()


# ------------------------------------------------------------------------------- life cycle
def test_profile_life_cycle(api: Api) -> None:
    p = api.create(schema=None, prefix="crm", retryCount=3)
    pid = p["id"]
    assert p["state"] == "draft"
    assert p["destinationKind"] == "keyVault"
    got = api.call("GET", f"/profiles/{pid.upper()}")
    assert got.status_code == 200
    assert got.headers["etag"] == '"1"'
    assert api.call("POST", f"/profiles/{pid}/deactivate").status_code == 409  # a draft
    act = api.call("POST", f"/profiles/{pid}/activate")
    assert act.status_code == 200
    assert act.json()["state"] == "active"
    listed = api.call("GET", "/profiles", params={"state": "active", "organizationId": ORG}).json()
    assert [x["id"] for x in listed] == [pid]
    body = {"name": "renamed", "organizationId": ORG, "entities": ["account", "contact"], "prefix": "crm"}
    stale = api.call("PUT", f"/profiles/{pid}", json=body, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    bad_tag = api.call("PUT", f"/profiles/{pid}", json=body, headers={"If-Match": "nonsense"})
    assert bad_tag.status_code == 422  # the header's schema states what it takes
    assert bad_tag.json()["detail"][0]["loc"] == ["header", "If-Match"]
    upd = api.call("PUT", f"/profiles/{pid}", json=body, headers={"If-Match": act.json()["revision"].__str__()})
    assert upd.status_code == 200
    assert upd.json()["entities"] == ["account", "contact"]
    assert upd.json()["destination"] == p["destination"]  # kept when left out
    assert upd.json()["state"] == "active"
    assert api.call("POST", f"/profiles/{pid}/deactivate").json()["state"] == "inactive"
    deleted = api.call("DELETE", f"/profiles/{pid}")
    assert deleted.status_code == 200
    assert deleted.json()["id"] == pid
    assert api.call("GET", f"/profiles/{pid}").status_code == 404
    assert api.call("DELETE", f"/profiles/{pid}").status_code == 404


def test_create_and_activate_checks_the_destination_first(api: Api) -> None:
    api.vault.secrets["down"] = UNREACHABLE
    body = {"name": "ca", "organizationId": ORG, "destination": secret_uri("down"), "state": "active"}
    r = api.call("POST", "/profiles", json=body)
    assert r.status_code == 409  # a valid request; the destination's check failed
    failed = [c for c in r.json()["checks"] if not c["ok"]]
    assert failed[0]["name"] == "connect"
    assert api.call("GET", "/profiles").json() == []
    ok = api.create(name="ok", state="active")
    assert ok["state"] == "active"


def test_validate_and_test_name_each_step(api: Api) -> None:
    good = {"name": "v", "organizationId": ORG, "destination": api.sqlite_secret("good")}
    r = api.call("POST", "/profiles/validate", json=good)
    assert r.status_code == 200
    assert r.json()["valid"] is True
    names = [c["name"] for c in r.json()["checks"]]
    assert names == ["destination", "name", "secret", "connect", "schema", "create table", "drop table"]
    assert not (api.tmp / "good.db").exists()  # a check leaves no file behind

    missing = api.call("POST", "/profiles/validate", json={**good, "destination": secret_uri("absent")}).json()
    assert missing["valid"] is False
    assert [c["name"] for c in missing["checks"] if not c["ok"]] == ["secret"]

    api.vault.secrets["down"] = UNREACHABLE
    p = api.create(destination=secret_uri("down"))
    t = api.call("GET", f"/profiles/{p['id']}/test").json()
    assert t["valid"] is False
    assert [c["name"] for c in t["checks"] if not c["ok"]] == ["connect"]

    sqlite_schema = api.create(destination=api.sqlite_secret("s2"), schema="reporting")
    t2 = api.call("GET", f"/profiles/{sqlite_schema['id']}/test").json()
    assert [c["name"] for c in t2["checks"] if not c["ok"]] == ["schema"]


def test_metrics_of_a_new_profile_and_of_the_service(api: Api) -> None:
    p = api.create()
    m = api.call("GET", f"/profiles/{p['id']}/metrics")
    assert m.status_code == 200
    assert m.json()["entities"] == []
    assert m.json()["totals"]["TotalNotifications"] == 0
    s = api.call("GET", "/metrics").json()
    assert s["profiles"] == {"draft": 1, "active": 0, "inactive": 0}
    assert api.call("GET", f"/profiles/{uuid.uuid4()}/metrics").status_code == 404


def test_failure_routes_say_when_blob_storage_is_not_wired(api: Api) -> None:
    p = api.create()
    r = api.call("GET", f"/profiles/{p['id']}/failures")
    assert r.status_code == 503
    assert "Blob storage" in r.json()["detail"]
    bad = api.call(
        "GET", f"/profiles/{p['id']}/failures", params={"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    )
    assert bad.status_code == 400


def test_docs_and_openapi_need_the_key_and_do_not_echo_it(api: Api) -> None:
    doc = api.call("GET", "/openapi.json").json()
    assert doc["components"]["securitySchemes"]["functionKey"]["name"] == "x-functions-key"
    assert doc["paths"]["/health"]["get"]["security"] == []
    html = api.call("GET", "/docs", params={"code": ADMIN_KEY})
    assert html.status_code == 200
    assert ADMIN_KEY not in html.text


def test_health(api: Api) -> None:
    r = api.call("GET", "/health", key=None)
    assert r.json() == {"status": "ok", "store": "ok", "schemaVersion": len(MIGRATIONS)}


# ---------------------------------------------------------------------------------- secrets
def test_the_secret_is_in_no_response_and_no_log_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.vault.secrets["down"] = UNREACHABLE
    kv = api.create(destination=secret_uri("down"))
    lit = api.create(destination=UNREACHABLE)
    assert lit["destinationKind"] == "literal"
    assert lit["destination"].startswith("postgresql://des@127.0.0.1:1/crm")
    for p in (kv, lit):
        pid = p["id"]
        api.call("GET", f"/profiles/{pid}")
        api.call("GET", f"/profiles/{pid}/test")
        api.call("POST", f"/profiles/{pid}/activate")
        api.call("PUT", f"/profiles/{pid}", json={"name": p["name"], "organizationId": ORG, "destination": UNREACHABLE})
    api.call("GET", "/profiles")
    api.call("POST", "/profiles/validate", json={"name": "z", "organizationId": ORG, "destination": UNREACHABLE})
    api.call(
        "POST", "/profiles", json={"name": "z", "organizationId": ORG, "destination": UNREACHABLE, "state": "active"}
    )
    api.call("POST", "/profiles", json={"name": "z", "organizationId": "bad", "destination": UNREACHABLE + "\x01"})
    assert len(api.responses) >= 12
    for text in api.responses:
        assert PASSWORD not in text
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert "shared.api.access" in caplog.text
    assert PASSWORD not in logged


def test_an_unreachable_store_is_503_not_500(tmp_path: Path) -> None:
    from shared.store import open_store

    def broken() -> ApiServices:
        open_store(f"postgresql://des:{PASSWORD}@127.0.0.1:1/admin")  # nothing listens there
        raise AssertionError("unreachable")

    with TestClient(create_app(broken)) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "store": "unavailable"}
        r = client.get("/profiles", headers=auth())
        assert r.status_code == 503
        assert PASSWORD not in r.text
