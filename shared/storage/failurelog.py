"""The failure log, as DES kept it: CSV lines in Blob storage by profile and hour, 30 days.

``failurelog/<profile>/<yyyy>/<mm>/<dd>/<hh>/<writer>.csv`` are append blobs with a header line.
Each writer (one per process and profile) appends to its own blob, so appends never interleave
and the header is always the first line. Minimal data only: entity, record id, times, change
type, version and the reason; the notification itself is parked encrypted in
``failednotifications/`` for re-sync. (A reason quotes the destination's error message; some
databases quote an offending value there.)

:func:`cleanup_retention` deletes failure logs, parked failures and unprocessable messages older
than the retention (30 days; in Azure a lifecycle rule does the same, this routine is for local
and as a fallback).
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.engine.failure_schema import LOGGED_AT, LOGGED_COLUMNS
from shared.engine.outcomes import RecordFailure
from shared.storage.blobs import FAILED, FAILURELOG, UNPROCESSABLE, BlobStores, check_profile, hour_path, iso, utcnow

log = logging.getLogger(__name__)

RETENTION_DAYS = 30
APPEND_LIMIT = 4 * 1024 * 1024  # bytes per append block (the service's limit for append blobs)


def _csv(rows: Iterable[dict[str, str]], *, header: bool) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOGGED_COLUMNS, lineterminator="\r\n")
    if header:
        w.writeheader()
    for row in rows:
        w.writerow(row)
    return buf.getvalue().encode("utf-8")


class FailureLog:
    """Appends failure-log lines (one append blob per writer per hour)."""

    def __init__(
        self, stores: BlobStores, *, clock: Callable[[], datetime] = utcnow, writer: str | None = None
    ) -> None:
        self.stores = stores
        self.clock = clock
        self.writer = writer or uuid.uuid4().hex
        self._created: set[str] = set()

    def append(self, profile_id: str, failures: list[RecordFailure]) -> str | None:
        """Log failures; returns the blob name written to."""
        if not failures:
            return None
        now = self.clock()
        name = f"{hour_path(profile_id, now)}/{self.writer}.csv"
        logged = iso(now)
        rows = [{**f.log_row(), LOGGED_AT: logged} for f in failures]
        self.stores.ensure_containers([FAILURELOG])
        blob = self.stores.plain.get_blob_client(FAILURELOG, name)
        if name not in self._created:
            try:
                blob.create_append_blob(
                    content_settings=None, metadata={"desprofile": profile_id}, if_none_match="*"
                )
                blob.append_block(_csv([], header=True))
            except ResourceExistsError:
                pass  # this writer made it before a restart of this object
            self._created.add(name)
        chunk: list[dict[str, str]] = []
        size = 0
        for row in rows:
            line = _csv([row], header=False)
            if chunk and size + len(line) > APPEND_LIMIT:
                blob.append_block(_csv(chunk, header=False))
                chunk, size = [], 0
            chunk.append(row)
            size += len(line)
        if chunk:
            blob.append_block(_csv(chunk, header=False))
        return name

    def rows(
        self, profile_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[dict[str, str]]:
        """Failure-log lines of a profile, hour folders from ``since`` to ``until`` (UTC), oldest first."""
        prefix = f"{check_profile(profile_id)}/"
        for name in sorted(self.stores.names(FAILURELOG, prefix)):
            hour = blob_hour(name)
            if hour is None:
                continue
            if since is not None and hour + timedelta(hours=1) <= since:
                continue
            if until is not None and hour > until:
                continue
            try:
                text = self.stores.plain.get_blob_client(FAILURELOG, name).download_blob().readall()
            except ResourceNotFoundError:
                continue
            yield from csv.DictReader(io.StringIO(bytes(text).decode("utf-8"), newline=""))


def blob_hour(name: str) -> datetime | None:
    """The hour folder of ``<profile>/<yyyy>/<mm>/<dd>/<hh>/...``, or None for any other name."""
    parts = name.split("/")
    if len(parts) < 6:
        return None
    try:
        return datetime(int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4]), tzinfo=UTC)
    except ValueError:
        return None


def cleanup_retention(
    stores: BlobStores,
    *,
    now: datetime | None = None,
    days: int = RETENTION_DAYS,
    containers: Iterable[str] = (FAILURELOG, FAILED, UNPROCESSABLE),
) -> int:
    """Delete blobs whose hour folder is older than ``days``; returns how many were deleted."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    deleted = 0
    for container in containers:
        for name in list(stores.names(container)):
            hour = blob_hour(name)
            if hour is not None and hour + timedelta(hours=1) <= cutoff:
                deleted += stores.delete(container, name)
    if deleted:
        log.info("retention: deleted %s blobs older than %s days", deleted, days)
    return deleted
