"""The canary-password suite (issue 12): a password planted in a destination DSN is found nowhere.

Every error path a credential can travel is driven with real parts (a real PostgreSQL server, real
Azurite, the real admin API in-process, the real CLI): a malformed percent-escape in a PostgreSQL
password (libpq echoes the token), a wrong password, an unreachable host, a database that does not
exist (the right password), the password as a ``?password=`` query parameter, malformed DSNs, and
SQL Server URL and ODBC forms. Through

* ``des replay`` (its stdout and stderr),
* the admin API (create, list, get, validate, test, activate with and without the check),
* the single-destination root (the error it raises),
* the Service Bus handler without Blob storage (the error it raises; with retry count 0 the local
  failure log it writes, and the local reject files) and on
  Azurite (retry blobs: metadata and content; attempts until exhausted; the failure
  log, parked failures and unprocessable blobs),
* every log record of all of that (caplog at DEBUG, tracebacks included),

the canary is searched in every text: response bodies, raised exceptions (with their tracebacks and
causes), local reject files, every blob's metadata and content (decrypted when encrypted).
"""

from __future__ import annotations

import json
import logging
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import psycopg
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared import config as S
from shared.api import ApiServices, AuthConfig, create_app
from shared.cli import main as des
from shared.config import ProfilesConfig
from shared.engine.ports import DestinationError
from shared.handlers import handle_notifications
from shared.profiles.model import ProfileCreate
from shared.retry.attempt import Status, process_retry_blob
from shared.root import ProfileRuntime, build_root, build_runtime, profiles_root
from shared.storage.account import Storage
from shared.storage.blobs import CONTAINERS, FAILURELOG
from tests.support.admin import ADMIN_KEY
from tests.support.postgres import admin_dsn

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CANARY = "ZqCanary4711"
ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
ROLE = "des_canary"
REFUSED = (DestinationError, ValueError)  # ConnectionFailed, UnsupportedDestination, SettingsError


def _server() -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(admin_dsn())
    return parts.hostname or "127.0.0.1", parts.port or 5432


@pytest.fixture(scope="module")
def server() -> tuple[str, int]:
    """The local PostgreSQL server, with a role whose password is the canary (for a refused database)."""
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(4711)")  # test workers run this concurrently
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(f"{verb} ROLE {ROLE} LOGIN PASSWORD '{CANARY}'")
    return _server()


def dsns(host: str, port: int) -> dict[str, str]:
    odbc = f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER={host},1;UID=sa;PWD={{{CANARY};x}};Encrypt=no"
    return {
        "bad percent-escape": f"postgresql://des_test:{CANARY}%zz@{host}:{port}/postgres",
        "wrong password": f"postgresql://des_test:{CANARY}@{host}:{port}/postgres",
        "unreachable host": f"postgresql://des_test:{CANARY}@127.0.0.1:1/postgres",
        "refused database": f"postgresql://{ROLE}:{CANARY}@{host}:{port}/no_such_database",
        "query password": f"postgresql://des_test@{host}:{port}/postgres?password={CANARY}",
        "malformed port": f"postgresql://des_test:{CANARY}@{host}:port/postgres",
        "malformed path": f"postgresql://{host}:{port}/postgres password={CANARY}",
        "malformed authority": f"postgresql://des_test:{CANARY}@[{host}/postgres",
        "sql server url": f"mssql://sa:{CANARY}@127.0.0.1:1/crm",
        "sql server odbc": f"mssql+odbc:///?odbc_connect={quote_plus(odbc)}",
    }


CASES = list(dsns("127.0.0.1", 5432))


