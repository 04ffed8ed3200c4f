"""Encrypted Blob storage for what is in flight or kept for an operator.

Containers (one per DES blob folder, so lifecycle rules and the blob trigger can target each):

- ``data/`` — claim-check payloads: a notification too large for a Service Bus message
  (``<yyyy>/<mm>/<dd>/<uuid>.json``), deleted after its destination commit.
- ``retry/`` — batches parked after a transient destination error (``<profile>/<batch key>.json``),
  with the attempt count, not-before time, first-seen time and profile in the blob metadata.
- ``unprocessablemessages/`` — bodies that failed the contract, could not be decrypted, or whose
  payload was missing, with the reason (``<profile>/<yyyy>/<mm>/<dd>/<hh>/<uuid>.json``).
- ``failednotifications/`` — the notifications behind failure-log lines, parked for re-sync.
- ``failurelog/`` — CSV append blobs (shared/storage/failurelog.py; identifiers and reasons only).

Every blob holding record data is client-side encrypted (azure-storage-blob encryption v2,
AES-256-GCM; the key-encryption key and its id from shared/storage/crypto.py). A blob that cannot
be decrypted raises :class:`BlobDecryptionError` naming the blob and the key, and is left as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient

from shared.contract import exactjson
from shared.contract.models import notification_doc
from shared.contract.parse import Unprocessable
from shared.engine.outcomes import RecordFailure
from shared.storage.crypto import EncryptionKeyError, KeyRing

log = logging.getLogger(__name__)

DATA = "data"
RETRY = "retry"
UNPROCESSABLE = "unprocessablemessages"
FAILED = "failednotifications"
FAILURELOG = "failurelog"
CONTAINERS = (DATA, RETRY, UNPROCESSABLE, FAILED, FAILURELOG)

PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
BLOB_NAME_RE = re.compile(r"^[0-9a-z][0-9a-z_.-]*(/[0-9a-z][0-9a-z_.-]*)*$")
MAX_METADATA_VALUE = 1024
ENCRYPTION_METADATA = "encryptiondata"

# Metadata of retry blobs (plain: never record data).
M_ATTEMPT = "desattempt"  # retries done so far
M_NOT_BEFORE = "desnotbefore"  # ISO time before which no retry runs
M_FIRST_SEEN = "desfirstseen"
M_PROFILE = "desprofile"
M_COUNT = "descount"  # notifications in the blob
M_LAST_ERROR = "deslasterror"
M_CRASHES = "descrashes"  # processing attempts that raised (the sweeper's poison count)
M_REASON = "desreason"


class BlobStoreError(Exception):
    """A blob store problem that is not a missing blob."""


class BlobDecryptionError(BlobStoreError):
    """A blob could not be decrypted (missing or wrong key, tampered data); the blob is left untouched."""


class BlobMissing(BlobStoreError):
    """The named blob does not exist (anymore)."""


class RetryBlobInvalid(BlobStoreError):
    """A retry blob that was read (decrypted) but is not what its name says: not a retry batch, or
    its notifications or profile are not the ones its name was made from (a copied or altered blob).
    It goes to the unprocessable store with the reason; it is never applied."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def metadata_value(text: str) -> str:
    """Blob metadata travels in HTTP headers: printable ASCII, one line, bounded."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text.replace("\n", " ").replace("\r", " "))
    return clean[:MAX_METADATA_VALUE]


def check_profile(profile_id: str) -> str:
    if not PROFILE_RE.match(profile_id):
        raise ValueError(f"profile id {profile_id!r} cannot name a blob folder (letters, digits, - and _)")
    return profile_id


def hour_path(profile_id: str, t: datetime) -> str:
    t = t.astimezone(UTC)
    return f"{check_profile(profile_id)}/{t:%Y/%m/%d/%H}"


def _decrypt_error(container: str, name: str, exc: HttpResponseError) -> BlobDecryptionError:
    cause: BaseException | None = exc
    for _ in range(10):  # the SDK wraps the key error in one or two HttpResponseErrors
        if not isinstance(cause, HttpResponseError):
            break
        cause = cause.inner_exception or cause.__cause__
    if isinstance(cause, EncryptionKeyError):
        why = str(cause)
    elif cause is not None:
        why = f"{type(cause).__name__}: {cause}"
    else:
        why = str(exc).splitlines()[0]
    return BlobDecryptionError(f"cannot decrypt blob {container}/{name}: {why} (the blob was left as it is)")


class BlobStores:
    """Two clients on one account: one that encrypts/decrypts everything, one plain (metadata, raw bytes)."""

    def __init__(self, plain: BlobServiceClient, encrypted: BlobServiceClient, keys: KeyRing) -> None:
        self.plain = plain
        self.encrypted = encrypted
        self.keys = keys
        self._ensured: set[str] = set()

    @classmethod
    def from_connection_string(cls, conn: str, keys: KeyRing) -> BlobStores:
        plain = BlobServiceClient.from_connection_string(conn)
        encrypted = BlobServiceClient.from_connection_string(conn, **cls._encryption(keys))
        return cls(plain, encrypted, keys)

    @classmethod
    def from_account_url(cls, url: str, credential: Any, keys: KeyRing) -> BlobStores:
        plain = BlobServiceClient(url, credential=credential)
        encrypted = BlobServiceClient(url, credential=credential, **cls._encryption(keys))
        return cls(plain, encrypted, keys)

    @staticmethod
    def _encryption(keys: KeyRing) -> dict[str, Any]:
        return {
            "require_encryption": True,
            "encryption_version": "2.0",
            "key_encryption_key": keys.current,
            "key_resolver_function": keys.resolve,
        }

    def ensure_containers(self, names: Iterable[str] = CONTAINERS) -> None:
        for name in names:
            if name in self._ensured:
                continue
            with contextlib.suppress(ResourceExistsError):
                self.plain.create_container(name)
            self._ensured.add(name)

    def container(self, name: str, *, encrypted: bool = True) -> ContainerClient:
        return (self.encrypted if encrypted else self.plain).get_container_client(name)

    # ------------------------------------------------------------------------- encrypted blobs
    def put(
        self,
        container: str,
        name: str,
        data: bytes,
        metadata: dict[str, str] | None = None,
        *,
        only_if_new: bool = False,
    ) -> bool:
        """Encrypt and upload; with ``only_if_new`` an existing blob is kept and False returned."""
        self.ensure_containers([container])
        blob = self.container(container).get_blob_client(name)
        try:
            if only_if_new:
                blob.upload_blob(data, metadata=metadata, overwrite=False)
            else:
                blob.upload_blob(data, metadata=metadata, overwrite=True)
        except ResourceExistsError:
            return False
        return True

    def get(self, container: str, name: str, *, lease: BlobLeaseClient | str | None = None) -> bytes:
        """Download and decrypt; BlobMissing or BlobDecryptionError (the blob stays as it is)."""
        blob = self.container(container).get_blob_client(name)
        try:
            return bytes(blob.download_blob(lease=lease).readall())
        except ResourceNotFoundError as exc:
            raise BlobMissing(f"blob {container}/{name} does not exist") from exc
        except HttpResponseError as exc:
            if "Decryption failed" in str(exc) or isinstance(exc.inner_exception, EncryptionKeyError | ValueError):
                raise _decrypt_error(container, name, exc) from exc
            raise
        except (ValueError, EncryptionKeyError) as exc:  # metadata the SDK cannot read at all
            raise BlobDecryptionError(
                f"cannot decrypt blob {container}/{name}: {exc} (the blob was left as it is)"
            ) from exc

    def check_key(self, container: str, name: str, metadata: dict[str, str]) -> None:
        """Fail fast (before a download, which the SDK retries for seconds) when the blob's key is unknown."""
        try:
            kid = json.loads(metadata[ENCRYPTION_METADATA])["WrappedContentKey"]["KeyId"]
        except (KeyError, ValueError, TypeError) as exc:
            raise BlobDecryptionError(
                f"cannot decrypt blob {container}/{name}: it has no readable encryption metadata "
                "(the blob was left as it is)"
            ) from exc
        try:
            self.keys.resolve(str(kid))
        except EncryptionKeyError as exc:
            raise BlobDecryptionError(
                f"cannot decrypt blob {container}/{name}: {exc} (the blob was left as it is)"
            ) from exc

    def raw(self, container: str, name: str) -> tuple[bytes, dict[str, str]]:
        """The stored bytes and metadata, not decrypted (moving a blob that cannot be decrypted; tests)."""
        blob = self.plain.get_blob_client(container, name)
        try:
            downloader = blob.download_blob()
            return bytes(downloader.readall()), dict(downloader.properties.metadata or {})
        except ResourceNotFoundError as exc:
            raise BlobMissing(f"blob {container}/{name} does not exist") from exc

    def metadata(self, container: str, name: str) -> tuple[dict[str, str], str]:
        """(metadata, etag); BlobMissing if gone."""
        try:
            props = self.plain.get_blob_client(container, name).get_blob_properties()
        except ResourceNotFoundError as exc:
            raise BlobMissing(f"blob {container}/{name} does not exist") from exc
        return dict(props.metadata or {}), str(props.etag)

    def delete(self, container: str, name: str, *, lease: BlobLeaseClient | str | None = None) -> bool:
        try:
            self.plain.get_blob_client(container, name).delete_blob(lease=lease)
        except ResourceNotFoundError:
            return False
        return True

    def names(self, container: str, prefix: str | None = None) -> Iterator[str]:
        self.ensure_containers([container])
        for b in self.plain.get_container_client(container).list_blobs(name_starts_with=prefix):
            yield str(b.name)


