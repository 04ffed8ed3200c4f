"""Writing parts of a batch.

One batch of two entities, interleaved, with upserts, deletes and stale changes, one upsert of
which the database refuses: on PostgreSQL the engine bisects the entity's write (its halves cross
from upserts into deletes), on SQLite the write reports the refused record. Either way the refused
record fails alone with the database's reason, and every other record has the outcome it has
without it: applied, stale, deleted. And an attribute that collides with a lookup's
``<lookup>_entitytype`` column fails its record alone, whatever its value."""

from __future__ import annotations

import sqlite3
import uuid

import psycopg
import pytest

from shared.destinations import open_destination
from shared.destinations.inspect import table_rows
from shared.engine.engine import SyncEngine
from tests.support.model import Change, Lookup

pytestmark = pytest.mark.integration


def rid(i: int) -> str:
    return str(uuid.UUID(int=i, version=4))


def up(entity: str, i: int, version: int, name: str) -> str:
    return Change(entity, rid(i).upper() if i % 3 == 0 else rid(i), "update", version, {"name": name}).body()


def rm(entity: str, i: int, version: int) -> str:
    return Change(entity, rid(i), "delete", version).body()


def refuse_bad_names(dsn: str, table: str) -> None:
    if dsn.startswith("sqlite"):
        conn = sqlite3.connect(dsn.removeprefix("sqlite:///"))
        try:
            for event in ("INSERT", "UPDATE"):
                conn.execute(
                    f'CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON "{table}" '
                    "WHEN NEW.name = 'bad' BEGIN SELECT RAISE(ABORT, 'no bad names'); END"
                )
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(dsn, autocommit=True) as pg:
            pg.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT no_bad_names CHECK (name <> \'bad\')')


def test_a_refused_upsert_fails_alone_among_upserts_deletes_and_stale_changes(dsn: str) -> None:
    dest = open_destination(dsn)
    try:
        engine = SyncEngine(dest, backoff_seconds=0)
        first = [up("account", i, 5, "old") for i in range(1, 9)] + [up("contact", i, 5, "old") for i in range(1, 5)]
        assert engine.apply_bodies(first).applied == 12
        refuse_bad_names(dsn, "account")
        batch = [
            up("account", 1, 6, "new"),
            up("contact", 1, 6, "new"),
            up("account", 2, 4, "older"),  # stale: the row is newer
            up("account", 3, 7, "new"),
            rm("contact", 2, 6),
            up("account", 4, 7, "bad"),  # refused by the database
            rm("account", 5, 6),
            up("account", 9, 1, "created"),
            rm("account", 6, 4),  # stale: the row is newer
            up("contact", 3, 2, "older"),  # stale
            rm("account", 7, 9),
            up("account", 3, 6, "older"),  # stale within the batch
        ]
        result = engine.apply_bodies(batch)
        assert result.conserved
        assert (result.received, result.applied, result.stale, result.failed) == (12, 7, 4, 1)
        (failure,) = result.failures
        assert failure.notification.recordId == rid(4)
        assert "bad" in failure.reason
        account = result.per_entity["account"]
        contact = result.per_entity["contact"]
        assert (account.applied, account.stale, account.failed) == (5, 3, 1)
        assert (contact.applied, contact.stale, contact.failed) == (2, 1, 0)
        names = {str(r["Id"]).lower(): r["name"] for r in table_rows(dest, "account")}
        assert names == {
            rid(1): "new",
            rid(2): "old",
            rid(3): "new",
            rid(4): "old",
            rid(6): "old",
            rid(8): "old",
            rid(9): "created",
        }
        contacts = {str(r["Id"]).lower(): r["name"] for r in table_rows(dest, "contact")}
        assert contacts == {rid(1): "new", rid(3): "old", rid(4): "old"}
    finally:
        dest.close()


@pytest.mark.parametrize("collider", [Lookup(rid(51), "lead"), "lead"])
def test_an_attribute_named_like_a_lookups_type_column_fails_its_record_alone(dsn: str, collider: object) -> None:
    """Even when the colliding attribute is itself a lookup, the other records keep their lookup's
    entity type (an earlier version wrote NULL there and added a ``p_entitytype_entitytype``)."""
    dest = open_destination(dsn)
    try:
        target = Lookup(rid(50), "contact")
        bodies = [
            Change("account", rid(1), "update", 1, {"p": target, "name": "a"}).body(),
            Change("account", rid(2), "update", 1, {"p": target, "p_entitytype": collider}).body(),  # type: ignore[dict-item]
            Change("account", rid(3), "update", 1, {"p": None, "name": "c"}).body(),
        ]
        result = SyncEngine(dest, backoff_seconds=0).apply_bodies(bodies)
        assert (result.applied, result.failed) == (2, 1)
        (failure,) = result.failures
        assert failure.notification.recordId == rid(2)
        assert failure.reason == "attribute 'p_entitytype' collides with lookup 'p'"
        got = {str(r["Id"]).lower(): r for r in table_rows(dest, "account")}
        assert set(got) == {rid(1), rid(3)}
        assert (str(got[rid(1)]["p"]).lower(), got[rid(1)]["p_entitytype"]) == (rid(50), "contact")
        assert (got[rid(3)]["p"], got[rid(3)]["p_entitytype"]) == (None, None)
        assert not any(c.endswith("_entitytype_entitytype") for c in got[rid(1)])
    finally:
        dest.close()
