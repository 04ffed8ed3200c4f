"""Hostile input of issue 12 through real databases and the replay command: each test reproduces a
finding that failed before its fix.

* a GUID with a trailing newline in a declared Uniqueidentifier column fails its record on both
  SQLite and PostgreSQL (SQLite stored a 37-character id while PostgreSQL rejected it);
* a float into a declared integer column fails its record (``9007199254740993.0`` was rounded);
* a lone surrogate, invalid UTF-8 and a leading byte-order mark in a replayed file: the replay
  finishes, the bad lines are unprocessable in the reject files, the later lines are applied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.destinations import Layout
from shared.engine.engine import SyncEngine
from tests.conftest import DestinationFactory
from tests.support.metadata_scenarios import attr, body, metadata
from tests.support.scenarios import up

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _declared(open_dest: DestinationFactory) -> SyncEngine:
    engine = SyncEngine(open_dest(Layout()))
    md = metadata("account", 1, attr("parentguid", "Uniqueidentifier"), attr("employees", "Integer"))
    r = engine.apply_bodies([body(md)])
    assert r.applied == 1, [u.reason for u in r.unprocessables]
    return engine


def test_a_guid_with_a_trailing_newline_fails_on_every_destination(open_dest: DestinationFactory) -> None:
    engine = _declared(open_dest)
    bodies = [up("account", 1, 1, parentguid=GUID + "\n").body(), up("account", 2, 1, parentguid=GUID).body()]
    r = engine.apply_bodies(bodies)
    assert (r.applied, r.failed) == (1, 1), [f.reason for f in r.failures]
    assert "parentguid" in r.failures[0].reason


@pytest.mark.parametrize("value", [9007199254740993.0, 5.0])
def test_a_float_in_a_declared_integer_column_fails_its_record(open_dest: DestinationFactory, value: float) -> None:
    engine = _declared(open_dest)
    r = engine.apply_bodies([up("account", 1, 1, employees=value).body(), up("account", 2, 1, employees=7).body()])
    assert (r.applied, r.failed) == (1, 1), r.counts()
    assert "employees" in r.failures[0].reason
    assert "integer" in r.failures[0].reason


def test_replay_keeps_going_past_hostile_lines(tmp_path: Path) -> None:
    good = [up("account", i, 1, name=f"n{i}").body().encode() for i in range(4)]
    surrogate = up("account", 10, 1, name="x").body().replace('"x"', '"\\ud800"').encode()
    bad_utf8 = up("account", 11, 1, name="x").body().encode().replace(b'"x"', b'"\xff"')
    lines = [b"\xef\xbb\xbf" + good[0], surrogate, good[1], bad_utf8, good[2], good[3]]
    data = tmp_path / "hostile.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    db = tmp_path / "out.db"
    rejects = tmp_path / "rejects"
    proc = subprocess.run(
        [sys.executable, "-m", "shared", "replay", str(data), "--destination", f"sqlite:///{db}",
         "--rejects-dir", str(rejects), "--batch-size", "2"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["applied"], summary["unprocessable"]) == (4, 2), summary
    kept = "".join(p.read_text(encoding="utf-8") for p in rejects.rglob("*") if p.is_file())
    assert "surrogate" in kept
    assert "UTF-8" in kept
    assert "\ufffd" not in kept