# ----------------------------------------------------------------------------------- payloads
@dataclass(frozen=True, slots=True)
class StoredPayload:
    blob: str
    size: int
    sha256: str


class PayloadStore:
    """``data/``: notifications too large for a message, referenced by ``payloadRef``."""

    def __init__(self, stores: BlobStores, *, clock: Any = utcnow) -> None:
        self.stores = stores
        self.clock = clock

    def put(self, body: bytes) -> StoredPayload:
        t = self.clock()
        name = f"{t:%Y/%m/%d}/{uuid.uuid4()}.json"
        self.stores.put(DATA, name, body, {"desversion": "1"})
        return StoredPayload(name, len(body), hashlib.sha256(body).hexdigest())

    def get(self, blob: str, *, size: int | None = None, sha256: str | None = None) -> bytes:
        """The payload; BlobMissing, BlobDecryptionError, or BlobStoreError when it is not the one referenced."""
        if not BLOB_NAME_RE.match(blob) or ".." in blob:
            raise BlobStoreError(f"payload reference {blob!r} is not a blob name of the data container")
        body = self.stores.get(DATA, blob)
        if size is not None and len(body) != size:
            raise BlobStoreError(f"payload blob data/{blob} has {len(body)} bytes, the reference says {size}")
        if sha256 is not None and hashlib.sha256(body).hexdigest() != sha256:
            raise BlobStoreError(f"payload blob data/{blob} does not match the reference's sha256")
        return body

    def delete(self, blobs: Iterable[str]) -> int:
        return sum(self.stores.delete(DATA, b) for b in blobs)


