"""Property: whatever Service Bus does to a history, the destination converges to the reference model.

Random histories (creates, updates with random attribute subsets, deletes, re-creations) are
delivered with duplicates, reordering, batch envelopes, splitting into engine batches and
redelivery of whole batches, through the real engine into a real SQLite file and a real PostgreSQL
schema. After every batch the outcome counts must equal the model's (the reduction buffer collapses
a batch to the newest change per record; what is not newer than the destination is stale), and the
conservation law must hold; at the end every table must equal the model's, column types included,
and every deleted record must have its tombstone.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.destinations import Destination, Layout, open_destination
from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from tests.support.histories import (
    COLUMN_TYPES,
    Batch,
    DrawChooser,
    batch_changes,
    batch_texts,
    delivery,
    history,
)
from tests.support.model import ReferenceModel, canon, diff, expected_state, table_state
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration

# Examples per database; raise it for a deeper search: DES_CONVERGENCE_EXAMPLES=2000 pytest ...
EXAMPLES = int(os.environ.get("DES_CONVERGENCE_EXAMPLES", "60"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def scenarios(draw: st.DrawFn) -> list[Batch]:
    ch = DrawChooser(draw)
    return delivery(ch, history(ch))


@pytest.fixture(scope="module")
def pg_module_dsn() -> Iterator[str]:
    """One PostgreSQL database for the module; each example gets its own schema in it."""
    with fresh_database() as dsn:
        yield dsn


def check_converged(dest: Destination, model: ReferenceModel, layout: Layout) -> None:
    tombstones: dict[tuple[str, str], int] = {}
    for row in table_rows(dest, layout.tombstone_table):
        rid = canon(row["RecordId"])
        version = row["VersionNumber"]
        assert isinstance(rid, str)
        assert isinstance(version, int)
        tombstones[(str(row["EntityName"]), rid)] = version
    for entity in sorted(model.entities):
        table = layout.entity_table(entity)
        actual = table_state(table_rows(dest, table))
        expected = expected_state(model, entity)
        problems = list(diff(expected, actual))
        assert not problems, f"{table} differs from the model:\n" + "\n".join(problems)
        with dest.transaction() as tx:
            columns = tx.columns(table)
        assert columns is not None
        # Columns exist only for attributes a non-null value was sent for, with the attribute's type.
        assert set(columns) <= model.possible_columns.get(entity, set())
        for name, ctype in columns.items():
            assert ctype == COLUMN_TYPES[name], f"{table}.{name} is {ctype}, expected {COLUMN_TYPES[name]}"
        for rid, version in model.deleted(entity).items():
            assert tombstones.get((entity, rid)) == version, f"{entity} {rid}: tombstone for v{version} missing"


def deliver(dest: Destination, batches: list[Batch]) -> ReferenceModel:
    engine = SyncEngine(dest)
    model = ReferenceModel()
    total = BatchResult()
    for batch in batches:
        changes = batch_changes(batch)
        result = engine.apply_bodies(batch_texts(batch))
        want = model.apply_batch(changes)
        assert result.conserved, result.counts()
        assert result.received == len(changes)
        assert (result.failed, result.unprocessable) == (0, 0), [f.reason for f in result.failures]
        assert (result.applied, result.stale) == (want.applied, want.stale), (result.counts(), want)
        total.merge(result)
    assert total.conserved
    distinct = {(c.key, c.version) for b in batches for c in batch_changes(b)}
    # Each source event takes effect at most once; duplicates and redeliveries are stale.
    assert total.applied <= len(distinct)
    assert total.stale >= total.received - len(distinct)
    return model


@PROPERTY
@given(batches=scenarios())
def test_sqlite_converges_to_the_model(batches: list[Batch]) -> None:
    with tempfile.TemporaryDirectory(prefix="des-conv-") as tmp:
        layout = Layout()
        dest = open_destination(f"sqlite:///{Path(tmp) / 'dest.db'}", layout)
        try:
            model = deliver(dest, batches)
            check_converged(dest, model, layout)
        finally:
            dest.close()


@PROPERTY
@given(batches=scenarios())
def test_postgres_converges_to_the_model(pg_module_dsn: str, batches: list[Batch]) -> None:
    layout = Layout(schema=f"Conv{uuid.uuid4().hex[:16]}", prefix="Des")  # mixed case: quoted as named
    dest = open_destination(pg_module_dsn, layout)
    try:
        model = deliver(dest, batches)
        check_converged(dest, model, layout)
    finally:
        dest.close()
