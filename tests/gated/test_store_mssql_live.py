"""The admin store on a real SQL Server / Azure SQL Database, wherever ``DES_TEST_MSSQL`` holds an
ODBC connection string (docs/sqlserver.md shows one for the docker-compose SQL Server). Skipped
visibly otherwise. Each test works in its own schema and drops it afterwards, so the suite can run
against a shared database.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from shared.engine.outcomes import BatchResult
from shared.store import DuplicateName, MetricsEntry, RevisionConflict, SqlStore, StoredProfile, StoreError
from shared.store.migrations import MIGRATIONS
from shared.store.mssql import MssqlStoreDialect, quote

MSSQL_ENV = "DES_TEST_MSSQL"
pytestmark = [
    pytest.mark.azure,
    pytest.mark.skipif(
        not os.environ.get(MSSQL_ENV),
        reason=f"{MSSQL_ENV} is not set: give it an ODBC connection string of a SQL Server or Azure SQL "
        "database to run the admin store against it (docs/sqlserver.md)",
    ),
]
ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def _open(schema: str) -> SqlStore:
    return SqlStore(MssqlStoreDialect.from_odbc(os.environ[MSSQL_ENV], schema))


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"desadm{uuid.uuid4().hex[:10]}"
    yield name
    d = MssqlStoreDialect.from_odbc(os.environ[MSSQL_ENV])
    with d.transaction() as cur:
        for table in ("des_metrics", "des_profiles", "des_store_version"):
            cur.execute(f"DROP TABLE IF EXISTS {quote(name)}.{quote(table)}")
        cur.execute(f"DROP SCHEMA IF EXISTS {quote(name)}")
    d.close()


def test_profiles_metrics_and_migrations_on_sql_server(schema: str) -> None:
    s = _open(schema)
    try:
        assert s.schema_version() == len(MIGRATIONS)
        p = s.create_profile(StoredProfile(str(uuid.uuid4()), "Sales", ORG, "draft", {"entities": ["account"]}))
        with pytest.raises(DuplicateName):
            s.create_profile(StoredProfile(str(uuid.uuid4()), "SALES", ORG, "draft", {}))
        s.update_profile(StoredProfile(p.id, "Sales 2", ORG, "active", {}), expected_revision=1)
        with pytest.raises(RevisionConflict):
            s.update_profile(StoredProfile(p.id, "x", ORG, "active", {}), expected_revision=1)
        assert [x.name for x in s.list_profiles(states=["active"])] == ["Sales 2"]
        r = BatchResult(received=3, applied=2, failed=1)
        c = r.entity("account")
        c.received, c.applied, c.failed, c.last_changed_on = 3, 2, 1, datetime(2026, 11, 21, 10, tzinfo=UTC)

        def worker() -> None:
            for _ in range(5):
                s.record_batch([MetricsEntry.from_result(p.id, r, pending_retry=1), MetricsEntry.unrouted({"lead": 1})])

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s.close()
        s = _open(schema)  # restart: migrations not re-applied, counts kept
        m = s.metrics(p.id)
        acc = m.entities[0]
        assert (acc.total, acc.success, acc.failure) == (45, 30, 15)
        assert acc.last_changed_on == datetime(2026, 11, 21, 10, tzinfo=UTC)
        assert acc.last_export_status == "PartialSuccess"
        assert m.pending_retry == 15
        assert s.delete_profile(p.id)
        assert s.metrics(p.id).entities == []
    finally:
        s.close()


def test_a_newer_schema_is_refused(schema: str) -> None:
    s = _open(schema)
    with s.d.transaction() as cur:
        cur.execute(
            f"INSERT INTO {s.d.table('des_store_version')} (version, name, applied_at) VALUES (?, ?, ?)",
            (len(MIGRATIONS) + 1, "from the future", datetime(2026, 1, 1)),
        )
    s.close()
    with pytest.raises(StoreError, match="newer than this build"):
        _open(schema)