# -------------------------------------------------------------------------------------- retry
@dataclass(frozen=True, slots=True)
class RetryState:
    """A retry blob's metadata: what the retry processor decides on without downloading."""

    name: str
    profile_id: str
    attempt: int
    not_before: datetime
    first_seen: datetime
    count: int
    crashes: int
    last_error: str
    etag: str
    raw: dict[str, str]

    problem: str | None = None  # malformed metadata: the blob goes to the unprocessable store at once

    @classmethod
    def of(cls, name: str, meta: dict[str, str], etag: str) -> RetryState:
        """The state of any retry blob; never raises. Malformed metadata (``desattempt=abc``) is named
        in ``problem`` and its fields take values that make the blob due now, so nothing waits on it."""
        problems: list[str] = []

        def number(key: str) -> int:
            raw = meta.get(key, "0")
            try:
                value = int(raw)
            except ValueError:
                problems.append(f"{key}={raw[:40]!r} is not a number")
                return 0
            if value < 0:
                problems.append(f"{key}={value} is negative")
                return 0
            return value

        def when(key: str, default: datetime) -> datetime:
            if key not in meta:
                return default
            try:
                return parse_iso(meta[key])
            except ValueError:
                problems.append(f"{key}={meta[key][:40]!r} is not a time")
                return datetime.min.replace(tzinfo=UTC)

        profile = meta.get(M_PROFILE, "")
        if profile and not PROFILE_RE.match(profile):
            problems.append(f"{M_PROFILE}={profile[:40]!r} is not a profile id")
            profile = ""
        attempt, count, crashes = number(M_ATTEMPT), number(M_COUNT), number(M_CRASHES)
        not_before = when(M_NOT_BEFORE, datetime.min.replace(tzinfo=UTC))
        first_seen = when(M_FIRST_SEEN, utcnow())
        return cls(
            name=name, profile_id=profile, attempt=attempt, not_before=not_before, first_seen=first_seen,
            count=count, crashes=crashes, last_error=meta.get(M_LAST_ERROR, ""), etag=etag, raw=meta,
            problem=f"retry blob {name} has malformed metadata: {'; '.join(problems)}" if problems else None,
        )  # fmt: skip


