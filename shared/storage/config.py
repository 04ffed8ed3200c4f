"""The blob stores of one storage account, built from settings, and the blob-backed reject sink."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.contract.parse import Unprocessable
from shared.engine.outcomes import RecordFailure
from shared.settings import BLOB_KEY, BLOB_OLD_KEYS, STORAGE_CONNECTION, SettingsError
from shared.storage.blobs import BlobStores, ParkedFailures, PayloadStore, RetryStore, UnprocessableStore, utcnow
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
    parked: ParkedFailures = field(init=False)
    failure_log: FailureLog = field(init=False)

    def __post_init__(self) -> None:
        self.payloads = PayloadStore(self.stores, clock=self.clock)
        self.retries = RetryStore(self.stores)
        self.unprocessable = UnprocessableStore(self.stores, clock=self.clock)
        self.parked = ParkedFailures(self.stores, clock=self.clock)
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


def storage_from_env(env: Mapping[str, str] | None = None) -> Storage | None:
    """The storage from app settings, or None when no storage account is configured.

    ``AzureWebJobsStorage`` is a connection string (``UseDevelopmentStorage=true`` for Azurite), or
    identity-based: ``AzureWebJobsStorage__blobServiceUri`` / ``__accountName`` with managed identity.
    ``DES_BLOB_KEY`` (and ``DES_BLOB_OLD_KEYS``) give the key-encryption keys and are required then.
    """
    env = os.environ if env is None else env
    conn = env.get(STORAGE_CONNECTION, "").strip()
    uri = env.get(f"{STORAGE_CONNECTION}__blobServiceUri", "").strip()
    account = env.get(f"{STORAGE_CONNECTION}__accountName", "").strip()
    if not (conn or uri or account):
        return None
    spec = env.get(BLOB_KEY, "").strip()
    if not spec:
        raise SettingsError(
            f"setting {BLOB_KEY} is required with {STORAGE_CONNECTION}: every blob holding record data is "
            "encrypted (a Key Vault key URL, or local-aes:<kid>:<base64 32 bytes> for development)"
        )
    try:
        keys = key_ring_from_specs(spec, (env.get(BLOB_OLD_KEYS, "") or "").split(","))
    except EncryptionKeyError as exc:
        raise SettingsError(f"setting {BLOB_KEY}/{BLOB_OLD_KEYS}: {exc}") from exc
    if conn:
        return Storage.from_connection_string(conn, keys)
    url = uri or f"https://{account}.blob.core.windows.net"
    return Storage(BlobStores.from_account_url(url, default_credential(), keys))
