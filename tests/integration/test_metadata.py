"""Entity metadata notifications on real SQLite and PostgreSQL databases.

The behavioural suite is the cases of tests/support/metadata_scenarios.py, each run on both
databases (the ``dsn``/``open_dest`` fixtures) with its checks after every step; the same cases run
on SQL Server in tests/gated/test_metadata_mssql_live.py when ``DES_TEST_MSSQL`` is set. They prove:

* metadata creates typed columns (text(n), decimal(38, p), datetime, bigint, boolean, float, GUID
  with ``<attr>_entitytype``; none for Virtual/Image), and a record that travels with it fits, its
  DateTime stored as a real timestamp on PostgreSQL and its Money as an exact decimal;
* a value that does not fit a declared column fails its record with a reason naming the attribute,
  the value, the column type and the metadata; the column is not widened by it;
* a newer maxLength widens the column in place (rows kept), a smaller one narrows nothing;
* stale and duplicate metadata versions are skipped (counted stale), newest per entity in a batch wins;
* the six DES metadata tables hold the options, labels, states, statuses, targets and attributes,
  are replaced per entity when newer metadata applies, and other entities' rows stay;
* hostile labels (quotes, brackets, emoji, 4,000 characters, CR/LF) come back byte for byte;
* an intersect (N:N) entity is a table like any other; metadata after records keeps existing
  columns lossless; bad metadata is unprocessable with a reason; names beyond a database's
  identifier limit create no column but stay listed in the metadata tables.

Also here: concurrency of metadata writers on PostgreSQL, and the engine's retry of metadata after
a transient error (a real connection terminated by the server).
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from shared.destinations import Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.engine.ports import METADATA_TABLES
from tests.conftest import DestinationFactory
from tests.support.metadata_scenarios import (
    METADATA_CASES,
    Ctx,
    MetadataCase,
    attr,
    body,
    label,
    metadata,
    option,
    option_set,
    run_case,
)
from tests.support.scenarios import up

pytestmark = pytest.mark.integration


def _dialect(dsn: str) -> str:
    return "sqlite" if dsn.startswith("sqlite") else "postgresql"


@pytest.mark.parametrize("case", METADATA_CASES, ids=[c.name for c in METADATA_CASES])
def test_metadata_case(case: MetadataCase, dsn: str, open_dest: DestinationFactory) -> None:
    dialect = _dialect(dsn)
    layout = case.layout(dialect)
    dest = open_dest(layout)
    results = run_case(case, dest, layout, dialect, check=True)
    assert all(r.conserved for r in results)


def _labels_md(version: int, text: str) -> str:
    return body(
        metadata(
            "account",
            version,
            attr("industrycode", "Picklist", optionSet=option_set("x", option(1, label(1033, text)))),
            attr("name", "String", maxLength=100 + version),
        )
    )


def test_a_second_destination_sees_applied_metadata(dsn: str, open_dest: DestinationFactory) -> None:
    """Another process's engine reads the applied version and the declared columns from the database."""
    first = open_dest(Layout())
    assert SyncEngine(first).apply_bodies([_labels_md(5, "five")]).applied == 1
    second = open_dest(Layout())
    engine = SyncEngine(second)
    r = engine.apply_bodies([_labels_md(4, "four"), up("account", 1, 1, name="n" * 106).body()])
    assert (r.applied, r.stale, r.failed) == (0, 1, 1), r.counts()  # the 106 > 105 characters are not widened
    assert "declared by the entity's metadata" in r.failures[0].reason
    ctx = Ctx(_dialect(dsn), second, Layout())
    assert {row[5] for row in ctx.meta(METADATA_TABLES[1], "account")} == {"five"}


def test_concurrent_metadata_writers_converge_to_the_newest(pg_dsn: str) -> None:
    """Writers of several versions of two entities' metadata, at once: the newest of each wins."""
    versions = list(range(1, 9))
    errors: list[BaseException] = []

    def writer(vs: list[int]) -> None:
        dest = open_destination(pg_dsn, Layout())
        try:
            engine = SyncEngine(dest, backoff_seconds=0.01)
            for v in vs:
                r = engine.apply_bodies([_labels_md(v, f"v{v}"), body(_contact(v))])
                assert r.conserved
        except BaseException as exc:
            errors.append(exc)
        finally:
            dest.close()

    threads = [threading.Thread(target=writer, args=(versions[i::3],)) for i in range(3)]
    threads += [threading.Thread(target=writer, args=(list(reversed(versions)),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    dest = open_destination(pg_dsn, Layout())
    try:
        ctx = Ctx("postgresql", dest, Layout())
        assert ctx.state() == {"account": 8, "contact": 8}
        assert [row[5] for row in ctx.meta(METADATA_TABLES[1], "account")] == ["v8"]
        assert [row[4] for row in ctx.meta(METADATA_TABLES[5], "account")] == [8, 8]
        assert ctx.columns("account")["name"].length == 108
    finally:
        dest.close()


def _contact(v: int) -> dict[str, Any]:
    return metadata("contact", v, attr("fullname", "String", maxLength=100 + v))


def test_metadata_survives_a_terminated_connection(pg_dsn: str) -> None:
    """The server ends the session before a batch of metadata: the engine classifies the error as
    transient, reconnects and applies every notification once."""
    dest = open_destination(pg_dsn, Layout())
    try:
        engine = SyncEngine(dest, backoff_seconds=0.01)
        assert engine.apply_bodies([_labels_md(1, "one")]).applied == 1
        pid = dest.conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        r = engine.apply_bodies([_labels_md(2, "two"), body(_contact(1))])
        assert (r.applied, r.stale) == (2, 0), r.counts()
        ctx = Ctx("postgresql", dest, Layout())
        assert ctx.state() == {"account": 2, "contact": 1}
    finally:
        dest.close()
