"""A delete and an update of the same record at the same version: the delete wins, whatever the
batching (one batch, where the reduction decides, or separate batches in either order, where the
dialect's version guard decides). Real SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from shared.engine.ports import Layout
from tests.conftest import DestinationFactory
from tests.support.model import Change

pytestmark = pytest.mark.integration

R = str(uuid.UUID(int=5, version=4))
CREATE = Change("account", R, "create", 1, {"name": "v1"})
UPDATE = Change("account", R, "update", 5, {"name": "v5"})
DELETE = Change("account", R, "delete", 5)


@pytest.mark.parametrize("order", ["update first", "delete first"])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_delete_wins_a_tie_whatever_the_batching(open_dest: DestinationFactory, order: str, batch_size: int) -> None:
    layout = Layout(write_delete_log=True)
    dest = open_dest(layout)
    engine = SyncEngine(dest, backoff_seconds=0)
    engine.apply_bodies([CREATE.body()])
    tie = [UPDATE, DELETE] if order == "update first" else [DELETE, UPDATE]
    applied = stale = 0
    for start in range(0, len(tie), batch_size):
        result = engine.apply_bodies([c.body() for c in tie[start : start + batch_size]])
        assert result.conserved
        applied, stale = applied + result.applied, stale + result.stale
    assert list(table_rows(dest, "account")) == []
    assert [(str(r["RecordId"]), r["VersionNumber"]) for r in table_rows(dest, layout.tombstone_table)] == [(R, 5)]
    assert [str(r["RecordId"]) for r in table_rows(dest, layout.delete_log_table)] == [R]
    assert applied + stale == 2
