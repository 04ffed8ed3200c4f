"""The Web API client against a test double served through httpx.MockTransport (no network)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
import pytest

from shared.source.dataverse.client import (
    AccessDenied,
    DataverseClient,
    DataverseError,
    ExpiredToken,
    SourceUnavailable,
    StaticToken,
    Throttled,
    gate_for,
    scope_for,
)
from shared.source.dataverse.settings import DataverseSettings, SettingsError
from tests.support.dataverse_double import API, ORG_ID, ORG_URL, DataverseDouble, error

pytestmark = pytest.mark.unit

SETTINGS = DataverseSettings(page_size=2, max_attempts=4)


def client(transport: httpx.BaseTransport, sleeps: list[float] | None = None, **kw: object) -> DataverseClient:
    return DataverseClient(ORG_URL, replace(SETTINGS, **kw), tokens=StaticToken("t"), transport=transport,  # type: ignore[arg-type]
                           sleep=(sleeps.append if sleeps is not None else lambda s: None))  # fmt: skip


def test_follows_next_links_until_the_delta_link_with_the_documented_headers() -> None:
    dv = DataverseDouble()
    for i in range(5):
        dv.upsert("account", name=f"a{i}")
    with client(dv.transport()) as c:
        url = c.first_page_url("accounts", "accountid,name,versionnumber")
        assert url == API + "accounts?$select=accountid,name,versionnumber"
        pages = [c.page(url, track=True)]
        while "@odata.nextLink" in pages[-1]:
            pages.append(c.page(pages[-1]["@odata.nextLink"], track=True))
    assert [len(p["value"]) for p in pages] == [2, 2, 1]
    assert "@odata.deltaLink" in pages[-1]
    first = dv.requests[0]
    assert first.headers["Prefer"] == (
        'odata.track-changes,odata.maxpagesize=2,odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"'
    )
    assert first.headers["OData-Version"] == "4.0"
    assert first.headers["OData-MaxVersion"] == "4.0"
    assert first.headers["Accept"] == "application/json"
    assert first.headers["Authorization"] == "Bearer t"
    assert str(dv.requests[1].url) == pages[0]["@odata.nextLink"]  # followed unchanged


def test_429_waits_retry_after_then_gives_up_on_long_waits() -> None:
    dv = DataverseDouble()
    sleeps: list[float] = []
    with client(dv.transport(), sleeps) as c:
        dv.throttle_next, dv.retry_after = 3, "5"
        assert c.organization_id() == ORG_ID
        assert sleeps == [5.0, 5.0, 5.0]
        dv.throttle_next, dv.retry_after = 1, "900"
        with pytest.raises(Throttled) as caught:
            c.organization_id()
        assert caught.value.retry_after == 900
        assert caught.value.transient


def test_5xx_and_connection_errors_retry_with_backoff_then_fail_transiently() -> None:
    dv = DataverseDouble()
    sleeps: list[float] = []
    with client(dv.transport(), sleeps) as c:
        dv.fail_next = 3
        assert c.organization_id() == ORG_ID
        assert len(sleeps) == 3
        assert sleeps[0] < sleeps[2]  # exponential backoff (with jitter)
        dv.fail_next = 4
        with pytest.raises(SourceUnavailable, match="4 attempts"):
            c.organization_id()
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise httpx.ConnectError("connection refused", request=request)
        return dv.handle(request)

    with client(httpx.MockTransport(flaky)) as c:
        assert c.organization_id() == ORG_ID
    assert calls["n"] == 3


def test_errors_are_classified() -> None:
    dv = DataverseDouble()
    dv.upsert("account", name="x")
    with client(dv.transport()) as c:
        page = c.page(c.first_page_url("accounts", "accountid,name,versionnumber"), track=True)
        dv.expire_tokens()
        with pytest.raises(ExpiredToken):
            c.page(page["@odata.deltaLink"], track=False)
        assert c.record("accounts", "00000000-0000-0000-0000-000000000001", "accountid") is None
        with pytest.raises(DataverseError, match="isn't supported when Change Tracking"):
            c.page(API + "accounts?$select=name&$filter=name eq 'x'", track=True)
        with pytest.raises(DataverseError) as nf:
            c.entity_definition("nosuch")
        assert not nf.value.transient

    def unauthorized(request: httpx.Request) -> httpx.Response:
        return error(401, "0x80072560", "The user is not authenticated")

    with client(httpx.MockTransport(unauthorized)) as c, pytest.raises(AccessDenied):
        c.organization_id()


def test_concurrent_requests_are_capped_per_environment() -> None:
    dv = DataverseDouble()
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def slow(request: httpx.Request) -> httpx.Response:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return dv.handle(request)

    url = "https://capped.crm.dynamics.com"
    c = DataverseClient(url, replace(SETTINGS, max_concurrency=2), tokens=StaticToken("t"),
                        transport=httpx.MockTransport(slow))  # fmt: skip
    threads = [threading.Thread(target=c.organization_id) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    assert state["max"] == 2
    assert gate_for(url, 99) is c.gate  # one gate per environment, shared by its clients


def test_settings_from_env_and_scope() -> None:
    env = {"DES_DATAVERSE_PAGE_SIZE": "250", "DES_DATAVERSE_TOKEN": "secret-token",
           "DES_DATAVERSE_VERIFY_DELETES": "false", "DES_DATAVERSE_AUTH": "client-secret",
           "DES_DATAVERSE_CLIENT_SECRET_URI": "https://kv.vault.azure.net/secrets/dv"}  # fmt: skip
    s = DataverseSettings.from_env(env)
    assert s.page_size == 250
    assert not s.verify_deletes
    assert s.auth.kind == "client-secret"
    assert "secret-token" not in repr(s)
    with pytest.raises(SettingsError, match="DES_DATAVERSE_PAGE_SIZE"):
        DataverseSettings.from_env({"DES_DATAVERSE_PAGE_SIZE": "6000"})
    with pytest.raises(SettingsError, match="DES_DATAVERSE_AUTH"):
        DataverseSettings.from_env({"DES_DATAVERSE_AUTH": "password"})
    assert DataverseSettings.from_env({}).poll_schedule == "0 */1 * * * *"
    assert scope_for("https://contoso.crm.dynamics.com/") == "https://contoso.crm.dynamics.com/.default"
