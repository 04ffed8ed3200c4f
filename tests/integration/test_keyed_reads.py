"""The destination port's keyed reads (the push re-read, issue 13) on real SQLite and PostgreSQL:
the version held for records by primary key, and the intersect rows held for an N:N pair by its
two id columns; nothing for a table or column that does not exist; ids compared without regard to
case; hostile values stay parameters."""

from __future__ import annotations

import json

import pytest

from shared.contract.parse import parse_bodies
from shared.destinations import Layout, open_destination
from shared.engine.engine import SyncEngine
from shared.source.dataverse.push_reread import keyed_held, keyed_link_ids
from tests.support.metrics import note, rid

pytestmark = pytest.mark.integration

ACCOUNT_A, ACCOUNT_B = "6d81597f-0f9f-e711-8122-000d3aa2331c", "2e451703-c686-e711-80e5-00155db19e6d"
CONTACT = "1a2b3c4d-0f9f-e711-8122-000d3aa2331c"
REL = "des_account_contact"


def _apply(engine: SyncEngine, *notes: dict[str, object]) -> None:
    result = engine.apply_parsed(parse_bodies([json.dumps(n).encode() for n in notes]))
    assert (result.failed, result.unprocessable) == (0, 0), result.counts()


@pytest.mark.parametrize("prefix", ["", "ks"])
def test_held_versions_and_rows_with(dsn: str, prefix: str) -> None:
    dest = open_destination(dsn, Layout(prefix=prefix))
    try:
        engine = SyncEngine(dest)
        table = dest.layout.entity_table("account")
        assert dest.held_versions(table, [rid(1)]) == {}  # no table yet
        assert dest.rows_with(dest.layout.entity_table(REL), {"accountid": ACCOUNT_A}) == []
        _apply(engine, note(1, 10, "create", name="one"), note(2, 20, "create", name="two"),
               note(3, 30, "create", name="x' OR '1'='1"), note(3, 31, "delete"))  # fmt: skip
        assert dest.held_versions(table, [rid(1), rid(2), rid(3), rid(4)]) == {rid(1): 10, rid(2): 20}
        assert dest.held_versions(table, [rid(2).upper()]) == {rid(2): 20}
        assert dest.held_versions(table, []) == {}
        held = keyed_held(dest)
        assert (held("account", rid(1)), held("account", rid(3)), held("contact", rid(1))) == (10, None, None)
        # N:N intersect rows, by their two id columns (whatever their stored type)
        _apply(engine,
               note(11, 4, "create", entity=REL, accountid=ACCOUNT_A, contactid=CONTACT),
               note(12, 6, "create", entity=REL, accountid=ACCOUNT_B, contactid=CONTACT),
               note(13, 8, "create", entity=REL, accountid=ACCOUNT_A, contactid=ACCOUNT_B))  # fmt: skip
        rel = dest.layout.entity_table(REL)
        assert dest.rows_with(rel, {"accountid": ACCOUNT_A, "contactid": CONTACT}) == [(rid(11), 4)]
        assert sorted(dest.rows_with(rel, {"contactid": CONTACT})) == [(rid(11), 4), (rid(12), 6)]
        assert sorted(keyed_link_ids(dest)(REL, {"accountid": ACCOUNT_A.upper()})) == [(rid(11), 4), (rid(13), 8)]
        assert dest.rows_with(rel, {"accountid": ACCOUNT_A, "nosuchcolumn": CONTACT}) == []
        assert dest.rows_with(rel, {"accountid": "x' OR '1'='1"}) == []
        assert dest.rows_with(rel, {}) == []
    finally:
        dest.close()