def verify_retry_batch(name: str, batch: RetryBatch) -> None:
    """A retry blob's content must be what its name was made from: ``<profile>/<batch key>.json``,
    the key a hash of the notifications (:func:`batch_key`) and the folder the profile the content
    names. Raises :class:`RetryBlobInvalid` otherwise (another blob's content copied over it, or an
    altered one), so a parked batch is never replaced silently."""
    folder, _, file = name.rpartition("/")
    key = file.removesuffix(".json")
    if batch_key(batch.notifications) != key:
        raise RetryBlobInvalid(f"retry blob {name}: its notifications are not the ones its name was made from")
    if folder and batch.profile_id != folder:
        raise RetryBlobInvalid(f"retry blob {name}: its content names profile {batch.profile_id[:40]!r}")


@dataclass(slots=True)
class RetryBatch:
    """The content of a retry blob (encrypted): the notifications still to apply."""

    profile_id: str
    first_seen: datetime
    notifications: list[dict[str, Any]]

    def to_bytes(self) -> bytes:
        doc = {
            "format": "des-retry/1",
            "profile": self.profile_id,
            "firstSeen": iso(self.first_seen),
            "notifications": self.notifications,
        }
        return exactjson.dumps(doc, separators=exactjson.COMPACT).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RetryBatch:
        try:
            doc = exactjson.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != "des-retry/1":
                raise RetryBlobInvalid("not a des-retry/1 document")
            notifications = doc["notifications"]
            if not isinstance(notifications, list):
                raise RetryBlobInvalid("its notifications are not a list")
            return cls(str(doc["profile"]), parse_iso(doc["firstSeen"]), notifications)
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryBlobInvalid(f"not a readable retry batch: {type(exc).__name__}: {exc}") from None


def batch_key(notifications: list[dict[str, Any]]) -> str:
    """The same notifications (a redelivered batch) give the same retry blob: parking twice is a no-op.

    The text hashed is ``json.dumps`` byte for byte for notifications without a Decimal (the names
    of retry blobs parked by earlier versions), a Decimal written as the number it is (exactjson)."""
    h = hashlib.sha256()
    for n in notifications:
        h.update(exactjson.dumps(n, sort_keys=True, separators=exactjson.COMPACT).encode())
        h.update(b"\n")
    return h.hexdigest()[:40]


class RetryStore:
    """``retry/``: parked batches, rescheduled through their metadata (no rewrite, no new event)."""

    def __init__(self, stores: BlobStores) -> None:
        self.stores = stores

    def park(
        self,
        profile_id: str,
        notifications: list[dict[str, Any]],
        *,
        reason: str,
        now: datetime,
        not_before: datetime,
    ) -> tuple[str, bool]:
        """Write a retry blob; (name, created). A blob for the same batch already there is kept as it is."""
        name = f"{check_profile(profile_id)}/{batch_key(notifications)}.json"
        batch = RetryBatch(profile_id, now, notifications)
        meta = {
            M_PROFILE: profile_id,
            M_ATTEMPT: "0",
            M_NOT_BEFORE: iso(not_before),
            M_FIRST_SEEN: iso(now),
            M_COUNT: str(len(notifications)),
            M_LAST_ERROR: metadata_value(reason),
        }
        created = self.stores.put(RETRY, name, batch.to_bytes(), meta, only_if_new=True)
        return name, created

    def state(self, name: str) -> RetryState:
        meta, etag = self.stores.metadata(RETRY, name)
        return RetryState.of(name, meta, etag)

    def read(
        self, name: str, *, lease: BlobLeaseClient | None = None, state: RetryState | None = None
    ) -> RetryBatch:
        if state is not None:
            self.stores.check_key(RETRY, name, state.raw)
        data = self.stores.get(RETRY, name, lease=lease)
        try:
            return RetryBatch.from_bytes(data)
        except RetryBlobInvalid as exc:
            raise RetryBlobInvalid(f"retry blob {RETRY}/{name}: {exc}") from None

    def update(self, state: RetryState, changes: dict[str, str], *, lease: BlobLeaseClient | None = None) -> None:
        """Change our metadata keys, keeping the rest (``encryptiondata`` above all)."""
        meta = dict(state.raw)
        meta.update({k: metadata_value(v) for k, v in changes.items()})
        blob = self.stores.plain.get_blob_client(RETRY, state.name)
        blob.set_blob_metadata(meta, lease=lease)

    def lease(self, name: str, seconds: int = 60) -> BlobLeaseClient | None:
        """Exclusive processing right for a while; None when another worker holds it."""
        blob = self.stores.plain.get_blob_client(RETRY, name)
        try:
            return blob.acquire_lease(lease_duration=seconds)
        except ResourceNotFoundError as exc:
            raise BlobMissing(f"blob {RETRY}/{name} does not exist") from exc
        except ResourceExistsError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return None
            raise

    def delete(self, name: str, *, lease: BlobLeaseClient | None = None) -> bool:
        return self.stores.delete(RETRY, name, lease=lease)

    def states(self, profile_id: str | None = None) -> Iterator[RetryState]:
        self.stores.ensure_containers([RETRY])
        container = self.stores.plain.get_container_client(RETRY)
        prefix = f"{check_profile(profile_id)}/" if profile_id else None
        for b in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            yield RetryState.of(str(b.name), dict(b.metadata or {}), str(b.etag))  # malformed ones too

    def pending(self, profile_id: str | None = None) -> int:
        """Notifications waiting in retry blobs (the exact pending-retry figure): every retry blob,
        those with malformed metadata included (by their count, when it can be read)."""
        return sum(s.count for s in self.states(profile_id))


