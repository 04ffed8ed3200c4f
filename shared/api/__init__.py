"""The admin HTTP API: :func:`build_app` for the function app and ``des api``."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from shared.api.app import create_app
from shared.api.auth import AuthConfig
from shared.api.deps import ApiServices
from shared.root import Root

__all__ = ["ApiServices", "AuthConfig", "build_app", "create_app", "services_of"]


def services_of(root: Root, *, hosted: bool = False) -> ApiServices:
    """The API's services from the composition root: its profile runtime and API configuration."""
    rt = root.profiles()
    api = root.config.api
    return ApiServices(
        store=rt.store, profiles=rt.service, auth=AuthConfig.of(api, hosted=hosted), max_body_bytes=api.max_body_bytes
    )


def build_app(root: Callable[[], Root], *, hosted: bool = False) -> FastAPI:
    """The app; its services come from ``root()`` (the process-wide root) on the first request."""
    return create_app(lambda: services_of(root(), hosted=hosted))
