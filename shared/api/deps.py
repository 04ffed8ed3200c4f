"""What every router of the admin API shares: the services, the path and query types, the error
responses and the small parsing helpers (time windows, If-Match)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from shared.api.auth import AuthConfig
from shared.api.schemas import Problem
from shared.config import DEFAULT_API_MAX_BODY_BYTES
from shared.contract.models import GUID_PATTERN
from shared.profiles.service import ProfileError, ProfileService
from shared.store.base import Store

DEFAULT_FAILURE_WINDOW = timedelta(hours=24)


@dataclass
class ApiServices:
    store: Store
    profiles: ProfileService
    auth: AuthConfig
    max_body_bytes: int = DEFAULT_API_MAX_BODY_BYTES
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class Lazy:
    """The services, built on first use (never at import time: the function app indexes first)."""

    def __init__(self, source: ApiServices | Callable[[], ApiServices]) -> None:
        self._source = source
        self._value: ApiServices | None = source if isinstance(source, ApiServices) else None
        self._lock = threading.Lock()

    def get(self) -> ApiServices:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    assert callable(self._source)
                    self._value = self._source()
        return self._value


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Bad request"},
    401: {"model": Problem, "description": "No or invalid admin credential"},
    403: {"model": Problem, "description": "Signed in without the admin app role"},
    404: {"model": Problem, "description": "No such profile"},
    409: {"model": Problem, "description": "Duplicate name or id, a state that does not allow it, or a "
          "destination or source check that failed (the request itself is valid)"},
    412: {"model": Problem, "description": "The profile changed (If-Match revision)"},
    413: {"model": Problem, "description": "Request body too large"},
    422: {"model": Problem, "description": "Invalid fields"},
    503: {"model": Problem, "description": "Store, Blob storage or destination unavailable"},
}

ProfileId = Annotated[str, Path(pattern=GUID_PATTERN, description="The profile's GUID.")]


def services(request: Request) -> ApiServices:
    lazy: Lazy = request.app.state.services
    return lazy.get()


Svc = Annotated[ApiServices, Depends(services)]
Guid = Annotated[str | None, Query(pattern=GUID_PATTERN)]


def _aware(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    try:
        e = _aware(end, now)
        s = _aware(start, e - DEFAULT_FAILURE_WINDOW)
    except (OverflowError, ValueError) as exc:
        raise ProfileError("start and end must be dates between the years 1 and 9999") from exc
    if s > e:  # start == end: an empty range, nothing in it
        raise ProfileError("start must not be after end")
    return s, e  # any length: the failure log keeps 30 days (retention), and is listed, not scanned



# What revision() takes, for the header's schema: the revision, quoted or not (a weak tag too), or
# "*" or nothing (no condition). HTTP strips the blanks around a header value.
IF_MATCH_PATTERN = r'^(?:(?:W/)?"?\d{1,9}"?|\*)?$'


def revision(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() in ("", "*"):
        return None
    m = re.fullmatch(r'\s*(?:W/)?"?(\d{1,9})"?\s*', if_match)
    if m is None:
        raise ProfileError('If-Match must be the profile revision, for example "3"')
    return int(m.group(1))
