"""The admin HTTP API: :func:`build_app` for the function app and ``python -m shared api``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from fastapi import FastAPI

from shared import settings as S
from shared.api.app import ApiServices, create_app
from shared.api.auth import AuthConfig
from shared.profiles.runtime import ProfileRuntime, build_runtime

__all__ = ["ApiServices", "AuthConfig", "build_app", "create_app", "services_from_env"]


def _max_body(env: Mapping[str, str]) -> int:
    raw = env.get(S.API_MAX_BODY_BYTES)
    if not raw:
        return S.DEFAULT_API_MAX_BODY_BYTES
    try:
        value = int(raw)
    except ValueError as exc:
        raise S.SettingsError(f"setting {S.API_MAX_BODY_BYTES} must be a whole number of bytes") from exc
    if value < 1024:
        raise S.SettingsError(f"setting {S.API_MAX_BODY_BYTES} must be at least 1024")
    return value


def services_from_env(
    env: Mapping[str, str] | None = None,
    *,
    hosted: bool = False,
    runtime: Callable[[], ProfileRuntime] | None = None,
) -> ApiServices:
    """The API's services from settings; ``runtime`` shares the process's profile machinery."""
    env = os.environ if env is None else env
    rt = runtime() if runtime is not None else build_runtime()
    return ApiServices(
        store=rt.store,
        profiles=rt.service,
        auth=AuthConfig.from_env(env, hosted=hosted),
        max_body_bytes=_max_body(env),
    )


def build_app(*, hosted: bool = False, runtime: Callable[[], ProfileRuntime] | None = None) -> FastAPI:
    """The app; its services are built from the environment on the first request."""
    return create_app(lambda: services_from_env(hosted=hosted, runtime=runtime))
