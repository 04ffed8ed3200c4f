"""The Service Bus function's handler takes Dataverse's own messages beside contract v1 bodies
(issue 13): a Create with a full post-image is applied; an Update without one is unprocessable with
the reason, since no re-read source is attached to the handler (never applied partially)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from shared.config import DestinationConfig
from shared.handlers import handle_notifications
from shared.root import single_destination_root
from tests.support.dataverse_push import ACCOUNT, body, create_message, properties, update_message
from tests.support.metrics import note, rid

pytestmark = pytest.mark.integration


def test_dataverse_messages_and_contract_bodies_share_the_queue(tmp_path: Path) -> None:
    db = tmp_path / "dest.db"
    root = single_destination_root(
        DestinationConfig(destination_dsn=f"sqlite:///{db}", rejects_dir=str(tmp_path / "rejects"))
    )
    try:
        result = handle_notifications(
            [
                (body(create_message()), properties("Create", "account")),
                (body(update_message({"name": "partial"}, None)), properties("Update", "account")),
                json.dumps(note(1, 1, "create", name="contract v1")).encode(),
            ],
            root,
        ).final()
    finally:
        root.close()
    assert (result.received, result.applied, result.unprocessable) == (3, 2, 1)
    [reason] = [u.reason for u in result.unprocessables]
    assert "post-image" in reason
    with sqlite3.connect(db) as con:
        names = dict(con.execute('SELECT "Id", "name" FROM "account"').fetchall())
    assert names[ACCOUNT] == "Contoso \u00e9\u4e2d / \"quoted\""  # the post-image's full state, not the partial update
    assert names[rid(1)] == "contract v1"
