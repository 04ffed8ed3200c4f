"""What each function does, as plain calls: the function app only converts bindings to these."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from shared.bootstrap import Container
from shared.engine.outcomes import BatchResult

log = logging.getLogger(__name__)


def handle_notifications(bodies: Sequence[bytes | str], c: Container) -> BatchResult:
    """Apply one Service Bus batch.

    Failed records go to the failure log and unprocessable bodies are kept; both are outcomes, so
    the messages complete. A transient destination error propagates: the host abandons the batch
    and Service Bus redelivers it (the engine is idempotent, so redelivery is safe).
    """
    with c.lock:
        result = c.engine.apply_bodies(bodies)
    c.rejects.failures(result.failures)
    c.rejects.unprocessable(result.unprocessables)
    log.info(
        "batch of %s messages: received=%s applied=%s stale=%s failed=%s unprocessable=%s",
        len(bodies), result.received, result.applied, result.stale, result.failed, result.unprocessable,
    )
    return result
