"""Shared fixtures: real SQLite files and real PostgreSQL databases, one per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from shared.destinations import Destination, Layout, open_destination
from tests.support.azurite import azurite, azurite_connection, blob_keys, storage  # noqa: F401 - fixtures
from tests.support.postgres import fresh_database

DestinationFactory = Callable[..., Destination]

# Real databases are slow next to hypothesis' default deadline; CI prints the blob to reproduce a failure.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _redaction_forgets_what_a_test_remembered() -> Iterator[None]:
    """The one redaction remembers secrets for the whole process (``redaction.remember``, called for
    every DSN a process uses), and masks them in any text from then on. Tests make up passwords
    (hypothesis among them): what one test remembered is forgotten after it, so it cannot mask
    another test's text in the same worker. What fixtures of wider scope remembered stays."""
    from shared.destinations import redaction

    with redaction._KNOWN_LOCK:
        known, ordered = set(redaction._KNOWN), redaction._SORTED
    yield
    with redaction._KNOWN_LOCK:
        redaction._KNOWN.clear()
        redaction._KNOWN.update(known)
        redaction._SORTED = ordered


@pytest.fixture
def sqlite_dsn(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dest.db'}"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    with fresh_database() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dest.db'}"
    else:
        request.applymarker(pytest.mark.integration)
        with fresh_database() as pg:
            yield pg


@pytest.fixture
def open_dest(dsn: str) -> Iterator[DestinationFactory]:
    """Opens destinations on the parametrized database; closes them after the test."""
    opened: list[Destination] = []

    def factory(layout: Layout | None = None) -> Destination:
        d = open_destination(dsn, layout or Layout())
        opened.append(d)
        return d

    yield factory
    for d in opened:
        d.close()
