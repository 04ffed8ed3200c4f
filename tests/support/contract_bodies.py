"""The one builder of a contract v1 notification body for the contract's own tests (valid by default)."""

from __future__ import annotations

from typing import Any

GUID = "3f2b7c9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
ORG = "00000000-0000-4000-8000-000000000001"

ABSENT: Any = object()
"""Pass as a field's value to leave the field out of the body."""


def note(**fields: Any) -> dict[str, Any]:
    """An update of one account with version 7; ``fields`` replace (or, with ABSENT, remove) the defaults."""
    body: dict[str, Any] = {
        "schemaVersion": 1,
        "organizationId": ORG,
        "entity": "account",
        "recordId": GUID,
        "changeType": "update",
        "version": 7,
        "changedOn": "2026-11-21T10:00:00Z",
        "attributes": {"name": "Contoso"},
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ABSENT}
