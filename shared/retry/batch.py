"""What a parked batch is made of, and the outcomes given to it: shared by parking and attempts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.contract import exactjson
from shared.contract.metadata import METADATA_CHANGE_TYPE, MetadataNotification, validate_metadata
from shared.contract.models import Notification, notification_doc
from shared.contract.parse import ParsedBatch, Unprocessable
from shared.destinations.redaction import redact_text
from shared.engine.outcomes import BatchResult, Outcome, RecordFailure
from shared.engine.ports import ConnectionFailed, TransientDestinationError
from shared.profiles.secrets import SecretError
from shared.storage.claimcheck import Resolution
from shared.store.base import StoreUnavailable

log = logging.getLogger(__name__)

TRANSIENT = (TransientDestinationError, ConnectionFailed)
# What makes a retry attempt fail without being a bug: the destination, its Key Vault secret or
# (profile mode) the profile store is unavailable. Anything else propagates (poison handling).
UNAVAILABLE = (*TRANSIENT, SecretError, StoreUnavailable)
M_COUNTED = "descounted"  # "1" once the parked notifications were added to the pending-retry gauge
MAX_REASON = 1000
_ONE = TypeAdapter(Notification)


def short(exc: BaseException) -> str:
    """An error as one short line for retry-blob metadata, failure reasons and logs: redacted by the
    one redaction (no destination or store credential)."""
    text = " ".join(redact_text(str(exc)).split()) or type(exc).__name__
    return text[:300]


def fail_all(
    notifications: Sequence[Notification], reason: str, metadata: Sequence[MetadataNotification] = ()
) -> BatchResult:
    """Every notification failed with ``reason`` (failure-log lines). Entity metadata has no record
    to log: it is counted as failed and named in the log (the next metadata version replaces it)."""
    result = BatchResult()
    for n in notifications:
        result.count(Outcome.FAILED, n.entity, received=True)
        result.failures.append(RecordFailure(n, reason[:MAX_REASON]))
    for m in metadata:
        result.count(Outcome.FAILED, m.entity, received=True)
        log.error("metadata of %s (version %s) not applied: %s", m.entity, m.version, reason[:MAX_REASON])
    return result


def unprocessable_too(result: BatchResult, items: Sequence[Unprocessable]) -> BatchResult:
    result.add_unprocessable(items)
    return result


def items_of(
    notifications: Sequence[Notification], metadata: Sequence[MetadataNotification]
) -> list[Notification | MetadataNotification]:
    """Metadata first (a batch applies it before the records), then the record notifications."""
    items: list[Notification | MetadataNotification] = [*metadata, *notifications]
    return items


def doc_of(item: Notification | MetadataNotification, resolution: Resolution | None = None) -> dict[str, Any]:
    """A notification as it is parked (a claim check as its reference, when ``resolution`` says so)."""
    if isinstance(item, Notification):
        return resolution.original(item) if resolution is not None else notification_doc(item)
    return item.model_dump(mode="json", exclude_unset=True)


def parse_parked(docs: Sequence[object]) -> ParsedBatch:
    """A retry blob's entries as the engine takes them (entries failing the contract: unprocessable)."""
    parsed = ParsedBatch(received=len(docs))
    for doc in docs:
        if isinstance(doc, dict) and doc.get("changeType") == METADATA_CHANGE_TYPE:
            m = validate_metadata(doc)
            if isinstance(m, MetadataNotification):
                parsed.metadata.append(m)
                continue
        try:
            n = _ONE.validate_python(doc)
        except ValidationError as exc:
            text = exactjson.dumps(doc)[:100_000]
            entity = doc.get("entity") if isinstance(doc, dict) else None
            rid = doc.get("recordId") if isinstance(doc, dict) else None
            parsed.unprocessable.append(
                Unprocessable(text, f"retry blob entry fails the contract: {exc.error_count()} errors",
                              entity if isinstance(entity, str) else None, rid if isinstance(rid, str) else None)
            )
            continue
        parsed.notifications.append(n)
    return parsed
