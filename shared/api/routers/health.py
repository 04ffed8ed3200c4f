"""``GET /health``: readiness, the only anonymous route."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.api.deps import Svc
from shared.api.schemas import HealthOut

log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/health", response_model=HealthOut, tags=["service"], responses={503: {"model": HealthOut}})
def health(s: Svc) -> Any:
    """Readiness: the admin store answers. The only anonymous route."""
    try:
        s.store.ping()
        version = s.store.schema_version()
    except Exception as exc:
        log.warning("health: admin store unavailable: %s", type(exc).__name__)
        # The same body the middleware answers when the root cannot even be built (no schemaVersion).
        body = HealthOut(status="unavailable", store="unavailable").model_dump(exclude_none=True)
        return JSONResponse(body, status_code=503)
    return HealthOut(status="ok", store="ok", schemaVersion=version)
