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
# httpx is not among them: the function app runs the Dataverse source, whose Web API client is httpx.
TOOLING_DEPENDENCIES = ("rich", "psutil", "uvicorn")


def tool_modules() -> list[str]:
    tools = ROOT / "shared" / "tools"
    names = ["shared.tools"]
    for path in sorted(tools.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] != "__init__":
            names.append(".".join(parts))
    return names


def loaded_after(code: str, tmp_path: Path) -> set[str]:
    """The modules in ``sys.modules`` of a fresh interpreter after running ``code``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DES_", "AzureWebJobs", "ServiceBus"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HOME"] = str(tmp_path)
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
    # rich is left out here: httpx (the Dataverse source's client) imports its optional command line,
    # and with it rich, whenever rich is installed (it is not, in Azure). Our own modules stay clean:
    assert not top_level(loaded) & (set(TOOLING_DEPENDENCIES) - {"rich"})
    assert not loaded & set(tool_modules())
    assert "shared.cli" not in loaded


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