# ------------------------------------------------------------------- kept for an operator
class UnprocessableStore:
    """``unprocessablemessages/``: bodies with their reasons, encrypted, one blob per batch."""

    def __init__(self, stores: BlobStores, *, clock: Any = utcnow) -> None:
        self.stores = stores
        self.clock = clock

    def put(self, profile_id: str, items: list[Unprocessable]) -> str | None:
        if not items:
            return None
        now = self.clock()
        name = f"{hour_path(profile_id, now)}/{uuid.uuid4()}.json"
        doc = {
            "format": "des-unprocessable/1",
            "profile": profile_id,
            "receivedAt": iso(now),
            "items": [
                {"reason": u.reason, "entity": u.entity, "recordId": u.record_id, "body": u.body} for u in items
            ],
        }
        meta = {"descount": str(len(items)), M_REASON: metadata_value(items[0].reason), M_PROFILE: profile_id}
        self.stores.put(UNPROCESSABLE, name, json.dumps(doc, ensure_ascii=False).encode(), meta)
        return name

    def keep_undecryptable(self, profile_id: str, source_container: str, source_name: str, reason: str) -> str:
        """Move a blob that cannot be decrypted here byte for byte (still decryptable with the right key)."""
        data, meta = self.stores.raw(source_container, source_name)
        name = f"{hour_path(profile_id, self.clock())}/{source_container}-{uuid.uuid4()}.bin"
        meta = {
            **meta,
            M_REASON: metadata_value(reason),
            "dessource": metadata_value(f"{source_container}/{source_name}"),
            M_PROFILE: profile_id,
        }
        self.stores.ensure_containers([UNPROCESSABLE])
        self.stores.plain.get_blob_client(UNPROCESSABLE, name).upload_blob(data, metadata=meta, overwrite=True)
        return name

    def entries(self, profile_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every kept item (decrypted), with the blob it is in: for an operator's inspection and replay."""
        prefix = f"{check_profile(profile_id)}/" if profile_id else None
        for name in self.stores.names(UNPROCESSABLE, prefix):
            if not name.endswith(".json"):
                meta, _ = self.stores.metadata(UNPROCESSABLE, name)
                yield {"blob": name, "reason": meta.get(M_REASON, ""), "body": None, "entity": None, "recordId": None}
                continue
            doc = json.loads(self.stores.get(UNPROCESSABLE, name))
            for item in doc["items"]:
                yield {"blob": name, **item}


class ParkedFailureStore:
    """``failednotifications/``: the full notifications behind failure-log lines, encrypted, for re-sync."""

    def __init__(self, stores: BlobStores, *, clock: Any = utcnow) -> None:
        self.stores = stores
        self.clock = clock

    def put(self, profile_id: str, failures: list[RecordFailure]) -> str | None:
        if not failures:
            return None
        now = self.clock()
        name = f"{hour_path(profile_id, now)}/{uuid.uuid4()}.json"
        doc = {
            "format": "des-failed/1",
            "profile": profile_id,
            "failedAt": iso(now),
            "items": [{"reason": f.reason, "notification": notification_doc(f.notification)} for f in failures],
        }
        self.stores.put(FAILED, name, exactjson.dumps(doc).encode(), {"descount": str(len(failures))})
        return name

    def entries(self, profile_id: str) -> Iterator[dict[str, Any]]:
        for name in self.stores.names(FAILED, f"{check_profile(profile_id)}/"):
            doc = exactjson.loads(self.stores.get(FAILED, name))
            for item in doc["items"]:
                yield {"blob": name, "failedAt": doc["failedAt"], **item}
