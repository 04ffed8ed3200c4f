"""`des simulate dataverse …` hands every later argument to the simulator's own parser."""

from __future__ import annotations

import pytest

from shared.cli import main


def test_simulate_dataverse_passes_its_options_through(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["simulate", "dataverse", "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: des simulate dataverse")
    assert "--records" in out
    assert "--port" in out


def test_simulate_without_a_simulator_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["simulate"])
    assert stopped.value.code == 2
    assert "dataverse" in capsys.readouterr().err
