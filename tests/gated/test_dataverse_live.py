"""The Dataverse source against a real environment (read-only).

Runs when ``DES_TEST_DATAVERSE_URL`` holds an environment URL (``https://<org>.crm.dynamics.com``)
and credentials are set: ``DES_DATAVERSE_TOKEN`` (a bearer token for ``<url>/.default``), or the
azure-identity settings (``DES_DATAVERSE_AUTH`` = managed-identity | client-secret | certificate |
workload-identity with ``DES_DATAVERSE_TENANT_ID``, ``DES_DATAVERSE_CLIENT_ID``,
``DES_DATAVERSE_CLIENT_SECRET_URI`` or ``DES_DATAVERSE_CERTIFICATE_PATH``). ``DES_TEST_DATAVERSE_ENTITY``
names a change-tracked table to read (default ``account``). It checks what the reference marks
UNVERIFIED: paging of tracked loads (nextLink, then deltaLink on the last page), the lookup
annotation, the delta response, the error for an invalid delta token. Skipped visibly otherwise.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from shared.destinations import Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.source.dataverse.client import DataverseClient, ExpiredToken
from shared.source.dataverse.cursors import CursorStore, Phase
from shared.source.dataverse.runner import SourceRunner
from shared.source.dataverse.settings import DES_DATAVERSE_AUTH, DES_DATAVERSE_TOKEN, DataverseSettings
from shared.source.dataverse.sink import EngineSink
from shared.store import open_store

URL = "DES_TEST_DATAVERSE_URL"
ENTITY = os.environ.get("DES_TEST_DATAVERSE_ENTITY", "account")
pytestmark = [
    pytest.mark.azure,
    pytest.mark.skipif(
        not os.environ.get(URL) or not (os.environ.get(DES_DATAVERSE_TOKEN) or os.environ.get(DES_DATAVERSE_AUTH)),
        reason=f"{URL} and credentials ({DES_DATAVERSE_TOKEN}, or {DES_DATAVERSE_AUTH} with its settings) are not "
        "set: give a Dataverse environment to run the live source suite",
    ),
]


@pytest.fixture
def live() -> DataverseClient:
    settings = replace(DataverseSettings.from_env(os.environ), page_size=50)
    return DataverseClient(os.environ[URL], settings)


def test_metadata_and_tracked_paging(live: DataverseClient) -> None:
    definition = live.entity_definition(ENTITY)
    assert definition["ChangeTrackingEnabled"] is True, f"turn on change tracking for {ENTITY}"
    assert live.attributes(ENTITY)
    page = live.page(live.first_page_url(definition["EntitySetName"], definition["PrimaryIdAttribute"] +
                                         ",versionnumber,modifiedon"), track=True)  # fmt: skip
    assert ("@odata.nextLink" in page) != ("@odata.deltaLink" in page)  # never both on one page
    while "@odata.nextLink" in page:
        page = live.page(page["@odata.nextLink"], track=True)
    delta = live.page(page["@odata.deltaLink"], track=False)
    assert "@odata.deltaLink" in delta or delta == {}
    bad = page["@odata.deltaLink"].split("$deltatoken=")[0] + "$deltatoken=1%2101%2f01%2f2000%2000%3a00%3a00"
    with pytest.raises(ExpiredToken):
        live.page(bad, track=False)


def test_initial_sync_into_sqlite(tmp_path: Path, live: DataverseClient) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'admin.db'}")
    dest = open_destination(f"sqlite:///{tmp_path / 'dest.db'}", Layout())
    try:
        runner = SourceRunner(cursors=CursorStore(store), client=live, sink=EngineSink(SyncEngine(dest)),
                              profile_id="7d7a4bc8-3c47-4c62-8d3e-2b0d6d0e6f10", settings=live.settings)  # fmt: skip
        while not runner.run_page(ENTITY).pass_complete:
            pass
        cursor = CursorStore(store).get("7d7a4bc8-3c47-4c62-8d3e-2b0d6d0e6f10", ENTITY)
        assert cursor is not None
        assert cursor.phase is Phase.DELTA
        assert cursor.rows_read == sum(1 for _ in dest.table_rows(ENTITY))
    finally:
        live.close()
        dest.close()
        store.close()
