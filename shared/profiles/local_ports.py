"""The admin API's failure ports (:mod:`shared.profiles.ports`) on the local reject store: what the
function app and ``des api`` write under ``DES_REJECTS_DIR`` when no Blob storage is configured
(:class:`shared.rejects.LocalRejects`: ``<dir>/<profile>/failures.csv`` in DES's columns and
``failed-notifications.jsonl`` with each failed notification, its reason and when it was logged).

So the embedded default serves the whole admin API: the failure log by time range (JSON or CSV),
re-sync from the kept notifications, and a deleted profile's files removed. SAS links exist only
for Blob storage in Azure (``links`` answers None, the API says so).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.contract import exactjson
from shared.contract.models import Notification, changed_on_iso
from shared.profiles.ports import FailureEntry, SasLink
from shared.rejects import PARKED_FILE
from shared.storage.blobs import check_profile, parse_iso

log = logging.getLogger(__name__)


class LocalFailures:
    """:class:`~shared.profiles.ports.FailureLogReader`, :class:`~shared.profiles.ports.ParkedFailureReader`
    and :class:`~shared.profiles.ports.ProfileBlobs` on a local reject directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _parked(self, profile_id: str) -> Iterator[tuple[datetime, dict[str, Any], str]]:
        """(logged at, notification document, reason) of every kept failure, in file order."""
        path = self.directory / check_profile(profile_id) / PARKED_FILE
        if not path.is_file():
            return
        fallback = datetime.fromtimestamp(path.stat().st_mtime, UTC)  # lines written before loggedAt existed
        with path.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    row = exactjson.loads(line)
                    doc, reason = row["notification"], str(row.get("reason", ""))
                    logged = parse_iso(row["loggedAt"]) if "loggedAt" in row else fallback
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("%s line %s is not a kept failure: %s", path, number, type(exc).__name__)
                    continue
                if isinstance(doc, dict):
                    yield logged, doc, reason

    # ------------------------------------------------------------------ FailureLogReader
    def entries(self, profile_id: str, start: datetime, end: datetime) -> Iterator[FailureEntry]:
        for logged, doc, reason in self._parked(profile_id):
            if not (start <= logged < end):
                continue
            try:
                n = Notification.model_validate(doc)
            except ValidationError:
                continue
            yield FailureEntry(
                entity=n.entity, record_id=n.recordId.lower(), notification_time=changed_on_iso(n.changedOn),
                change_type=n.changeType.value, failure_reason=reason, logged_at=logged, version=n.version,
            )  # fmt: skip

    def links(self, profile_id: str, start: datetime, end: datetime) -> list[SasLink] | None:
        return None  # SAS links are a Blob storage feature

    # --------------------------------------------------------------- ParkedFailureReader
    def get(self, profile_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Notification]:
        wanted = set(keys)
        found: dict[tuple[str, str], Notification] = {}
        for _, doc, _ in self._parked(profile_id):
            try:
                n = Notification.model_validate(doc)
            except ValidationError:
                continue
            if n.key in wanted and (n.key not in found or n.version > found[n.key].version):
                found[n.key] = n
        return found

    def resolved(self, profile_id: str, keys: Sequence[tuple[str, str]]) -> None:
        """Nothing to do, as on Blob storage: re-syncing a record again is harmless (the version
        guard makes it stale)."""

    # ---------------------------------------------------------------------- ProfileBlobs
    def delete_profile(self, profile_id: str) -> int:
        folder = self.directory / check_profile(profile_id)
        if not folder.is_dir():
            return 0
        files = sum(1 for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return files