class Seen:
    """Every text the paths produced."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: Any) -> None:
        self.texts.append((where, text if isinstance(text, str) else repr(text)))

    def error(self, where: str, exc: BaseException) -> None:
        self.add(where, "".join(traceback.format_exception(exc)))

    def files(self, root: Path) -> None:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                self.add(str(f), f.read_bytes().decode("utf-8", "replace"))

    def blobs(self, storage: Storage) -> int:
        n = 0
        for container in CONTAINERS:
            for name in storage.stores.names(container):
                n += 1
                raw, meta = storage.stores.raw(container, name)
                self.add(f"{container}/{name} metadata", json.dumps(meta))
                self.add(f"{container}/{name} raw", raw.decode("utf-8", "replace"))
                if container != FAILURELOG:
                    self.add(f"{container}/{name}", storage.stores.get(container, name).decode("utf-8", "replace"))
        return n

    def leaks(self) -> list[str]:
        return [where for where, text in self.texts if CANARY.lower() in text.lower()]


def note(i: int) -> str:
    return json.dumps({
        "schemaVersion": 1, "organizationId": ORG, "entity": "account", "recordId": f"00000000-0000-0000-0000-{i:012d}",
        "changeType": "update", "version": i, "changedOn": "2026-11-21T10:00:00Z", "attributes": {"name": f"n{i}"},
    })  # fmt: skip


def create_profile(rt: ProfileRuntime, dsn: str, retry_count: int) -> str | None:
    body = {"name": f"canary {retry_count}", "organizationId": ORG, "destination": dsn, "entities": ["account"],
            "retryCount": retry_count, "retryIntervalSeconds": 0}  # fmt: skip
    try:
        p = rt.service.create(ProfileCreate.model_validate(body))
    except Exception as exc:  # a malformed DSN may be refused at once: that path must not leak either
        return repr(exc)
    rt.service.activate(p.id, check=False)
    return None


@pytest.fixture
def seen(caplog: pytest.LogCaptureFixture) -> Iterator[Seen]:
    caplog.set_level(logging.DEBUG)
    s = Seen()
    yield s
    s.add("logs", caplog.text)
    for record in caplog.records:  # the records themselves, as any handler would see them
        s.add(f"log record {record.name}", record.getMessage())
    assert s.leaks() == []


@pytest.mark.parametrize("case", CASES)
def test_replay_never_shows_the_password(
    case: str, server: tuple[str, int], seen: Seen, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = dsns(*server)[case]
    data = tmp_path / "in.jsonl"
    data.write_text(note(1) + "\n")
    code = des(["replay", str(data), "--destination", dsn, "--rejects-dir", str(tmp_path / "rejects")])
    out = capsys.readouterr()
    assert code != 0
    seen.add("stdout", out.out)
    seen.add("stderr", out.err)
    assert out.err.strip()  # a reason was given
    seen.files(tmp_path)


@pytest.mark.parametrize("case", CASES)
def test_the_admin_api_never_shows_the_password(case: str, server: tuple[str, int], seen: Seen, tmp_path: Path) -> None:
    dsn = dsns(*server)[case]
    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True))
    services = ApiServices(store=rt.store, profiles=rt.service, auth=AuthConfig(api_key=ADMIN_KEY))
    headers = {"x-functions-key": ADMIN_KEY}
    body = {"name": "canary", "organizationId": ORG, "destination": dsn, "entities": ["account"]}
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            created = client.post("/profiles", json=body, headers=headers)
            seen.add("POST /profiles", created.text)
            seen.add("POST /profiles/validate", client.post("/profiles/validate", json=body, headers=headers).text)
            listed = client.get("/profiles", headers=headers)
            seen.add("GET /profiles", listed.text)
            assert listed.status_code == 200
            if created.status_code == 201:
                pid = created.json()["id"]
                for method, path in [("GET", f"/profiles/{pid}"), ("GET", f"/profiles/{pid}/test"),
                                     ("POST", f"/profiles/{pid}/activate"),
                                     ("POST", f"/profiles/{pid}/activate?check=false"),
                                     ("GET", f"/profiles/{pid}/metrics")]:  # fmt: skip
                    r = client.request(method, path, headers=headers)
                    seen.add(f"{method} {path}", r.text)
                    assert r.status_code < 500, (path, r.text)
            else:
                assert created.status_code in (400, 422), created.text
    finally:
        rt.close()


@pytest.mark.parametrize("case", CASES)
def test_single_destination_mode_never_shows_the_password(case: str, server: tuple[str, int], seen: Seen,
                                                         tmp_path: Path) -> None:  # fmt: skip
    env = {S.DESTINATION_DSN: dsns(*server)[case], S.REJECTS_DIR: str(tmp_path / "rejects"),
           S.ADMIN_STORE: f"sqlite:///{tmp_path / 'admin.db'}"}  # fmt: skip
    with pytest.raises(REFUSED) as raised:
        build_root(S.AppConfig.from_env(env)).close()
    seen.error("build_root", raised.value)


@pytest.mark.parametrize("case", CASES)
def test_the_handler_without_blob_storage_never_shows_the_password(
    case: str, server: tuple[str, int], seen: Seen, tmp_path: Path
) -> None:
    dsn = dsns(*server)[case]
    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True))
    root = profiles_root(rt, rejects_dir=tmp_path / "rejects")
    try:
        refused = create_profile(rt, dsn, retry_count=3)
        if refused is not None:
            seen.add("create", refused)
            return
        with pytest.raises(REFUSED) as raised:  # nothing can be parked: Service Bus redelivers
            handle_notifications([note(1), "{broken"], root)
        seen.error("handler", raised.value)
    finally:
        root.close()
        rt.close()
    seen.files(tmp_path / "rejects")


@pytest.mark.parametrize("case", CASES)
def test_the_handler_without_blob_storage_fails_retry_count_0_locally_without_the_password(
    case: str, server: tuple[str, int], seen: Seen, tmp_path: Path
) -> None:
    """Retry count 0 means no retry: the notifications fail at once, to the local failure log, with
    the redacted reason (as they do with Blob storage); the batch completes."""
    dsn = dsns(*server)[case]
    rt = build_runtime(ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True))
    root = profiles_root(rt, rejects_dir=tmp_path / "rejects")
    try:
        refused = create_profile(rt, dsn, retry_count=0)
        if refused is not None:
            seen.add("create", refused)
            return
        out = handle_notifications([note(1), note(2), "{broken"], root)
        seen.add("result", out.summary())
        final = out.final()
        assert (final.failed, final.unprocessable) == (2, 1)
        assert all(f.reason.startswith("destination unavailable (retry count 0): ") for f in final.failures)
        pid = rt.store.list_profiles()[0].id
        logged = (tmp_path / "rejects" / pid / "failures.csv").read_text()  # the local failure log
        assert logged.count("destination unavailable (retry count 0)") == 2
    finally:
        root.close()
        rt.close()
    seen.files(tmp_path / "rejects")


@pytest.mark.parametrize("case", CASES)
def test_the_handler_and_retries_on_blob_storage_never_show_the_password(
    case: str, server: tuple[str, int], seen: Seen, tmp_path: Path, storage: Storage
) -> None:
    dsn = dsns(*server)[case]
    rt = build_runtime(
        ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True), storage=storage
    )
    root = profiles_root(rt)
    try:
        refused = create_profile(rt, dsn, retry_count=2)
        if refused is not None:
            seen.add("create", refused)
            return
        out = handle_notifications([note(1), "{broken"], root)  # parked in a retry blob
        seen.add("result", out.summary())
        retries = root.retries
        assert retries is not None
        [state] = list(storage.retries.states())
        seen.add("retry state", state.raw)
        statuses = [process_retry_blob(state.name, retries).status for _ in range(2)]
        assert statuses == [Status.RESCHEDULED, Status.EXHAUSTED]  # failure log and parked failures now
        pid = rt.store.list_profiles()[0].id
        rows = list(storage.failure_log.rows(pid))
        assert len(rows) == 1
        seen.add("failure log rows", rows)
        seen.add("parked failures", list(storage.parked.entries(pid)))
        rt.service.delete(pid)
        assert create_profile(rt, dsn, retry_count=0) is None
        handle_notifications([note(2)], root)  # retry count 0: failed at once
    finally:
        root.close()
        rt.close()
    assert seen.blobs(storage) >= 3
