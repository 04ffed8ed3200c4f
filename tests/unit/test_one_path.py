"""One path for both modes (issue 8): the handlers and the retry code never ask which mode they are
in, and single-destination mode's router is the fan-out's batch path with one fixed target."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.routing import FanOutRouter, FixedRouter, ProfileRouter

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODE_NAMES = {"FixedRouter", "ProfileRouter", "FixedTarget", "runtime", "mode"}


def test_handlers_and_retries_have_no_mode_branches() -> None:
    found = []
    for path in [SHARED / "handlers.py", *(SHARED / "retry").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if name in MODE_NAMES:
                found.append(f"{path.name}:{node.lineno}: {name}")
    assert found == []


def test_both_routers_share_the_batch_path() -> None:
    for router in (FixedRouter, ProfileRouter):
        assert issubclass(router, FanOutRouter)
        for method in ("apply_batch", "target", "apply", "record", "policy_for", "rejects_of"):
            assert getattr(router, method) is getattr(FanOutRouter, method), (router.__name__, method)
