"""Fixtures of the integration tier: the admin store on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.store import SqlStore, open_store
from tests.support.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'admin.db'}"
    else:
        with fresh_database() as dsn:
            yield dsn


@pytest.fixture
def opened(store_dsn: str) -> Iterator[Callable[..., SqlStore]]:
    stores: list[SqlStore] = []

    def open_(**kwargs: Any) -> SqlStore:
        s = open_store(store_dsn, **kwargs)
        stores.append(s)
        return s

    yield open_
    for s in stores:
        s.close()
