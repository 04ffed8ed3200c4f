"""A deployed function app (docs/deploy.md), from the outside: /health answers without credentials,
the admin API refuses a caller without one and serves one with a function key.

Runs when ``DES_TEST_DEPLOYED_URL`` holds the app's URL (the ``DES_API_URL`` output of
``azd up``) and ``DES_TEST_DEPLOYED_KEY`` a function key (``az functionapp keys list``). Skipped
visibly otherwise.
"""

from __future__ import annotations

import os

import httpx
import pytest

URL = "DES_TEST_DEPLOYED_URL"
KEY = "DES_TEST_DEPLOYED_KEY"
pytestmark = [
    pytest.mark.azure,
    pytest.mark.skipif(
        not (os.environ.get(URL) and os.environ.get(KEY)),
        reason=f"{URL} and {KEY} are not set: give them a deployed app's URL and a function key "
        "to run the live deployment suite",
    ),
]


@pytest.fixture
def client() -> httpx.Client:
    # Flex Consumption scales from zero: the first request may wait for an instance.
    return httpx.Client(base_url=os.environ[URL].rstrip("/"), timeout=120.0)


def test_health_is_anonymous(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200, r.text


def test_admin_api_refuses_a_caller_without_credentials(client: httpx.Client) -> None:
    r = client.get("/profiles")
    assert r.status_code == 401, r.text


def test_admin_api_serves_a_function_key(client: httpx.Client) -> None:
    r = client.get("/profiles", headers={"x-functions-key": os.environ[KEY]})
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), (list, dict))
