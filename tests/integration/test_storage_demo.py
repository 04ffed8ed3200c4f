"""The demo's blob-storage phase on its own Azurite: a spill, a retry and a failure-log entry, converged."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from shared.tools.demo import run_stream_demo

pytestmark = pytest.mark.integration


def test_demo_shows_spill_retry_and_failure_log(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_stream_demo(tmp_path / "des-demo.db", seed=4, records=120, console=Console(file=out, width=160)) == 0
    text = out.getvalue()
    assert "Blob storage on Azurite" in text
    assert "spilled to an encrypted blob" in text
    assert "retry resolved" in text
    assert "failurelog/" in text
    assert "does not fit column" in text
    assert "contain no record value" in text
    assert "NO" not in text.split("Blob storage on Azurite")[1].split("Convergence")[0]
    assert "Converged and conserved" in text
