"""The blob stores of one storage account (:class:`Storage`; :func:`shared.root.open_storage` opens it
from the configuration), and the blob-backed reject sink."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.contract.parse import Unprocessable
from shared.engine.outcomes import RecordFailure
from shared.rejects import redact_failures
from shared.storage.blobs import BlobStores, ParkedFailureStore, PayloadStore, RetryStore, UnprocessableStore, utcnow
from shared.storage.crypto import KeyRing
from shared.storage.failurelog import FailureLog

log = logging.getLogger(__name__)


@dataclass
class Storage:
    """Every blob store the sync paths use, on one account, with one key ring."""

    stores: BlobStores
    clock: Callable[[], datetime] = utcnow
    payloads: PayloadStore = field(init=False)
    retries: RetryStore = field(init=False)
    unprocessable: UnprocessableStore = field(init=False)
    parked: ParkedFailureStore = field(init=False)
    failure_log: FailureLog = field(init=False)

    def __post_init__(self) -> None:
        self.payloads = PayloadStore(self.stores, clock=self.clock)
        self.retries = RetryStore(self.stores)
        self.unprocessable = UnprocessableStore(self.stores, clock=self.clock)
        self.parked = ParkedFailureStore(self.stores, clock=self.clock)
        self.failure_log = FailureLog(self.stores, clock=self.clock)

    @classmethod
    def from_connection_string(
        cls, conn: str, keys: KeyRing, *, clock: Callable[[], datetime] = utcnow
    ) -> Storage:
        storage = cls(BlobStores.from_connection_string(conn, keys), clock)
        return storage

    def rejects(self, profile_id: str) -> BlobRejects:
        return BlobRejects(self, profile_id)


class BlobRejects:
    """The RejectSink on Blob storage for one profile: failure log + parked notifications, unprocessables."""

    def __init__(self, storage: Storage, profile_id: str) -> None:
        self.storage = storage
        self.profile_id = profile_id

    def failures(self, items: list[RecordFailure]) -> None:
        if not items:
            return
        items = redact_failures(items)
        # The parked copy first: a failure-log line always has its notification for a re-sync.
        self.storage.parked.put(self.profile_id, items)
        self.storage.failure_log.append(self.profile_id, items)

    def unprocessable(self, items: list[Unprocessable]) -> None:
        self.storage.unprocessable.put(self.profile_id, items)
