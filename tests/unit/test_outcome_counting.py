"""``BatchResult`` counts through one method, with the ``Outcome`` enum: no code of the engine, the
retries or the routers bumps an outcome field by hand (issue 8)."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.engine.outcomes import BatchResult, Outcome
from shared.store.base import PROFILE_LEVEL, UNKNOWN_ENTITY, MetricsEntry

ROOT = Path(__file__).resolve().parents[2] / "shared"
OUTCOME_FIELDS = {o.value for o in Outcome}
# Where BatchResult and EntityCounts are counted (the store's metrics deltas are another type).
COUNTING_CODE = [*(ROOT / "engine").glob("*.py"), *(ROOT / "retry").glob("*.py"), ROOT / "routing.py",
                 ROOT / "handlers.py", ROOT / "replay.py"]  # fmt: skip


def test_no_outcome_field_is_bumped_by_hand() -> None:
    bumps = []
    for path in COUNTING_CODE:
        if path.name == "outcomes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.AugAssign)
                and isinstance(node.target, ast.Attribute)
                and node.target.attr in OUTCOME_FIELDS
            ):
                bumps.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert bumps == []


def test_count_updates_the_total_and_the_entity() -> None:
    r = BatchResult(received=5)
    r.receive("account", 3)
    r.receive("contact", 2)
    r.count(Outcome.APPLIED, "account", 2)
    r.count(Outcome.STALE, "account")
    r.count(Outcome.FAILED, "contact", 2)
    assert (r.applied, r.stale, r.failed, r.unprocessable) == (2, 1, 2, 0)
    assert (r.per_entity["account"].applied, r.per_entity["account"].stale) == (2, 1)
    assert r.per_entity["contact"].received == 2
    assert r.per_entity["contact"].failed == 2
    assert r.conserved


def test_count_received_with_the_outcome() -> None:
    r = BatchResult()
    r.count(Outcome.UNPROCESSABLE, None, 2, received=True)
    r.count(Outcome.UNPROCESSABLE, "account", received=True)
    assert (r.received, r.unprocessable) == (3, 3)
    assert r.per_entity["account"].received == 1
    assert r.conserved


def test_metrics_entries_keep_what_has_no_entity() -> None:
    """A result's unprocessable bodies whose entity could not be read (a parked batch's broken
    body, a missing claim-check payload) are counted under the unknown-entity key, not lost."""
    r = BatchResult(received=1)
    r.receive("account")
    r.count(Outcome.APPLIED, "account")
    r.count(Outcome.UNPROCESSABLE, None, received=True)
    entry = MetricsEntry.from_result("p", r, pending_retry=2)
    assert sum(d.received for d in entry.entities.values()) == 2
    unknown = entry.entities[UNKNOWN_ENTITY]
    assert (unknown.received, unknown.unprocessable) == (1, 1)
    assert entry.entities[PROFILE_LEVEL].pending_retry == 2
