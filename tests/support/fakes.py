"""In-memory FAKES of the blob stores the retry code uses, for fast unit tests (tests/unit).

They follow the real stores' contracts (shared/storage/blobs.py, proved on Azurite in
tests/integration): a retry blob is created only if new, its state lives in metadata with an etag
that changes on every write, a lease is exclusive until released or expired (by the fake's clock),
and a leased blob cannot be changed or deleted without its lease. They reuse the real
``RetryState``/``RetryBatch``/``batch_key`` so names and metadata are the real ones. No
encryption: ``make_unreadable`` stands for a blob whose key is gone.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contract.parse import Unprocessable
from shared.engine.outcomes import RecordFailure
from shared.storage.blobs import (
    M_ATTEMPT,
    M_COUNT,
    M_FIRST_SEEN,
    M_LAST_ERROR,
    M_NOT_BEFORE,
    M_PROFILE,
    RETRY,
    BlobDecryptionError,
    BlobMissing,
    BlobStoreError,
    RetryBatch,
    RetryState,
    batch_key,
    check_profile,
    iso,
    metadata_value,
)

_etags = itertools.count(1)


class FakeClock:
    """A settable UTC clock."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 21, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class LeaseConflict(BlobStoreError):
    """Like Azure's 412 LeaseIdMissing / LeaseIdMismatch."""


@dataclass
class _Blob:
    data: bytes
    meta: dict[str, str]
    etag: str = field(default_factory=lambda: f'"0x{next(_etags):X}"')
    lease_id: str | None = None
    lease_until: datetime | None = None
    unreadable: bool = False

    def touch(self) -> None:
        self.etag = f'"0x{next(_etags):X}"'


class FakeLease:
    def __init__(self, store: FakeRetryBlobs, name: str, lease_id: str) -> None:
        self.store, self.name, self.id = store, name, lease_id

    def release(self) -> None:
        blob = self.store.blobs.get(self.name)
        if blob is not None and blob.lease_id == self.id:
            blob.lease_id = blob.lease_until = None


class FakeRetryBlobs:
    """FAKE of ``RetryStore`` (``retry/``): metadata, etags, leases."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.blobs: dict[str, _Blob] = {}
        self._lease_ids = itertools.count(1)

    def _get(self, name: str) -> _Blob:
        blob = self.blobs.get(name)
        if blob is None:
            raise BlobMissing(f"blob {RETRY}/{name} does not exist")
        return blob

    def _leased_by_other(self, blob: _Blob, lease: Any) -> bool:
        held = blob.lease_id is not None and blob.lease_until is not None and blob.lease_until > self.clock()
        return held and (lease is None or getattr(lease, "id", None) != blob.lease_id)

    def park(
        self, profile_id: str, notifications: list[dict[str, Any]], *, reason: str, now: datetime, not_before: datetime
    ) -> tuple[str, bool]:
        name = f"{check_profile(profile_id)}/{batch_key(notifications)}.json"
        if name in self.blobs:
            return name, False
        meta = {
            M_PROFILE: profile_id, M_ATTEMPT: "0", M_NOT_BEFORE: iso(not_before), M_FIRST_SEEN: iso(now),
            M_COUNT: str(len(notifications)), M_LAST_ERROR: metadata_value(reason),
        }  # fmt: skip
        self.blobs[name] = _Blob(RetryBatch(profile_id, now, notifications).to_bytes(), meta)
        return name, True

    def state(self, name: str) -> RetryState:
        blob = self._get(name)
        return RetryState.of(name, dict(blob.meta), blob.etag)

    def read(self, name: str, *, lease: Any = None, state: RetryState | None = None) -> RetryBatch:
        blob = self._get(name)
        if blob.unreadable:
            raise BlobDecryptionError(f"cannot decrypt blob {RETRY}/{name}: its key is not configured (fake)")
        return RetryBatch.from_bytes(blob.data)

    def update(self, state: RetryState, changes: dict[str, str], *, lease: Any = None) -> None:
        blob = self._get(state.name)
        if self._leased_by_other(blob, lease):
            raise LeaseConflict(f"blob {RETRY}/{state.name} is leased")
        blob.meta = {**state.raw, **{k: metadata_value(v) for k, v in changes.items()}}
        blob.touch()

    def lease(self, name: str, seconds: int = 60) -> FakeLease | None:
        blob = self._get(name)
        if self._leased_by_other(blob, None):
            return None
        blob.lease_id = f"lease-{next(self._lease_ids)}"
        blob.lease_until = self.clock() + timedelta(seconds=seconds)
        return FakeLease(self, name, blob.lease_id)

    def delete(self, name: str, *, lease: Any = None) -> bool:
        blob = self.blobs.get(name)
        if blob is None:
            return False
        if self._leased_by_other(blob, lease):
            raise LeaseConflict(f"blob {RETRY}/{name} is leased")
        del self.blobs[name]
        return True

    def states(self, profile_id: str | None = None) -> Iterator[RetryState]:
        prefix = f"{check_profile(profile_id)}/" if profile_id else ""
        for name in sorted(self.blobs):
            if name.startswith(prefix):
                yield self.state(name)

    def make_unreadable(self, name: str) -> None:
        self._get(name).unreadable = True


class FakePayloads:
    """FAKE of ``PayloadStore`` (``data/``)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.deleted: list[str] = []

    def get(self, blob: str, *, size: int | None = None, sha256: str | None = None) -> bytes:
        if blob not in self.blobs:
            raise BlobMissing(f"blob data/{blob} does not exist")
        return self.blobs[blob]

    def delete(self, blobs: Iterable[str]) -> int:
        gone = [b for b in blobs if self.blobs.pop(b, None) is not None]
        self.deleted.extend(gone)
        return len(gone)


class FakeUnprocessableKeeper:
    """FAKE of ``UnprocessableStore.keep_undecryptable``: what was kept, with the reason."""

    def __init__(self) -> None:
        self.kept: list[tuple[str, str, str, str]] = []

    def keep_undecryptable(self, profile_id: str, source_container: str, source_name: str, reason: str) -> str:
        self.kept.append((profile_id, source_container, source_name, reason))
        return f"{profile_id}/{source_container}-{len(self.kept)}.bin"


@dataclass
class FakeRejects:
    """FAKE reject sink: keeps failures and unprocessable bodies in memory."""

    failed: list[RecordFailure] = field(default_factory=list)
    kept: list[Unprocessable] = field(default_factory=list)

    def failures(self, items: list[RecordFailure]) -> None:
        self.failed.extend(items)

    def unprocessable(self, items: list[Unprocessable]) -> None:
        self.kept.extend(items)
