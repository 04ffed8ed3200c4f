"""What a live destination check reports, shared by the dialects' ``check`` modules.

Steps, each reported by name: ``secret`` (the connection string could be had), ``connect``,
``schema`` (exists, or may be created), ``create table`` and ``drop table`` (a probe table named
``<prefix>__des_check_<random>`` in the profile's schema). Each dialect runs its steps in one
transaction that is rolled back, so nothing is left behind even when a step fails half way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.engine.ports import Layout

CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 15_000
DETAIL_MAX = 500


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail[:DETAIL_MAX]))
        return ok

    def replace_last(self, name: str, ok: bool, detail: str) -> None:
        self.checks[-1] = Check(name, ok, detail[:DETAIL_MAX])

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


# A dialect's check: (dsn, layout, report, scrub) -> None, adding its steps to the report.
# ``scrub`` masks the DSN's secrets in any text taken from the driver.
Scrub = Callable[[str], str]
Runner = Callable[[str, Layout, CheckReport, Scrub], None]


def step(report: CheckReport, name: str, action: Callable[[], Any], scrub: Scrub) -> bool:
    """Run one named step; its error (secrets masked) becomes the step's detail."""
    try:
        action()
    except Exception as exc:
        return report.add(name, False, scrub(str(exc) or type(exc).__name__))
    return report.add(name, True, "ok")


def probe_name(layout: Layout) -> str:
    suffix = uuid.uuid4().hex[:10]
    return f"{layout.prefix}__des_check_{suffix}" if layout.prefix else f"_des_check_{suffix}"
