"""Live check of a profile's destination, as DES's "validate" and "test" did.

The steps and their SQL live in each dialect (``shared/destinations/<dialect>/check.py``), picked
by the destination registry; see :mod:`shared.destinations.checks` for the steps. Error details
come from the driver, with every secret of the connection string masked.
"""

from __future__ import annotations

from shared.destinations.checks import Check, CheckReport
from shared.destinations.registry import check, scrub, secrets_of
from shared.engine.ports import Layout

__all__ = ["Check", "CheckReport", "check_destination", "scrub", "secrets_of"]


def check_destination(dsn: str, layout: Layout) -> CheckReport:
    """Connect, check the schema, create and drop a probe table; every step named."""
    return check(dsn, layout)
