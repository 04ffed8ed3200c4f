"""Failures: the failure log by time range (JSON or CSV, streamed), SAS links, and re-sync of failed records."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from shared.api.deps import ERRORS, ProfileId, Svc, window
from shared.api.schemas import LinkOut, LinksOut, ResyncIn, ResyncOut
from shared.engine.failure_schema import LOGGED_COLUMNS
from shared.profiles.ports import FailureEntry
from shared.profiles.service import Conflict, ResyncSelection

router = APIRouter()


def _stream_failures(first: FailureEntry | None, rest: Iterator[FailureEntry], as_csv: bool) -> Iterator[bytes]:
    if as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, LOGGED_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        yield buf.getvalue().encode()
        if first is None:
            return
        for entry in _chain(first, rest):
            buf.seek(0)
            buf.truncate()
            writer.writerow(entry.row())
            yield buf.getvalue().encode()
        return
    yield b"["
    if first is not None:
        sep = b""
        for entry in _chain(first, rest):
            yield sep + json.dumps(entry.row(), ensure_ascii=False).encode()
            sep = b","
    yield b"]"


def _chain(first: FailureEntry, rest: Iterator[FailureEntry]) -> Iterator[FailureEntry]:
    yield first
    yield from rest

failure_responses: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {
        "description": "Failure-log entries, oldest first (JSON array, or CSV with Accept: text/csv)",
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/FailureOut"}}},
            "text/csv": {"schema": {"type": "string"}},
        },
    },
}

@router.get(
    "/profiles/{profile_id}/failures",
    tags=["failures"],
    responses=failure_responses,
    response_class=StreamingResponse,
)
def failures(
    s: Svc,
    profile_id: ProfileId,
    start: Annotated[datetime | None, Query(description="From (default: end minus 24 hours).")] = None,
    end: Annotated[datetime | None, Query(description="Until (default: now).")] = None,
    accept: Annotated[str | None, Header(max_length=1000)] = None,
) -> Any:
    """The profile's failure log by time range (at most 31 days), streamed."""
    lo, hi = window(start, end, s.clock())
    entries = iter(s.profiles.failures(profile_id, lo, hi))
    first = next(entries, None)  # errors surface before the response starts
    as_csv = "text/csv" in (accept or "").lower()
    media = "text/csv; charset=utf-8" if as_csv else "application/json"
    return StreamingResponse(_stream_failures(first, entries, as_csv), media_type=media)

@router.get("/profiles/{profile_id}/failures/links", response_model=LinksOut, tags=["failures"], responses=ERRORS)
def failure_links(
    s: Svc,
    profile_id: ProfileId,
    start: Annotated[datetime | None, Query()] = None,
    end: Annotated[datetime | None, Query()] = None,
) -> Any:
    """Read-only user-delegation SAS URLs (valid 24 hours) of the failure-log blobs in range (Azure)."""
    lo, hi = window(start, end, s.clock())
    links = s.profiles.failure_links(profile_id, lo, hi)
    if links is None:  # not a passing outage: this deployment cannot sign links (409, not 503)
        raise Conflict("SAS links need Microsoft Entra access to the storage account (Azure only)")
    return LinksOut(links=[LinkOut(blob=x.blob, url=x.url, expiresOn=x.expires_on) for x in links])

@router.post("/profiles/{profile_id}/failures/resync", response_model=ResyncOut, tags=["failures"], responses=ERRORS)
def resync(s: Svc, profile_id: ProfileId, body: ResyncIn) -> Any:
    """Re-sync the selected failed records: with a Dataverse source, their current state re-read from the
    source by id (gone: deleted); otherwise their parked notifications re-applied (what became stale is
    skipped)."""
    lo, hi = window(body.start, body.end, s.clock())
    report = s.profiles.resync(profile_id, ResyncSelection(lo, hi, body.entities, body.recordIds))
    return ResyncOut(selected=report.selected, missing=report.missing, fromSource=report.from_source,
                     counts=report.result.counts())
