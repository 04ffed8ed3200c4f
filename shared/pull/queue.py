"""The work queue of page units: one message = one page of one table of one profile.

* :class:`StorageWorkQueue` - an Azure Storage queue on the app's storage account
  (``AzureWebJobsStorage``; Azurite locally). Messages are base64 text, what the Functions host's
  queue trigger reads by default. The function app's ``source_pages`` function is its consumer;
  ``des api``'s worker (:mod:`shared.pull.worker`) receives from it where no Functions host runs.
* :class:`InMemoryWorkQueue` - an in-process queue where no storage account is configured (the
  embedded default): same contract (visibility timeout, dequeue count, delete by receipt).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.contract.models import GUID_PATTERN

MESSAGE_MAX = 4096
_GUID = re.compile(GUID_PATTERN)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")


class BadMessage(ValueError):
    """A queue message that is not a page unit (kept out of the chain, logged)."""


@dataclass(frozen=True, slots=True)
class PageMessage:
    """A unit of work: the next page of ``entity`` for ``profile_id``. ``revision``: the cursor revision
    the sender saw; a unit whose cursor has moved on since is a duplicate and is dropped."""

    profile_id: str
    entity: str
    revision: int | None = None

    def encode(self) -> str:
        return json.dumps({"profileId": self.profile_id, "entity": self.entity, "revision": self.revision},
                          separators=(",", ":"))  # fmt: skip

    @classmethod
    def decode(cls, text: str | bytes) -> PageMessage:
        if len(text) > MESSAGE_MAX:
            raise BadMessage(f"a page message of {len(text)} characters")
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise BadMessage(f"a page message that is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BadMessage("a page message that is not a JSON object")
        pid, entity, revision = doc.get("profileId"), doc.get("entity"), doc.get("revision")
        if not isinstance(pid, str) or not _GUID.match(pid):
            raise BadMessage("profileId must be a GUID")
        if not isinstance(entity, str) or not _NAME.match(entity):
            raise BadMessage("entity must be a logical name")
        if revision is not None and (not isinstance(revision, int) or isinstance(revision, bool) or revision < 0):
            raise BadMessage("revision must be a whole number or null")
        return cls(pid.lower(), entity, revision)


@dataclass(frozen=True, slots=True)
class Received:
    text: str
    receipt: Any  # what delete() needs
    dequeue_count: int


class WorkQueue(Protocol):
    def send(self, text: str, *, delay_seconds: int = 0) -> None: ...

    def receive(self, max_messages: int, visibility_seconds: int) -> list[Received]: ...

    def delete(self, message: Received) -> None: ...


@dataclass
class _Item:
    text: str
    visible_at: float
    id: int
    dequeue_count: int = 0
    pop: int = 0


@dataclass
class InMemoryWorkQueue:
    """The in-process queue (no storage account): visibility timeouts and dequeue counts like a Storage queue."""

    clock: Callable[[], float] = time.monotonic
    _items: dict[int, _Item] = field(default_factory=dict)
    _ids: Any = field(default_factory=itertools.count)
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def send(self, text: str, *, delay_seconds: int = 0) -> None:
        with self._lock:
            i = next(self._ids)
            self._items[i] = _Item(text, self.clock() + delay_seconds, i)
            self._lock.notify_all()

    def receive(self, max_messages: int, visibility_seconds: int) -> list[Received]:
        now = self.clock()
        out: list[Received] = []
        with self._lock:
            for item in sorted(self._items.values(), key=lambda x: (x.visible_at, x.id)):
                if len(out) >= max_messages or item.visible_at > now:
                    break
                item.visible_at = now + visibility_seconds
                item.dequeue_count += 1
                item.pop += 1
                out.append(Received(item.text, (item.id, item.pop), item.dequeue_count))
        return out

    def delete(self, message: Received) -> None:
        i, pop = message.receipt
        with self._lock:
            item = self._items.get(i)
            if item is not None and item.pop == pop:  # a receipt from an older receive is stale
                del self._items[i]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class StorageWorkQueue:
    """A Storage queue (azure-storage-queue): base64 messages, created on first use."""

    def __init__(self, client: Any) -> None:
        self.client = client  # azure.storage.queue.QueueClient with base64 encode/decode policies
        self._created = False
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> StorageWorkQueue:
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        return cls(QueueClient.from_connection_string(
            connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        ))  # fmt: skip

    @classmethod
    def from_account_url(cls, account_url: str, queue_name: str, credential: Any) -> StorageWorkQueue:
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        return cls(QueueClient(
            account_url, queue_name, credential=credential, message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        ))  # fmt: skip

    def _ensure(self) -> None:
        if self._created:
            return
        from azure.core.exceptions import ResourceExistsError

        with self._lock:
            if not self._created:
                with contextlib.suppress(ResourceExistsError):
                    self.client.create_queue()
                self._created = True

    def send(self, text: str, *, delay_seconds: int = 0) -> None:
        self._ensure()
        self.client.send_message(text, visibility_timeout=delay_seconds or None)

    def receive(self, max_messages: int, visibility_seconds: int) -> list[Received]:
        self._ensure()
        pages = self.client.receive_messages(messages_per_page=max_messages, visibility_timeout=visibility_seconds,
                                             max_messages=max_messages)  # fmt: skip
        return [Received(m.content, m, int(m.dequeue_count or 1)) for m in pages]

    def delete(self, message: Received) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):  # its visibility ran out and someone else took it
            self.client.delete_message(message.receipt)

    def close(self) -> None:
        self.client.close()
