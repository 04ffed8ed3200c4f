"""The blob trigger's poison queue is shared: act on our retry container's receipts, leave the rest alone.

The Functions host puts a receipt on ``webjobs-blobtrigger-poison`` for every blob whose trigger kept
failing: for every function, container and app that uses the storage account. A queue trigger on it
would complete (delete) every receipt, other apps' too. So a timer (``retry_poison``) scans it:

1. **Peek** the first visible receipts (:data:`PEEK_MAX`, the service's limit). Peeking changes
   nothing: no dequeue count, no invisibility, for anybody's message.
2. For each receipt of **ours** (:func:`is_ours`: ``ContainerName`` is ``retry`` and the function is
   ``retry_blobs``), give up on the blob (:func:`~shared.retry.sweep.give_up`: its notifications to
   the failure log, or the blob as it is to the unprocessable store). Idempotent: a blob already
   handled is "gone". A receipt older than the blob's first-seen time (by more than
   :data:`STALE_MARGIN`) is **stale** (the same batch was parked again under the same name after the
   receipt was written): the new blob is left to its own retries.
3. **Remove** our handled receipts, only from the front: when the first ``n`` peeked receipts are
   ours, receive ``n`` and delete those whose id we peeked. A received message that is not one of
   them (the queue's order is best effort) is made visible again at once, content, id and insertion
   time unchanged (its dequeue count goes up by one: that is all a receive can avoid).

Others' receipts are never received on purpose, deleted or changed. The limit: a peek sees only the
first 32 visible messages, and receipts nobody consumes (until their time-to-live, 7 days) may fill
the front. Ours behind them wait; the retry sweeper, which counts crashes per blob in its metadata
and gives up after the same threshold (:data:`~shared.retry.sweep.POISON_THRESHOLD`), takes such a
blob out of limbo anyway.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.retry.ports import RetryDeps
from shared.retry.sweep import give_up
from shared.storage.blobs import M_FIRST_SEEN, RETRY, BlobMissing

log = logging.getLogger(__name__)

STALE_MARGIN = timedelta(seconds=60)  # insertion times are whole seconds, and clocks differ
PEEK_MAX = 32  # Azure Queue storage peeks (and receives) at most 32 messages at a time
RETRY_FUNCTION = "retry_blobs"  # the blob trigger function whose receipts are ours (function_app.py)
REASON = "the blob trigger failed repeatedly (poison queue)"


@dataclass(frozen=True)
class Peeked:
    """A poison queue message as peeked: its id, text and when the host inserted it."""

    id: str
    text: str
    inserted_on: datetime | None = None


@dataclass(frozen=True)
class Receipt:
    """A blob trigger's poison receipt: ``{"Type": "BlobTrigger", "FunctionId", "ContainerName",
    "BlobName", "ETag", ...}`` (the WebJobs blob extension's message)."""

    container: str
    blob: str
    function_id: str = ""


def decode_text(text: str) -> str:
    """The host writes queue messages base64-encoded (the queues extension's default); plain JSON too."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return stripped
    with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
        return base64.b64decode(stripped, validate=True).decode("utf-8")
    return text


def parse_receipt(text: str) -> Receipt | None:
    """The receipt in a poison message, or None when the message is not a blob trigger receipt."""
    try:
        doc = json.loads(decode_text(text))
        return Receipt(str(doc["ContainerName"]), str(doc["BlobName"]), str(doc.get("FunctionId") or ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def is_ours(receipt: Receipt | None) -> bool:
    """A receipt of our retry container's trigger. ``FunctionId`` is ``Host.Functions.retry_blobs``;
    a receipt without one counts by its container alone."""
    if receipt is None or receipt.container != RETRY:
        return False
    return not receipt.function_id or receipt.function_id.rpartition(".")[2] == RETRY_FUNCTION


class PoisonQueue(Protocol):
    """``webjobs-blobtrigger-poison`` (:class:`StoragePoisonQueue` on Azure Queue storage)."""

    def peek(self, max_messages: int = PEEK_MAX) -> list[Peeked]:
        """The first visible messages, unchanged (an absent queue has none)."""

    def remove_leading(self, ids: Sequence[str]) -> int:
        """Receive ``len(ids)`` messages from the front, delete those in ``ids``, make any other visible
        again at once unchanged; returns how many were deleted."""

    def close(self) -> None: ...


def handle_receipt(receipt: Receipt, deps: RetryDeps, inserted_on: datetime | None = None) -> str:
    """Give up on our receipt's blob unless it is gone or newer than the receipt (then "stale")."""
    try:
        state = deps.retries.state(receipt.blob)
    except BlobMissing:
        return "gone"
    if inserted_on is not None and state.problem is None and M_FIRST_SEEN in state.raw and (
        state.first_seen > inserted_on + STALE_MARGIN
    ):
        log.warning("poison receipt for %s/%s predates the blob there now (parked again); left to its retries",
                    RETRY, receipt.blob)  # fmt: skip
        return "stale"
    return give_up(receipt.blob, deps, REASON)


@dataclass
class PoisonScan:
    """What one scan did: outcomes of our receipts, others' receipts seen (left alone), receipts removed."""

    outcomes: dict[str, int] = field(default_factory=dict)
    others: int = 0
    removed: int = 0


def scan_poison_queue(queue: PoisonQueue, deps: RetryDeps) -> PoisonScan:
    """One pass of the ``retry_poison`` timer (the module docstring has the rules)."""
    scan = PoisonScan()
    leading: list[str] = []
    at_front = True
    for message in queue.peek(PEEK_MAX):
        receipt = parse_receipt(message.text)
        if receipt is None or not is_ours(receipt):
            scan.others += 1
            at_front = False
            continue
        outcome = handle_receipt(receipt, deps, message.inserted_on)
        scan.outcomes[outcome] = scan.outcomes.get(outcome, 0) + 1
        if at_front:
            leading.append(message.id)
    if leading:
        scan.removed = queue.remove_leading(leading)
    if scan.outcomes or scan.removed:
        log.info("poison queue: ours %s, others' %s left alone, %s receipts removed", scan.outcomes, scan.others,
                 scan.removed)  # fmt: skip
    return scan


class StoragePoisonQueue:
    """The poison queue on Azure Queue storage (azure-storage-queue), raw text: the receipts are
    decoded by :func:`decode_text`, and a message put back keeps its bytes."""

    def __init__(self, client: Any, *, visibility_seconds: int = 30) -> None:
        self.client = client  # azure.storage.queue.QueueClient, no encode/decode policy
        self.visibility_seconds = visibility_seconds

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> StoragePoisonQueue:
        from azure.storage.queue import QueueClient

        return cls(QueueClient.from_connection_string(connection_string, queue_name))

    @classmethod
    def from_account_url(cls, account_url: str, queue_name: str, credential: Any) -> StoragePoisonQueue:
        from azure.storage.queue import QueueClient

        return cls(QueueClient(account_url, queue_name, credential=credential))

    def peek(self, max_messages: int = PEEK_MAX) -> list[Peeked]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            messages = self.client.peek_messages(max_messages=min(max_messages, PEEK_MAX))
        except ResourceNotFoundError:  # the host creates the queue with its first receipt
            return []
        return [Peeked(str(m.id), _text(m.content), m.inserted_on) for m in messages]

    def remove_leading(self, ids: Sequence[str]) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        wanted = set(ids)
        removed = 0
        received = self.client.receive_messages(
            messages_per_page=len(wanted), max_messages=len(wanted), visibility_timeout=self.visibility_seconds
        )
        for message in received:
            if message.id in wanted:
                with contextlib.suppress(ResourceNotFoundError):
                    self.client.delete_message(message.id, message.pop_receipt)
                    removed += 1
                continue
            # Not one we peeked: visible again at once. Passing the id (not the message) updates only
            # the visibility; the content stays as the host wrote it.
            with contextlib.suppress(ResourceNotFoundError):
                self.client.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)
            log.info("poison queue message %s received out of order; made visible again, unchanged", message.id)
        return removed

    def close(self) -> None:
        self.client.close()


def _text(content: object) -> str:
    return content.decode("utf-8", errors="replace") if isinstance(content, bytes) else str(content)

