"""The binding metadata of every function (issue 10), as the Functions host indexes it from
``app.get_functions()``, in each auth mode; and the anonymous /health function answering."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared.config import ProfilesConfig
from shared.root import build_runtime, profiles_root, reset_root
from shared.storage.blobs import RETRY
from tests.support.functions import FakeContext

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
INDEX = """
import json, function_app
out = {}
for f in function_app.app.get_functions():
    b = f.get_bindings_dict()["bindings"]
    out[f.get_function_name()] = [{k: str(getattr(v, "value", v)) for k, v in x.items()} for x in b]
print(json.dumps(out))
"""


def indexed(extra_env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Index function_app in a fresh interpreter with these settings (and no others of ours)."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("DES_", "AzureWebJobs", "ServiceBus", "APPLICATIONINSIGHTS_"))
    }  # fmt: skip
    env.update(extra_env, HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-c", INDEX], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def bindings(extra_env: dict[str, str], tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    out = indexed(extra_env, tmp_path)
    assert out.returncode == 0, out.stderr
    result: dict[str, list[dict[str, Any]]] = json.loads(out.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("mode", "level"),
    [(None, "anonymous"), ("local-key", "anonymous"), ("entra", "anonymous"), ("function-keys", "function")],
)
def test_the_admin_apis_auth_level_follows_the_auth_mode(mode: str | None, level: str, tmp_path: Path) -> None:
    functions = bindings({"DES_AUTH_MODE": mode} if mode else {}, tmp_path)
    [api] = [b for b in functions["http_app_func"] if b["type"] == "httpTrigger"]
    assert api["authLevel"].lower() == level
    assert api["route"] == "/{*route}"
    [health] = [b for b in functions["health"] if b["type"] == "httpTrigger"]
    assert health["authLevel"].lower() == "anonymous"  # in every mode
    assert health["route"] == "health"
    assert "GET" in health["methods"].upper()


def test_every_functions_bindings(tmp_path: Path) -> None:
    functions = bindings({}, tmp_path)
    assert set(functions) == {
        "http_app_func", "health", "sync_notifications", "retry_blobs", "retry_sweeper", "retry_poison",
        "blob_retention", "source_pages", "source_poll",
    }  # fmt: skip
    [sb] = functions["sync_notifications"]
    assert (sb["type"], sb["queueName"], sb["connection"], sb["cardinality"]) == (
        "serviceBusTrigger", "%ServiceBusQueueName%", "ServiceBusConnection", "many"
    )  # fmt: skip
    [blob] = functions["retry_blobs"]
    assert (blob["type"], blob["connection"]) == ("blobTrigger", "AzureWebJobsStorage")
    assert blob["path"] == f"{RETRY}/{{name}}"  # a literal: no app setting, no %expression% to resolve
    assert "EventGrid" in blob["source"] or "EVENT_GRID" in blob["source"]
    [pages] = functions["source_pages"]
    assert (pages["type"], pages["queueName"], pages["connection"]) == (
        "queueTrigger", "%DES_SOURCE_QUEUE_NAME%", "AzureWebJobsStorage"
    )  # fmt: skip
    [poll] = functions["source_poll"]
    assert (poll["type"], poll["schedule"]) == ("timerTrigger", "%DES_SOURCE_POLL_SCHEDULE%")
    # Not a queue trigger: the poison queue is shared, and a trigger would delete others' receipts.
    [poison] = functions["retry_poison"]
    assert (poison["type"], poison["schedule"]) == ("timerTrigger", "30 */5 * * * *")


def test_a_configuration_mistake_fails_indexing_so_no_trigger_consumes_messages(tmp_path: Path) -> None:
    out = indexed({"DES_HOSTING": "azure"}, tmp_path)  # the embedded SQLite admin store, in Azure
    assert out.returncode != 0
    assert "SettingsError" in out.stderr
    assert "DES_HOSTING=azure: the admin store cannot be SQLite" in out.stderr
    out = indexed({"DES_AUTH_MODE": "anonymous"}, tmp_path)
    assert out.returncode != 0
    assert "setting DES_AUTH_MODE is 'anonymous'" in out.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # The key setting missing: every blob holding record data is encrypted.
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "setting DES_BLOB_KEY is required"),
        # A key setting that does not parse (caught at indexing now, not in every invocation).
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "DES_BLOB_KEY": "local-aes:k1"},
         "setting DES_BLOB_KEY/DES_BLOB_OLD_KEYS: a local AES key spec looks like"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "DES_BLOB_KEY": "https://example.com/k"},
         "setting DES_BLOB_KEY/DES_BLOB_OLD_KEYS"),
        # An admin store DSN of no supported kind.
        ({"DES_ADMIN_STORE": "oracle://u:secret@db/x"}, "setting DES_ADMIN_STORE is 'oracle://u:***@db/x'"),
        ({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Key"}, "the only value is AAD"),
    ],
)
def test_a_settings_mistake_found_without_io_fails_indexing(
    settings: dict[str, str], message: str, tmp_path: Path
) -> None:
    out = indexed(settings, tmp_path)
    assert out.returncode != 0
    assert "SettingsError" in out.stderr
    assert message in out.stderr
    assert "secret" not in out.stderr  # the DSN's password is not in the log


@pytest.fixture
def admin_store(tmp_path: Path) -> Iterator[None]:
    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}"))
    reset_root(profiles_root(rt, owns_runtime=True))
    yield
    reset_root(None)


def test_the_health_function_answers_without_a_key(admin_store: None) -> None:
    import function_app

    req = func.HttpRequest(method="GET", url="http://localhost/health", headers={}, body=b"")
    resp = asyncio.run(function_app.health(req, FakeContext(function_name="health")))  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.get_body()
    assert json.loads(resp.get_body())["status"] == "ok"
