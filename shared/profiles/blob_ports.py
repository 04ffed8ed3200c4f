"""The admin API's blob ports (:mod:`shared.profiles.ports`) on the Blob storage of issue 3
(:class:`shared.storage.account.Storage`): failure log by time range, SAS links, parked failed
notifications for re-sync, and everything a deleted profile leaves in Blob storage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from shared.contract.models import Notification
from shared.engine import failure_schema as F
from shared.profiles.ports import FailureEntry, SasLink
from shared.storage.account import Storage
from shared.storage.blobs import CONTAINERS, DATA, FAILURELOG, check_profile, parse_iso
from shared.storage.failurelog import blob_hour

log = logging.getLogger(__name__)

SAS_VALIDITY = timedelta(hours=24)
PROFILE_CONTAINERS = tuple(c for c in CONTAINERS if c != DATA)  # data/ payloads are not per profile


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


class BlobFailureLog:
    """:class:`~shared.profiles.ports.FailureLogReader` on ``failurelog/``."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def entries(self, profile_id: str, start: datetime, end: datetime) -> Iterator[FailureEntry]:
        for row in self.storage.failure_log.rows(profile_id, since=start, until=end):
            try:
                logged = parse_iso(row.get(F.LOGGED_AT) or row.get(F.NOTIFICATION_TIME) or "")
            except ValueError:
                continue
            if not (start <= logged < end):
                continue
            yield FailureEntry(
                entity=row.get(F.ENTITY, ""),
                record_id=row.get(F.RECORD_ID, ""),
                notification_time=row.get(F.NOTIFICATION_TIME, ""),
                change_type=row.get(F.CHANGE_TYPE, ""),
                failure_reason=row.get(F.FAILURE_REASON, ""),
                logged_at=logged,
                version=_int(row.get(F.VERSION)),
            )

    def links(self, profile_id: str, start: datetime, end: datetime) -> list[SasLink] | None:
        """User-delegation SAS URLs (read only, 24 hours); None without Entra access (a shared key)."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        service = self.storage.stores.plain
        if not _uses_token(service):
            return None
        now = self.storage.clock()
        expiry = now + SAS_VALIDITY
        key = service.get_user_delegation_key(now - timedelta(minutes=5), expiry)
        links = []
        for name in sorted(self.storage.stores.names(FAILURELOG, f"{check_profile(profile_id)}/")):
            hour = blob_hour(name)
            if hour is None or hour + timedelta(hours=1) <= start or hour >= end:
                continue
            sas = generate_blob_sas(
                account_name=str(service.account_name),
                container_name=FAILURELOG,
                blob_name=name,
                user_delegation_key=key,
                permission=BlobSasPermissions(read=True),
                expiry=expiry,
                start=now - timedelta(minutes=5),
            )
            url = service.get_blob_client(FAILURELOG, name).url
            links.append(SasLink(blob=name, url=f"{url}?{sas}", expires_on=expiry))
        return links


def _uses_token(service: Any) -> bool:
    from azure.core.credentials import TokenCredential

    credential = getattr(service, "credential", None)
    return isinstance(credential, TokenCredential) or hasattr(credential, "get_token")


class BlobParkedFailureReader:
    """:class:`~shared.profiles.ports.ParkedFailureReader` on ``failednotifications/`` (encrypted)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, profile_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Notification]:
        wanted = set(keys)
        found: dict[tuple[str, str], Notification] = {}
        for item in self.storage.parked.entries(profile_id):
            try:
                n = Notification.model_validate(item["notification"])
            except (ValidationError, KeyError, TypeError) as exc:
                log.warning("parked failure in %s is not a notification: %s", item.get("blob"), type(exc).__name__)
                continue
            if n.key in wanted and (n.key not in found or n.version > found[n.key].version):
                found[n.key] = n
        return found

    def resolved(self, profile_id: str, keys: Sequence[tuple[str, str]]) -> None:
        """Nothing to do: one parked blob holds a batch's failures, and it expires with the failure
        log (retention). Re-syncing a record again is harmless: the version guard makes it stale."""


class BlobProfileBlobs:
    """:class:`~shared.profiles.ports.ProfileBlobs`: a deleted profile's blobs, every container."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def delete_profile(self, profile_id: str) -> int:
        prefix = f"{check_profile(profile_id)}/"
        deleted = 0
        for container in PROFILE_CONTAINERS:
            for name in list(self.storage.stores.names(container, prefix)):
                deleted += self.storage.stores.delete(container, name)
        log.info("deleted %s blobs of profile %s", deleted, profile_id)
        return deleted
