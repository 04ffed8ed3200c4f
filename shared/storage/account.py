"""The blob stores of one storage account (:class:`Storage`), opened from its configuration, and the
blob-backed reject sink."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.config import BLOB_KEY, BLOB_OLD_KEYS, SettingsError, StorageConfig
from shared.contract.parse import Unprocessable
from shared.engine.outcomes import RecordFailure
from shared.storage.blobs import BlobStores, ParkedFailureStore, PayloadStore, RetryStore, UnprocessableStore, utcnow
from shared.storage.crypto import EncryptionKeyError, KeyRing, default_credential, key_ring_from_specs
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
        # The parked copy first: a failure-log line always has its notification for a re-sync.
        self.storage.parked.put(self.profile_id, items)
        self.storage.failure_log.append(self.profile_id, items)

    def unprocessable(self, items: list[Unprocessable]) -> None:
        self.storage.unprocessable.put(self.profile_id, items)


def open_storage(config: StorageConfig | None) -> Storage | None:
    """The storage account of the settings (:class:`~shared.config.StorageConfig`), or None when none
    is configured: a connection string (``UseDevelopmentStorage=true`` for Azurite), or identity-based
    (``AzureWebJobsStorage__blobServiceUri`` / ``__accountName``) with managed identity."""
    if config is None:
        return None
    try:
        keys = key_ring_from_specs(config.blob_key, list(config.old_keys))
    except EncryptionKeyError as exc:
        raise SettingsError(f"setting {BLOB_KEY}/{BLOB_OLD_KEYS}: {exc}") from exc
    if config.connection_string:
        return Storage.from_connection_string(config.connection_string, keys)
    return Storage(BlobStores.from_account_url(config.account_url, default_credential(), keys))
