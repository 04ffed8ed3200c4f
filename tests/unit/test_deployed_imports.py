"""What a fresh interpreter loads: the function app none of the tooling, ``des replay`` no server or UI.

Each check runs ``python -c ...`` in a new process (this test process has imported everything), from
the repository root like the Functions host, and reads that process's ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# httpx ships (the Dataverse source's Web API client) but is imported only when a root attaches the
# source, never by importing the app: it would also pull rich in wherever rich is installed.
TOOLING_DEPENDENCIES = ("rich", "psutil", "uvicorn", "httpx")


def tool_modules() -> list[str]:
    tools = ROOT / "shared" / "tools"
    names = ["shared.tools"]
    for path in sorted(tools.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] != "__init__":
            names.append(".".join(parts))
    return names


# A syntactically valid Application Insights connection string whose endpoint is a closed local port.
FAKE_APPINSIGHTS = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/;"
    "LiveEndpoint=http://127.0.0.1:9/"
)
TELEMETRY_MODULES = ("azure.monitor.opentelemetry", "opentelemetry.sdk")


def loaded_after(code: str, tmp_path: Path, settings: dict[str, str] | None = None) -> set[str]:
    """The modules in ``sys.modules`` of a fresh interpreter after running ``code``."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("DES_", "AzureWebJobs", "ServiceBus", "APPLICATIONINSIGHTS_"))
    }  # fmt: skip
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HOME"] = str(tmp_path)
    env["TMPDIR"] = str(tmp_path)  # the exporter's offline storage, if it writes any
    env.update(settings or {})
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_tool_modules_are_listed() -> None:
    names = tool_modules()
    assert {"shared.tools.demo", "shared.tools.bench", "shared.tools.crm_simulator", "shared.tools.serve"} <= set(names)


def test_importing_the_function_app_loads_no_tooling(tmp_path: Path) -> None:
    loaded = loaded_after("import function_app", tmp_path)
    assert "function_app" in loaded
    assert "shared.api" in loaded  # the import really built the app
    assert not top_level(loaded) & set(TOOLING_DEPENDENCIES)
    assert not loaded & set(tool_modules())
    assert "shared.cli" not in loaded
    # No Application Insights setting: the Azure Monitor distro (and the OpenTelemetry SDK) not loaded.
    assert not {m for m in loaded if m.startswith(TELEMETRY_MODULES)}


# Run after `import function_app` with APPLICATIONINSIGHTS_CONNECTION_STRING set: an in-memory
# exporter joins the distro's logger provider, and a fan-out-style pool thread logs inside an invocation.
EXPORTED_LOGS = """
import json, logging, threading
from concurrent.futures import ThreadPoolExecutor
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from shared.observability import InvocationIdFilter, invocation, propagating
from tests.support.functions import FakeContext

memory = InMemoryLogRecordExporter()
get_logger_provider().add_log_record_processor(SimpleLogRecordProcessor(memory))
handlers = [h for h in logging.getLogger().handlers if type(h).__module__.startswith("opentelemetry")]
log = logging.getLogger("shared.probe")
log.setLevel(logging.INFO)
with invocation(FakeContext(invocation_id="inv-42")):
    log.info("main thread")
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(propagating(lambda i: log.info("pool thread %s", i)), range(2)))
log.info("outside")
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL: x")
found = {}
for item in memory.get_finished_logs():
    record = getattr(item, "log_record", item)
    found[str(record.body)] = (record.attributes or {}).get("InvocationId")
filters = [any(isinstance(f, InvocationIdFilter) for f in h.filters) for h in handlers]
print(json.dumps({"found": found, "filters": filters}))
"""


def test_with_application_insights_set_logs_are_exported_with_the_invocation_id(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DES_", "AzureWebJobs", "ServiceBus"))}
    env.update({
        "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
        "APPLICATIONINSIGHTS_CONNECTION_STRING": FAKE_APPINSIGHTS,
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=11111111-1111-1111-1111-111111111111;Authorization=AAD",
    })  # fmt: skip
    code = f"import function_app\n{EXPORTED_LOGS}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["filters"] == [True]  # the distro's one log handler carries the invocation-id filter
    found = result["found"]
    assert found["main thread"] == "inv-42"
    assert found["pool thread 0"] == found["pool thread 1"] == "inv-42"  # fan-out threads too
    assert found["outside"] is None
    assert not any("Request URL" in body for body in found)  # azure-core request logs stay at WARNING


def test_des_replay_loads_no_server_client_or_tooling(tmp_path: Path) -> None:
    stream = tmp_path / "in.jsonl"
    note = {
        "schemaVersion": 1, "organizationId": "11111111-1111-1111-1111-111111111111", "entity": "account",
        "recordId": "00000000-0000-0000-0000-000000000001", "changeType": "update", "version": 1,
        "changedOn": "2026-11-21T10:00:00Z", "attributes": {"name": "A"},
    }  # fmt: skip
    stream.write_text(json.dumps(note) + "\n", encoding="utf-8")
    code = (
        "from shared.cli import main\n"
        f"rc = main(['replay', {str(stream)!r}, '--destination', 'sqlite:///{tmp_path}/d.db', '--workers', '1',"
        f" '--rejects-dir', {str(tmp_path / 'rejects')!r}])\n"
        "assert rc == 0, rc"
    )
    loaded = loaded_after(code, tmp_path)
    assert "shared.replay" in loaded
    assert not top_level(loaded) & {"uvicorn", "httpx", "psutil"}
    assert "rich" not in top_level(loaded)  # stderr is not a terminal here: no progress bar
    assert not loaded & set(tool_modules())
