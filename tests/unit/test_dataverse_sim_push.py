"""The Dataverse simulator's push messages: RemoteExecutionContext JSON of reference section C for
its own changes, with the switches for images, partial updates, truncation, duplicates, reordering."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.tools.dataverse_sim.generate import populate, random_changes
from shared.tools.dataverse_sim.push import BOM, CLAIMS, PushEmitter, PushMessage
from shared.tools.dataverse_sim.schema import ACCOUNT_CONTACT
from shared.tools.dataverse_sim.state import DataverseState, SteppingClock
from shared.tools.dataverse_sim.switches import PushOptions
from shared.tools.dataverse_sim.values import Ref

pytestmark = pytest.mark.unit
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"


def setup(path: Path | None = None, **options: Any) -> tuple[DataverseState, PushEmitter]:
    state = DataverseState(seed=3, clock=SteppingClock(START))
    populate(state, 5)
    return state, PushEmitter(state, PushOptions(**options), path=path)


def kv(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in items}


def target(message: PushMessage) -> dict[str, Any]:
    return dict(kv(message.json()["InputParameters"])["Target"])


def test_the_generated_organization_emits_nothing() -> None:
    _, emitter = setup()
    assert emitter.messages == []


def test_a_create_carries_typed_values_and_the_claims() -> None:
    state, emitter = setup()
    parent = state.ids("account")[0]
    rid = state.create("contact", {"firstname": "Zoë", "lastname": "Ødegaard", "annualincome": Decimal("1234.5"),
                                   "gendercode": 2, "birthdate": "1990-05-17", "donotemail": True,
                                   "parentcustomerid": Ref(parent, "account")})
    [message] = emitter.messages
    body = message.json()
    assert body["MessageName"] == "Create"
    assert body["PrimaryEntityName"] == "contact"
    assert body["PrimaryEntityId"] == rid
    assert body["Stage"] == 40
    assert body["Mode"] == 1
    assert body["OrganizationId"] == state.organization.organization_id
    assert kv(body["OutputParameters"]) == {"id": rid}
    t = target(message)
    assert next(iter(t)) == "__type"  # DataContractJsonSerializer writes the type hint first
    assert t["__type"] == f"Entity:{CONTRACTS}"
    attrs = kv(t["Attributes"])
    assert attrs["firstname"] == "Zoë"
    assert attrs["fullname"] == "Zoë Ødegaard"
    assert attrs["gendercode"] == {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 2}
    assert attrs["annualincome"] == {"__type": f"Money:{CONTRACTS}", "Value": Decimal("1234.5000")}
    assert attrs["parentcustomerid"]["__type"] == f"EntityReference:{CONTRACTS}"
    assert attrs["parentcustomerid"]["Id"] == parent
    assert attrs["parentcustomerid"]["LogicalName"] == "account"
    assert attrs["birthdate"] == "/Date(642902400000)/"
    assert attrs["donotemail"] is True
    assert attrs["createdon"] == attrs["modifiedon"]
    assert attrs["createdon"].startswith("/Date(")
    assert attrs["statecode"]["Value"] == 0
    assert b'"\\/Date(' in message.body  # written as \/Date(...)\/ on the wire
    post = kv(body["PostEntityImages"])["PostImage"]
    assert "__type" not in post
    assert kv(post["Attributes"])["versionnumber"] == state.get("contact", rid)["versionnumber"]  # type: ignore[index]
    props = message.application_properties
    assert props[f"{CLAIMS}EntityLogicalName"] == "contact"
    assert props[f"{CLAIMS}RequestName"] == "Create"
    assert props[f"{CLAIMS}Organization"] == state.organization.url
    assert props[f"{CLAIMS}User"] == state.organization.user_id
    assert "MessageMaxSizeExceeded" not in props
    assert body["ParentContext"]["Stage"] == 30


def test_an_update_target_holds_only_the_requested_columns() -> None:
    state, emitter = setup()
    rid = state.ids("account")[0]
    state.update("account", rid, {"telephone1": "+33 1", "revenue": Decimal(10)})
    [message] = emitter.messages
    attrs = kv(target(message)["Attributes"])
    assert set(attrs) == {"accountid", "telephone1", "revenue", "revenue_base", "modifiedon", "modifiedby",
                          "modifiedonbehalfby"}
    post = kv(kv(message.json()["PostEntityImages"])["PostImage"]["Attributes"])
    assert post["name"] == state.get("account", rid)["name"]  # type: ignore[index]
    assert post["versionnumber"] == state.current_version


def test_post_image_and_partial_updates_are_switches() -> None:
    state, emitter = setup(post_image="none", partial_updates=False)
    rid = state.ids("account")[0]
    state.update("account", rid, {"telephone1": "1"})
    message = emitter.messages[-1]
    assert message.json()["PostEntityImages"] == []
    assert "name" in kv(target(message)["Attributes"])  # the whole row
    emitter.options.post_image = "primary_name"
    state.update("account", rid, {"telephone1": "2"})
    image = kv(emitter.messages[-1].json()["PostEntityImages"])
    assert set(kv(image["AsynchronousStepPrimaryName"]["Attributes"])) == {"accountid", "name"}


def test_a_delete_targets_an_entity_reference() -> None:
    state, emitter = setup(delete_pre_image=True)
    rid = state.ids("opportunity")[0]
    state.delete("opportunity", rid)
    message = emitter.messages[-1]
    body = message.json()
    assert body["MessageName"] == "Delete"
    t = target(message)
    assert t == {"__type": f"EntityReference:{CONTRACTS}", "Id": rid, "KeyAttributes": [],
                 "LogicalName": "opportunity", "Name": None, "RowVersion": None}
    assert kv(kv(body["PreEntityImages"])["PreImage"]["Attributes"])["opportunityid"] == rid
    assert body["PostEntityImages"] == []


def test_associate_and_disassociate_name_the_relationship() -> None:
    state, emitter = setup()
    account, contact = state.ids("account")[0], state.ids("contact")[-1]
    if (account, contact) in state.links(ACCOUNT_CONTACT.schema_name):
        state.disassociate(ACCOUNT_CONTACT.schema_name, account, contact)
    state.associate(ACCOUNT_CONTACT.schema_name, account, contact)
    state.disassociate(ACCOUNT_CONTACT.schema_name, account, contact)
    associate, disassociate = emitter.messages[-2:]
    assert (associate.message_name, disassociate.message_name) == ("Associate", "Disassociate")
    params = kv(associate.json()["InputParameters"])
    assert params["Target"]["Id"] == account
    assert params["Relationship"]["SchemaName"] == ACCOUNT_CONTACT.schema_name
    assert params["RelatedEntities"] == [{"Id": contact, "KeyAttributes": [], "LogicalName": "contact",
                                          "Name": None, "RowVersion": None}]


def test_an_oversized_message_is_truncated_and_flagged() -> None:
    state, emitter = setup(max_bytes=2000)
    state.update("account", state.ids("account")[0], {"description": "ü" * 1500})
    message = emitter.messages[-1]
    body = message.json()
    assert message.truncated
    assert message.application_properties["MessageMaxSizeExceeded"] is True
    for key in ("InputParameters", "ParentContext", "PostEntityImages", "PreEntityImages"):
        assert key not in body
    assert body["PrimaryEntityId"] == state.ids("account")[0]
    line = json.loads(message.line("message"))
    assert line["applicationProperties"]["MessageMaxSizeExceeded"] is True
    assert line["body"]["MessageName"] == "Update"
    emitter.options.update({"truncation_style": "empty", "truncation_flag_in": "body", "truncate_rate": 1.0,
                            "max_bytes": 10**6})
    state.update("account", state.ids("account")[1], {"telephone1": "x"})
    body = emitter.messages[-1].json()
    assert body["InputParameters"] == []
    assert body["ParentContext"] is None
    assert body["MessageMaxSizeExceeded"] is True


def test_duplicates_and_reordering_keep_every_message() -> None:
    state, emitter = setup(duplicate_rate=1.0, reorder_window=4, seed=5)
    ids = state.ids("account")
    for i, rid in enumerate(ids):
        state.update("account", rid, {"telephone1": str(i)})
    emitter.flush()
    got = emitter.messages
    assert len(got) == 2 * len(ids)
    assert sum(m.duplicate for m in got) == len(ids)
    assert Counter(m.record_id for m in got) == Counter(dict.fromkeys(ids, 2))
    order = [m.record_id for m in got if not m.duplicate]
    assert order != ids  # shuffled within windows (seeded)
    assert emitter.drain() == got
    assert emitter.messages == []


def test_jsonl_lines_are_bodies_or_messages_with_properties(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    state, emitter = setup(path=path, bom=True)
    state.update("account", state.ids("account")[0], {"telephone1": "1"})
    emitter.options.line_format = "message"
    state.delete("account", state.ids("account")[1])
    emitter.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(emitter.messages) >= 2
    assert lines[0].startswith(BOM)
    assert json.loads(lines[0][len(BOM):])["MessageName"] == "Update"
    last = json.loads(lines[-1])
    assert last["body"]["MessageName"] == "Delete"
    assert last["applicationProperties"][f"{CLAIMS}RequestName"] == "Delete"
    assert last["contentType"] == "application/json"


def test_only_registered_entities_and_messages_are_posted() -> None:
    state, emitter = setup(entities=frozenset({"contact"}), messages=frozenset({"Update"}))
    state.update("account", state.ids("account")[0], {"telephone1": "1"})
    state.create("contact", {"lastname": "X"})
    state.update("contact", state.ids("contact")[0], {"jobtitle": "Y"})
    assert [(m.entity, m.message_name) for m in emitter.messages] == [("contact", "Update")]


def test_messages_are_deterministic_per_seed() -> None:
    def run() -> list[bytes]:
        state, emitter = setup(seed=9, duplicate_rate=0.3, reorder_window=3)
        random_changes(state, 25, random.Random(1))
        emitter.flush()
        return [m.body for m in emitter.messages]

    first, second = run(), run()
    assert first == second
    assert len(first) >= 25
