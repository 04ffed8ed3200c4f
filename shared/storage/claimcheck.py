"""Resolving claim checks on the processor side: ``payloadRef`` notifications become full ones.

For each notification with a ``payloadRef`` the payload blob is downloaded and decrypted, checked
against the reference (shared.contract.parse.resolve_reference) and put in its place. A missing,
undecryptable or mismatching payload makes the notification unprocessable with the reason (never
a silent drop). The payload blobs are deleted by the caller only after the destination commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.contract.models import Notification, notification_doc
from shared.contract.parse import ParsedBatch, Unprocessable, resolve_reference
from shared.storage.blobs import BlobDecryptionError, BlobMissing, BlobStoreError

log = logging.getLogger(__name__)


class PayloadSource(Protocol):
    """Where claim-check payloads are read (``PayloadStore`` on ``data/``, or a fake)."""

    def get(self, blob: str, *, size: int | None = None, sha256: str | None = None) -> bytes: ...


@dataclass
class Resolution:
    """What resolving a batch's references did."""

    blobs: list[str] = field(default_factory=list)  # payload blobs to delete after the commit
    references: dict[int, Notification] = field(default_factory=dict)  # id(resolved) -> its reference

    def original(self, n: Notification) -> dict[str, Any]:
        """The notification as it travelled (the small reference for a resolved one): for retry blobs."""
        return notification_doc(self.references.get(id(n), n))


def resolve_references(parsed: ParsedBatch, payloads: PayloadSource | None) -> Resolution:
    """Replace reference notifications in ``parsed`` by their payloads (in place)."""
    out = Resolution()
    if not any(n.payloadRef is not None for n in parsed.notifications):
        return out
    kept: list[Notification] = []
    for n in parsed.notifications:
        ref = n.payloadRef
        if ref is None:
            kept.append(n)
            continue
        body = n.model_dump_json(exclude_unset=True)
        if payloads is None:
            parsed.unprocessable.append(
                Unprocessable(body, "payloadRef received but no blob storage is configured", n.entity, n.recordId)
            )
            continue
        try:
            payload = payloads.get(ref.blob, size=ref.size, sha256=ref.sha256)
        except BlobMissing as exc:
            reason = f"payload blob is missing: {exc}"
            parsed.unprocessable.append(Unprocessable(body, reason, n.entity, n.recordId))
            continue
        except BlobDecryptionError as exc:
            parsed.unprocessable.append(Unprocessable(body, str(exc), n.entity, n.recordId))
            continue
        except BlobStoreError as exc:
            parsed.unprocessable.append(Unprocessable(body, str(exc), n.entity, n.recordId))
            continue
        resolved = resolve_reference(n, payload)
        if isinstance(resolved, Unprocessable):
            parsed.unprocessable.append(resolved)
            continue
        kept.append(resolved)
        out.blobs.append(ref.blob)
        out.references[id(resolved)] = n
    parsed.notifications = kept
    return out
