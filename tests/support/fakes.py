"""In-memory FAKES of the blob stores the retry code uses, and of the admin
store, for fast unit tests (tests/unit).

They follow the real stores' contracts (shared/storage/blobs.py, proved on Azurite in
tests/integration): a retry blob is created only if new, its state lives in metadata with an etag
that changes on every write, a lease is exclusive until released or expired (by the fake's clock),
and a leased blob cannot be changed or deleted without its lease. They reuse the real
``RetryState``/``RetryBatch``/``batch_key`` so names and metadata are the real ones. No
encryption: ``make_unreadable`` stands for a blob whose key is gone.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contract.parse import Unprocessable
from shared.engine.outcomes import BatchResult, RecordFailure
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
from shared.store.base import (
    PROFILE_LEVEL,
    DuplicateName,
    EntityDelta,
    EntityMetrics,
    ExportStatus,
    MetricsEntry,
    ProfileExists,
    ProfileMetrics,
    ProfileNotFound,
    RevisionConflict,
    StoredProfile,
    StoreUnavailable,
    utcnow,
)
from shared.store.migrations import MIGRATIONS

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
    def __init__(self, store: FakeRetryBlobs, name: str, lease_id: str, seconds: int = 60) -> None:
        self.store, self.name, self.id, self.seconds = store, name, lease_id, seconds
        self.renewals = 0

    def renew(self) -> None:
        """Like BlobLeaseClient.renew: the lease runs ``seconds`` from now again; 409 if it is not ours."""
        blob = self.store.blobs.get(self.name)
        if blob is None or blob.lease_id != self.id:
            raise LeaseConflict(f"lease on {RETRY}/{self.name} is not held")
        blob.lease_until = self.store.clock() + timedelta(seconds=self.seconds)
        self.renewals += 1

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
        return FakeLease(self, name, blob.lease_id, seconds)

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


# ------------------------------------------------------------------------------ admin store
_COUNTERS = ("received", "applied", "failed", "stale", "unprocessable", "skipped", "pending_retry")


@dataclass
class _MetricsRow:
    delta: EntityDelta = field(default_factory=EntityDelta)
    last_export_date: datetime | None = None
    last_export_status: str | None = None
    initial_sync_state: str = "NotStarted"


class FakeAdminStore:
    """FAKE of the admin store (``shared.store.Store``; SqlStore on SQLite, PostgreSQL and SQL Server
    is proved in tests/integration/test_store.py): profiles with revisions and case-insensitive
    unique names, and the metrics upsert's sums. ``down = True`` makes every call raise
    StoreUnavailable, as an unreachable database does."""

    dialect = "fake"

    def __init__(self) -> None:
        self.profiles: dict[str, StoredProfile] = {}
        self.rows: dict[tuple[str, str], _MetricsRow] = {}
        self.down = False
        self.batches = 0  # record_batch round trips

    def __str__(self) -> str:
        return "fake admin store (in memory)"

    def _up(self, what: str) -> None:
        if self.down:
            raise StoreUnavailable(f"admin store (fake) unavailable during {what}")

    def migrate(self) -> int:
        return self.schema_version()

    def schema_version(self) -> int:
        self._up("schema_version")
        return len(MIGRATIONS)

    def ping(self) -> None:
        self._up("ping")

    def _check_unique(self, p: StoredProfile) -> None:
        if any(o.id != p.id and o.name_key == p.name_key for o in self.profiles.values()):
            raise DuplicateName("another profile already has this name (names are unique, ignoring case)")

    def create_profile(self, profile: StoredProfile) -> StoredProfile:
        self._up("create_profile")
        if profile.id in self.profiles:
            raise ProfileExists(f"a profile with id {profile.id} already exists")
        self._check_unique(profile)
        stored = replace(profile, revision=1)
        self.profiles[profile.id] = stored
        return stored

    def get_profile(self, profile_id: str) -> StoredProfile | None:
        self._up("get_profile")
        return self.profiles.get(profile_id.lower())

    def list_profiles(
        self, *, organization_id: str | None = None, states: Sequence[str] | None = None
    ) -> list[StoredProfile]:
        self._up("list_profiles")
        found = [
            p for p in self.profiles.values()
            if (organization_id is None or p.organization_id == organization_id.lower())
            and (states is None or p.state in states)
        ]  # fmt: skip
        return sorted(found, key=lambda p: p.name_key)

    def update_profile(self, profile: StoredProfile, *, expected_revision: int | None = None) -> StoredProfile:
        self._up("update_profile")
        cur = self.profiles.get(profile.id)
        if cur is None:
            raise ProfileNotFound(f"no profile with id {profile.id}")
        if expected_revision is not None and cur.revision != expected_revision:
            raise RevisionConflict(f"profile {profile.id} is at revision {cur.revision}, not {expected_revision}")
        self._check_unique(profile)
        stored = replace(profile, revision=cur.revision + 1, created_at=cur.created_at, updated_at=utcnow())
        self.profiles[profile.id] = stored
        return stored

    def delete_profile(self, profile_id: str) -> bool:
        self._up("delete_profile")
        pid = profile_id.lower()
        for key in [k for k in self.rows if k[0] == pid]:
            del self.rows[key]
        return self.profiles.pop(pid, None) is not None

    def record(self, profile_id: str, result: BatchResult, *, pending_retry: int = 0) -> None:
        self.record_batch([MetricsEntry.from_result(profile_id, result, pending_retry=pending_retry)])

    def record_batch(self, entries: Sequence[MetricsEntry]) -> None:
        self._up("record_batch")
        self.batches += 1
        now = utcnow()
        merged: dict[tuple[str, str], EntityDelta] = {}
        for entry in entries:  # one batch's entries first merged per row, as the SQL store does
            for entity, d in entry.entities.items():
                if d.empty():
                    continue
                cur = merged.get((entry.profile_id, entity))
                if cur is not None:
                    status = d.status or cur.status
                    if cur.status and d.status and cur.status != d.status:
                        status = ExportStatus.PARTIAL
                    newest = max((t for t in (cur.last_changed_on, d.last_changed_on) if t), default=None)
                    d = EntityDelta(
                        *(getattr(cur, n) + getattr(d, n) for n in _COUNTERS), last_changed_on=newest, status=status
                    )
                merged[(entry.profile_id, entity)] = d
        for (pid, entity), d in merged.items():
            row = self.rows.setdefault((pid, entity), _MetricsRow())
            t = row.delta
            for name in _COUNTERS:
                setattr(t, name, getattr(t, name) + getattr(d, name))
            if d.last_changed_on is not None and (t.last_changed_on is None or d.last_changed_on > t.last_changed_on):
                t.last_changed_on = d.last_changed_on
            if d.status is not None or entity == PROFILE_LEVEL:
                row.last_export_date = now
            if d.status is not None:
                row.last_export_status = d.status.value

    def metrics(self, profile_id: str) -> ProfileMetrics:
        self._up("metrics")
        pid = profile_id.lower()
        entities, pending, last_batch = [], 0, None
        for (p, entity), row in sorted(self.rows.items()):
            if p != pid:
                continue
            d = row.delta
            if entity == PROFILE_LEVEL:
                pending, last_batch = d.pending_retry, row.last_export_date
                continue
            entities.append(
                EntityMetrics(
                    entity, d.received, d.applied, d.failed, d.stale, d.unprocessable, d.skipped, d.pending_retry,
                    row.last_export_date, row.last_export_status, d.last_changed_on, row.initial_sync_state,
                )
            )  # fmt: skip
        dates = [e.last_export_date for e in entities if e.last_export_date] + ([last_batch] if last_batch else [])
        return ProfileMetrics(pid, entities, max(0, pending), max(dates) if dates else None)

    def set_initial_sync_state(self, profile_id: str, entity: str, state: str) -> None:
        self._up("set_initial_sync_state")
        self.rows.setdefault((profile_id.lower(), entity), _MetricsRow()).initial_sync_state = state

    def close(self) -> None:
        pass


class FakeSourceSink:
    """FAKE of the Dataverse source's sink port (shared/pull/work.py ``Sink``): keeps what each
    ``publish`` delivered, in order, with the cursor revision at that moment (``observe``), and can
    fail the next calls like an unavailable Service Bus or destination."""

    def __init__(self, observe: Any = None) -> None:
        self.published: list[tuple[str, list[bytes], Any]] = []
        self.ids: dict[str, set[str]] = {}
        self.fail_next = 0
        self.observe = observe  # (entity) -> anything to record with the call (a cursor state)

    def publish(self, entity: str, bodies: Sequence[bytes]) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError("the fake sink is unavailable")
        seen = self.observe(entity) if self.observe is not None else None
        self.published.append((entity, list(bodies), seen))

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]:
        return {}

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        ids = sorted(i for i in self.ids.get(entity, set()) if after is None or i > after)
        return [(i, 0) for i in ids[:limit]]
