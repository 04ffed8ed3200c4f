"""The function app's Service Bus handler as the demo calls it (profile mode), its fan-out folded
into one :class:`BatchResult` for the demo's tables. Shared by the demo's SQLite phase
(:mod:`shared.tools.demo`) and its blob-storage phase (:mod:`shared.tools.demo_storage`)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.engine.outcomes import BatchResult
from shared.handlers import handle_notifications
from shared.profiles.fanout import FanOutResult
from shared.root import Root


def fold(out: FanOutResult) -> tuple[BatchResult, int]:
    """A fan-out's final outcomes as one BatchResult (every profile's, plus the batch's
    unprocessable bodies) and the notifications skipped (no active profile). With one profile:
    received = result.received + skipped + what was parked for retry (reported when it resolves)."""
    return out.final(), out.skipped


def handle(bodies: Sequence[bytes | str], c: Root) -> tuple[BatchResult, int]:
    """The Service Bus function's handler (profile mode), folded for the demo's tables."""
    return fold(handle_notifications(bodies, c))
