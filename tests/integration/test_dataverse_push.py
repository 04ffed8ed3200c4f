"""Captured-shape Dataverse messages (reference C) translated and applied through the engine to real
SQLite and PostgreSQL: values land typed, versions order push against itself and against the
change-tracking source, deleted records stay deleted, and des replay reads message lines."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.destinations import Destination, Layout
from shared.engine.engine import SyncEngine
from shared.engine.outcomes import BatchResult
from shared.replay import replay
from shared.source.dataverse import mapping as m
from shared.source.dataverse.push import parse_messages
from tests.conftest import DestinationFactory
from tests.support.dataverse_push import (
    ACCOUNT,
    ALL_TYPES,
    CONTACT,
    PARENT,
    USER,
    FakeReread,
    body,
    contract_row,
    create_message,
    date,
    delete_message,
    link_message,
    properties,
    truncated,
    update_message,
)

pytestmark = pytest.mark.integration

LINK = "9b2e3f6a-1c1d-4e8e-9d6c-0a2b3c4d5e6f"


def rows(dest: Destination, entity: str) -> dict[str, dict[str, Any]]:
    table = dest.layout.entity_table(entity)
    with dest.transaction() as tx:
        if tx.columns(table) is None:
            return {}
    return {str(r["Id"]).lower(): r for r in dest.table_rows(table)}


def apply(engine: SyncEngine, messages: list[Any], reread: FakeReread | None = None) -> BatchResult:
    parsed = parse_messages(messages, reread)
    assert not parsed.unprocessable, [u.reason for u in parsed.unprocessable]
    result = engine.apply_parsed(parsed)
    assert result.conserved
    assert result.failed == 0, [f.reason for f in result.failures]
    return result


def test_create_with_every_type_lands_typed(open_dest: DestinationFactory) -> None:
    dest = open_dest(Layout(write_delete_log=True))
    engine = SyncEngine(dest)
    result = apply(engine, [(body(create_message()), properties("Create", "account"))])
    assert result.applied == 1
    row = rows(dest, "account")[ACCOUNT]
    assert row["versionnumber"] == m.row_version(915244)
    assert row["name"] == ALL_TYPES["name"]
    assert row["numberofemployees"] == 321
    assert row["industrycode"] == 7
    assert row["des_channels"] == "1,3"
    assert Decimal(str(row["revenue"])) == Decimal("12345678901.1234")
    assert str(row["parentaccountid"]).lower() == PARENT
    assert row["parentaccountid_entitytype"] == "account"
    assert str(row["ownerid"]).lower() == USER
    assert row["creditonhold"] in (False, 0)
    assert str(row["lastusedincampaign"]).startswith("2023-10-17")
    assert row.get("description") is None  # a column is created once a value is seen


def test_history_out_of_order_converges_and_deletes_stay_deleted(open_dest: DestinationFactory) -> None:
    """Create (post-image, v100), Update without a post-image (re-read: v105), an older Update with a
    post-image (v102, stale), Delete with a pre-image (v105 -> 211), then older messages (stale
    against the tombstone), then a re-creation with the same id (v120, newer: back)."""
    dest = open_dest(Layout(write_delete_log=True))
    engine = SyncEngine(dest)
    reread = FakeReread(exported={"account": frozenset({"accountid", "name", "telephone1", "modifiedon"})})
    create = body(create_message({"accountid": ACCOUNT, "name": "v100", "telephone1": "1", "versionnumber": 100,
                                  "modifiedon": date(1700000000000)}))
    reread.rows[("account", ACCOUNT)] = contract_row("account", ACCOUNT, 105, {
        "accountid": ACCOUNT, "name": "v105", "telephone1": "5", "modifiedon": "2026-11-30T12:00:00Z"})
    partial = body(update_message({"telephone1": "5"}, None))
    older = body(update_message({"name": "v102"}, {"accountid": ACCOUNT, "name": "v102", "telephone1": "2",
                                                   "versionnumber": 102, "modifiedon": date(1700000001000)}))
    delete = body(delete_message(pre_version=105))

    assert apply(engine, [partial], reread).applied == 1  # the Update first: re-read, v105
    result = apply(engine, [create, older], reread)  # both older than what is there
    assert (result.applied, result.stale) == (0, 2)
    assert rows(dest, "account")[ACCOUNT]["name"] == "v105"
    assert apply(engine, [delete]).applied == 1
    assert ACCOUNT not in rows(dest, "account")
    del reread.rows[("account", ACCOUNT)]
    result = apply(engine, [create, older, delete], reread)  # redelivered: nothing comes back
    assert result.applied == 0
    assert ACCOUNT not in rows(dest, "account")
    # a partial Update of the deleted record, re-read: gone at the source -> skipped, nothing applied
    parsed = parse_messages([partial], reread)
    assert not parsed.notifications
    assert parsed.skipped
    # re-created with the same id: a newer version than the delete's
    recreate = body(create_message({"accountid": ACCOUNT, "name": "again", "telephone1": "9", "versionnumber": 120,
                                    "modifiedon": date(1700000002000)}))
    assert apply(engine, [recreate], reread).applied == 1
    assert rows(dest, "account")[ACCOUNT]["name"] == "again"


def test_push_and_the_change_tracking_source_share_versions(open_dest: DestinationFactory) -> None:
    """A pulled row (version 2 * versionnumber) and a pushed image of the same versionnumber are the
    same version: the second is stale; a pushed newer image wins; a pulled older row is stale."""
    dest = open_dest()
    engine = SyncEngine(dest)
    info = m.EntityInfo("account", "accounts", "accountid", ("accountid", "name", "versionnumber", "modifiedon"))
    from datetime import UTC, datetime

    def pulled(vn: int, name: str) -> bytes:
        row = {"accountid": ACCOUNT, "name": name, "versionnumber": vn, "modifiedon": "2026-11-30T12:00:00Z"}
        return m.encode(m.row_notification(info, "4ef5b371-1a6c-4b56-a1f4-3cb0d1e2f3a4", row, change_type="update",
                                           read_at=datetime.now(UTC)))

    def pushed(vn: int, name: str) -> bytes:
        return body(update_message({"name": name}, {"accountid": ACCOUNT, "name": name, "versionnumber": vn,
                                                    "modifiedon": date(1700000000000)}))

    assert engine.apply_bodies([pulled(10, "pull 10")]).applied == 1
    assert apply(engine, [pushed(10, "push 10")]).stale == 1
    assert apply(engine, [pushed(11, "push 11")]).applied == 1
    assert engine.apply_bodies([pulled(10, "pull 10")]).stale == 1
    assert rows(dest, "account")[ACCOUNT]["name"] == "push 11"


def test_associate_and_disassociate_write_the_intersect_rows(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    row = contract_row("des_account_contact", LINK, 42,
                       {"des_account_contactid": LINK, "accountid": ACCOUNT, "contactid": CONTACT})
    reread = FakeReread(links={("des_account_contact", ACCOUNT, CONTACT): row})
    assert apply(engine, [body(link_message("Associate"))], reread).applied == 1
    link = rows(dest, "des_account_contact")[LINK]
    got = (str(link["accountid"]).lower(), str(link["contactid"]).lower(), link["versionnumber"])
    assert got == (ACCOUNT, CONTACT, 84)
    reread.links.clear()
    reread.gone_links[("des_account_contact", ACCOUNT, CONTACT)] = [(LINK, 84)]
    assert apply(engine, [body(link_message("Disassociate"))], reread).applied == 1
    assert rows(dest, "des_account_contact") == {}
    reread.links[("des_account_contact", ACCOUNT, CONTACT)] = row  # a stale Associate redelivered
    assert apply(engine, [body(link_message("Associate"))], reread).stale == 1
    assert rows(dest, "des_account_contact") == {}


def test_truncated_message_is_re_read_and_applied(open_dest: DestinationFactory) -> None:
    dest = open_dest()
    engine = SyncEngine(dest)
    reread = FakeReread(rows={("account", ACCOUNT): contract_row("account", ACCOUNT, 7, {"name": "x" * 200_000})})
    props = properties("Update", "account", MessageMaxSizeExceeded=True)
    assert apply(engine, [(body(truncated(update_message({"name": "x" * 200_000}, None))), props)], reread).applied == 1
    assert len(rows(dest, "account")[ACCOUNT]["name"]) == 200_000


def test_des_replay_reads_message_lines_with_application_properties(tmp_path: Path, sqlite_dsn: str) -> None:
    from shared.destinations import open_destination

    doc = create_message()
    lines = [
        json.dumps({"applicationProperties": properties("Create", "account"), "contentType": "application/json",
                    "messageId": "m1", "body": json.loads(body(doc, escape_slashes=False))}),
        body(delete_message(pre_version=915244)).decode(),
        json.dumps(contract_row("account", PARENT, 1, {"name": "contract v1 on the same queue"})),
    ]
    path = tmp_path / "messages.jsonl"
    path.write_text("\n".join(lines) + "\n")
    dest = open_destination(sqlite_dsn, Layout())
    try:
        report = replay(path, SyncEngine(dest))
        counts = report.result.counts()
        # one batch: the create and its delete reduce to the delete (the create is stale)
        assert (counts["received"], counts["applied"], counts["stale"], counts["unprocessable"]) == (3, 2, 1, 0)
        assert set(rows(dest, "account")) == {PARENT}
    finally:
        dest.close()
