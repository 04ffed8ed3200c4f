"""Destination dialects, one folder per database, chosen by DSN scheme through the registry
(``registry.py``): ``sqlite:///path.db``, ``postgresql://...``, ``mssql://...``.

The interface they implement is the engine's port (``shared/engine/ports.py``); the names below
are re-exported for callers that open destinations.
"""

from __future__ import annotations

from shared.destinations.registry import describe, open_destination, redact
from shared.engine.ports import (
    ConnectionFailed,
    Destination,
    DestinationError,
    Layout,
    LayoutError,
    TransientDestinationError,
    UnsupportedDestination,
)

__all__ = [
    "ConnectionFailed",
    "Destination",
    "DestinationError",
    "Layout",
    "LayoutError",
    "TransientDestinationError",
    "UnsupportedDestination",
    "describe",
    "open_destination",
    "redact",
]
