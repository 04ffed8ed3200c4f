"""A retry blob that must not be applied as it is goes to the unprocessable store, with the reason.

Malformed metadata (``desattempt=abc``), content that is not a retry batch, or content that is not
what the blob's name was made from (another blob's content copied over it): the blob is moved byte
for byte (still encrypted) to ``unprocessablemessages/<profile>/`` with the reason, its notifications
are counted as unprocessable (and leave the pending gauge if they were in it), and it is deleted
from ``retry/``. Nothing stays stuck and nothing is applied that was not parked under that name.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.engine.outcomes import BatchResult
from shared.retry.batch import M_COUNTED
from shared.retry.ports import RetryDeps
from shared.storage.blobs import PROFILE_RE, RETRY, RetryState

log = logging.getLogger(__name__)


def profile_of(state: RetryState, default: str) -> str:
    """The profile a retry blob belongs to: its metadata's, else its name's folder, else ``default``."""
    if state.profile_id:
        return state.profile_id
    folder = state.name.rpartition("/")[0]
    return folder if folder and PROFILE_RE.match(folder) else default


def quarantine(deps: RetryDeps, state: RetryState, reason: str, *, lease: Any = None) -> str:
    """Move the blob to the unprocessable store with ``reason``; returns where it was kept."""
    router = deps.router
    profile_id = profile_of(state, router.default_profile_id)
    kept = deps.unprocessable.keep_undecryptable(profile_id, RETRY, state.name, reason)
    result = BatchResult(received=state.count, unprocessable=state.count)
    router.record(profile_id, result, -state.count if state.raw.get(M_COUNTED) == "1" else 0)
    deps.retries.delete(state.name, lease=lease)
    log.error("retry blob %s cannot be applied as it is (%s); kept as %s", state.name, reason, kept)
    return kept
