"""Dataverse push messages -> contract v1 (core, no I/O), on the captured shapes of reference section C."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contract.models import ChangeType, Lookup
from shared.contract.parse import Unprocessable, parse_bodies
from shared.profiles.fanout import EngineRegistry
from shared.pull.reread import ProfileRereads
from shared.source.dataverse import mapping as m
from shared.source.dataverse.cursors import CursorStore
from shared.source.dataverse.push import (
    CLAIMS,
    Skipped,
    decode_value,
    parse_lines,
    parse_messages,
    split_line,
    translate_body,
    translate_to_notifications,
)
from shared.store.base import StoreUnavailable
from tests.support.dataverse_push import (
    ACCOUNT,
    ALL_TYPES,
    CONTACT,
    ORG,
    PARENT,
    USER,
    FakeReread,
    body,
    context,
    contract_row,
    create_message,
    date,
    delete_message,
    kv,
    link_message,
    properties,
    ref,
    truncated,
    typed,
    update_message,
)

pytestmark = pytest.mark.unit

# Reference C5: the documented webhook sample (Update of a contact, PostOperation, asynchronous),
# as DataContractJsonSerializer writes it ("\/Date(...)\/"), the elided GUIDs filled in.
WEBHOOK_SAMPLE = rb"""{"BusinessUnitId":"e2b9dd85-9e9f-e711-8122-000d3aa2331c","CorrelationId":"b374239d-4233-41a9-8b17-a3ffd3f3b4e0","Depth":1,"InitiatingUserId":"75c2dd85-9e9f-e711-8122-000d3aa2331c",
 "InputParameters":[{"key":"Target","value":{
   "__type":"Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts",
   "Attributes":[{"key":"firstname","value":"James"},
     {"key":"contactid","value":"6d81597f-0f9f-e711-8122-000d3aa2331c"},
     {"key":"fullname","value":"James Glynn (sample)"},
     {"key":"modifiedon","value":"\/Date(1506384247000)\/"},
     {"key":"modifiedby","value":{"__type":"EntityReference:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts",
        "Id":"75c2dd85-9e9f-e711-8122-000d3aa2331c","KeyAttributes":[],"LogicalName":"systemuser","Name":null,"RowVersion":null}},
     {"key":"modifiedonbehalfby","value":null}],
   "EntityState":null,"FormattedValues":[],"Id":"6d81597f-0f9f-e711-8122-000d3aa2331c","KeyAttributes":[],
   "LogicalName":"contact","RelatedEntities":[],"RowVersion":null}}],
 "IsExecutingOffline":false,"IsInTransaction":false,"IsOfflinePlayback":false,"IsolationMode":1,
 "MessageName":"Update","Mode":1,"OperationCreatedOn":"\/Date(1506409448000-0700)\/",
 "OperationId":"4af10637-4ea2-e711-8122-000d3aa2331c","OrganizationId":"4ef5b371-1a6c-4b56-a1f4-3cb0d1e2f3a4","OrganizationName":"OrgName",
 "OutputParameters":[],
 "OwningExtension":{"Id":"75417616-4ea2-e711-8122-000d3aa2331c","KeyAttributes":[],"LogicalName":"sdkmessageprocessingstep","Name":null,"RowVersion":null},
 "ParentContext":null,
 "PostEntityImages":[{"key":"AsynchronousStepPrimaryName","value":{"Attributes":[
     {"key":"fullname","value":"James Glynn (sample)"},{"key":"contactid","value":"6d81597f-0f9f-e711-8122-000d3aa2331c"}],
   "EntityState":null,"FormattedValues":[],"Id":"6d81597f-0f9f-e711-8122-000d3aa2331c","KeyAttributes":[],
   "LogicalName":"contact","RelatedEntities":[],"RowVersion":null}}],
 "PreEntityImages":[],"PrimaryEntityId":"6d81597f-0f9f-e711-8122-000d3aa2331c","PrimaryEntityName":"contact",
 "RequestId":null,"SecondaryEntityName":"none","SharedVariables":[],"Stage":40,"UserId":"75c2dd85-9e9f-e711-8122-000d3aa2331c"}"""  # noqa: E501
SAMPLE_CONTACT = "6d81597f-0f9f-e711-8122-000d3aa2331c"


def one(parsed: Any) -> Any:
    assert not parsed.unprocessable, [u.reason for u in parsed.unprocessable]
    (n,) = parsed.notifications
    return n


def reasons(parsed: Any) -> list[str]:
    return [u.reason for u in parsed.unprocessable]


# ------------------------------------------------------------------------------------ recognition
def test_webhook_sample_without_post_image_is_unprocessable_with_the_registration_hint() -> None:
    parsed = parse_messages([WEBHOOK_SAMPLE])
    assert parsed.received == 1
    assert parsed.dataverse_messages == 1
    (u,) = parsed.unprocessable
    assert u.entity == "contact"
    assert u.record_id == SAMPLE_CONTACT
    assert u.reason.startswith(f"Dataverse Update of contact {SAMPLE_CONTACT}: cannot be applied as full state")
    assert "no post-image" in u.reason
    assert "register a post-image on the step holding versionnumber" in u.reason
    assert u.body == WEBHOOK_SAMPLE.decode()  # kept verbatim for the unprocessable store


def test_webhook_sample_with_a_source_is_re_read() -> None:
    fake = FakeReread(rows={("contact", SAMPLE_CONTACT): contract_row("contact", SAMPLE_CONTACT, 7001, {
        "contactid": SAMPLE_CONTACT, "firstname": "James", "lastname": "Glynn", "fullname": "James Glynn (sample)"})})
    n = one(parse_messages([WEBHOOK_SAMPLE], fake))
    assert fake.calls == [f"record contact {SAMPLE_CONTACT}"]
    assert n.version == 2 * 7001
    assert n.changeType is ChangeType.UPDATE
    assert n.attributes["lastname"] == "Glynn"  # the whole row, not just the changed columns
    assert n.organizationId == "4ef5b371-1a6c-4b56-a1f4-3cb0d1e2f3a4"


def test_recognised_by_application_properties_or_shape_and_contract_bodies_unchanged() -> None:
    contract = json.dumps(contract_row("account", ACCOUNT, 5, {"name": "x"})).encode()
    assert translate_body(contract, None, None) is None
    assert translate_body(contract, {"foo": "bar"}, None) is None
    assert translate_body(b"not json", None, None) is None  # the contract parser gives its reason
    parsed = parse_messages([contract, b"not json", (body(create_message()), properties("Create", "account"))])
    assert parsed.received == 3
    assert parsed.dataverse_messages == 1
    assert len(parsed.notifications) == 2
    assert reasons(parsed)[0].startswith("malformed JSON")
    # with Dataverse's application properties, a body that is not a context says so
    t = translate_body(b"[1, 2]", properties("Create", "account"), None)
    assert t is not None
    assert "not a RemoteExecutionContext" in t.unprocessable[0].reason
    assert "Message Format 'Json'" in t.unprocessable[0].reason
    t = translate_body(b"\xff\xfe", properties("Create", "account"), None)
    assert t is not None
    assert "not UTF-8" in t.unprocessable[0].reason
    # an AMQP client may give the application properties as bytes: recognised all the same
    as_bytes = {k.encode(): v.encode() if isinstance(v, str) else v for k, v in properties("Create", "account").items()}
    t = translate_body(b"[1, 2]", as_bytes, None)  # type: ignore[arg-type]
    assert t is not None
    assert "not a RemoteExecutionContext" in t.unprocessable[0].reason
    t = translate_body(body(truncated(update_message({"name": "x"}, None))), {b"MessageMaxSizeExceeded": True}, None)  # type: ignore[dict-item]
    assert t is not None
    assert "truncated" in t.unprocessable[0].reason


# ------------------------------------------------------------------------------------ values
def test_create_with_every_type_and_a_post_image_is_full_state() -> None:
    n = one(parse_messages([(body(create_message(), bom=True), properties("Create", "account"))]))
    assert n.changeType is ChangeType.CREATE
    assert n.entity == "account"
    assert n.recordId == ACCOUNT
    assert n.organizationId == ORG
    assert n.version == m.row_version(915244)
    assert n.changedOn.isoformat() == "2017-09-26T00:04:07+00:00"  # modifiedon of the image
    a = n.attributes
    assert "versionnumber" not in a
    assert a["name"] == 'Contoso \u00e9\u4e2d / "quoted"'
    assert a["numberofemployees"] == 321
    assert a["creditonhold"] is False
    assert a["industrycode"] == 7
    assert a["statecode"] == 0
    assert a["statuscode"] == 1
    assert a["des_channels"] == "1,3"  # multi-select as DES stored it
    assert a["parentaccountid"] == Lookup(id=PARENT, logicalName="account")
    assert a["ownerid"] == Lookup(id=USER, logicalName="systemuser")
    assert a["lastusedincampaign"] == "2023-10-17T07:00:00Z"
    assert a["des_founded"] == "2023-10-17T00:00:00Z"
    assert a["description"] is None
    # the translated body carries money exactly as Dataverse sent it
    t = translate_body(body(create_message()), None, None)
    assert t is not None
    text = t.bodies[0].decode()
    assert '"revenue":12345678901.1234' in text
    assert '"creditlimit":100' in text
    assert '"exchangerate":1.0000000000' in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(0), "1970-01-01T00:00:00Z"),
        (date(1506409448123, "-0700"), "2017-09-26T07:04:08.123Z"),
        (date(-62135596800000), "0001-01-01T00:00:00Z"),
        ("/Date(12)/ and text", "/Date(12)/ and text"),
        (typed("Money", Value=Decimal("-0.0001")), Decimal("-0.0001")),
        ([], None),
        ([{"Value": 2}], "2"),
        ({"Id": PARENT, "LogicalName": "account"}, {"id": PARENT, "logicalName": "account"}),
        (typed("OptionSetValueCollection", Items=[typed("OptionSetValue", Value=5)]), "5"),
    ],
)
def test_value_encodings(value: Any, expected: Any) -> None:
    assert decode_value(value, "v") == expected


# ------------------------------------------------------------------------------------ full state
def test_update_with_a_full_post_image_needs_no_re_read_and_keeps_the_exported_columns() -> None:
    image = {**ALL_TYPES, "versionnumber": 915300, "createdby": ref(USER, "systemuser")}
    exported = frozenset({"accountid", "name", "revenue", "parentaccountid", "modifiedon"})
    fake = FakeReread(exported={"account": exported})
    n = one(parse_messages([body(update_message({"name": "Renamed"}, image))], fake))
    assert fake.calls == []
    assert n.changeType is ChangeType.UPDATE
    assert n.version == 2 * 915300
    assert set(n.attributes) == exported  # createdby and the rest are not exported
    assert n.attributes["name"] == ALL_TYPES["name"]  # the image is the state after the update


def test_update_whose_post_image_lacks_an_exported_column_is_re_read() -> None:
    image = {"accountid": ACCOUNT, "name": "Renamed", "versionnumber": 915300, "modifiedon": date(1506384247000)}
    fake = FakeReread(exported={"account": frozenset({"accountid", "name", "telephone1", "modifiedon"})},
                      rows={("account", ACCOUNT): contract_row("account", ACCOUNT, 915301, {"name": "Later"})})
    n = one(parse_messages([body(update_message({"name": "Renamed"}, image))], fake))
    assert fake.calls == [f"record account {ACCOUNT}"]
    assert n.version == 2 * 915301
    parsed = parse_messages([body(update_message({"name": "Renamed"}, image))])  # no source: image trusted
    assert one(parsed).version == 2 * 915300


def test_one_re_read_per_record_per_batch() -> None:
    fake = FakeReread(rows={("account", ACCOUNT): contract_row("account", ACCOUNT, 9, {"name": "n"})})
    updates = [body(update_message({"name": f"n{i}"}, None)) for i in range(5)]
    parsed = parse_messages(updates, fake)
    assert len(parsed.notifications) == 5
    assert fake.calls == [f"record account {ACCOUNT}"]
    parse_messages(updates[:1], fake)  # the next batch reads again
    assert len(fake.calls) == 2


def test_messages_without_record_state_are_re_read() -> None:
    doc = context("Assign", "account", ACCOUNT, inputs=[kv("Target", ref(ACCOUNT, "account")),
                                                        kv("Assignee", ref(USER, "systemuser"))])
    fake = FakeReread(rows={("account", ACCOUNT): contract_row("account", ACCOUNT, 12, {"name": "n"})})
    assert one(parse_messages([body(doc)], fake)).version == 24
    (r,) = reasons(parse_messages([body(doc)]))
    assert "a Assign message carries no record state" in r


@pytest.mark.parametrize("where", ["properties", "body", "removed-only"])
def test_truncated_messages_are_re_read(where: str) -> None:
    doc = truncated(create_message())
    props = properties("Create", "account")
    if where == "properties":
        props["MessageMaxSizeExceeded"] = True
    elif where == "body":
        doc["messagemaxsizeexceeded"] = "True"
    fake = FakeReread(rows={("account", ACCOUNT): contract_row("account", ACCOUNT, 99, {"name": "big"})})
    n = one(parse_messages([(body(doc), props)], fake))
    assert n.changeType is ChangeType.CREATE
    assert n.version == 2 * 99
    (u,) = parse_messages([(body(doc), props)]).unprocessable
    assert "truncated" in u.reason
    assert "register a post-image" in u.reason


def test_phantom_create_is_skipped_or_deleted_at_its_own_version() -> None:
    fake = FakeReread()  # the source does not have the record: a rolled-back synchronous step
    doc = create_message(post_image=False)
    parsed = parse_messages([body(doc)], fake)
    assert parsed.received == 0
    assert not parsed.notifications
    (s,) = parsed.skipped
    assert isinstance(s, Skipped)
    assert "does not exist at the source" in s.reason
    assert s.record_id == ACCOUNT
    # with the versionnumber known (a post-image that misses exported columns), the row it may have
    # created is deleted, at a version a real later re-creation beats
    fake.exported["account"] = frozenset({"accountid", "name", "telephone1"})
    n = one(parse_messages([body(create_message())], fake))
    assert n.changeType is ChangeType.DELETE
    assert n.version == m.delete_version(915244)


def test_re_read_refusal_and_foreign_organization_are_unprocessable() -> None:
    fake = FakeReread(refuse="the Dataverse source does not read 'account'")
    (r,) = reasons(parse_messages([WEBHOOK_SAMPLE.replace(b'"contact"', b'"account"')], fake))
    assert "re-reading it failed: the Dataverse source does not read 'account'" in r
    other = "0f8fad5b-d9cb-469f-a165-70867728950e"
    fake = FakeReread(rows={("contact", SAMPLE_CONTACT): contract_row("contact", SAMPLE_CONTACT, 1, {}, org=other)})
    (r,) = reasons(parse_messages([WEBHOOK_SAMPLE], fake))
    assert f"reads organization {other}" in r


# ------------------------------------------------------------------------------------ delete, N:N
def test_delete_with_a_pre_image_version() -> None:
    n = one(parse_messages([(body(delete_message(pre_version=915400)), properties("Delete", "account"))]))
    assert n.changeType is ChangeType.DELETE
    assert n.version == m.delete_version(915400)
    assert n.attributes is None
    assert n.changedOn.isoformat() == "2017-09-26T07:04:08+00:00"  # OperationCreatedOn, offset ignored


def test_delete_without_a_version_is_verified_at_the_source() -> None:
    (r,) = reasons(parse_messages([body(delete_message())]))
    assert "register a pre-image holding versionnumber on the Delete step" in r
    fake = FakeReread(high_water=915500)
    n = one(parse_messages([body(delete_message())], fake))
    assert n.version == m.delete_version(915500)
    fake.rows[("account", ACCOUNT)] = contract_row("account", ACCOUNT, 915600, {"name": "re-created"})
    n = one(parse_messages([body(delete_message())], fake))
    assert n.changeType is not ChangeType.DELETE  # re-created since: its current row
    assert n.version == 2 * 915600


def test_a_verified_delete_outranks_every_version_its_batch_carried() -> None:
    """A delete verified at the source (no pre-image) is versioned from what the source's cursor saw;
    an Update of the same record in the same batch carries a later versionnumber the cursor never
    read. That version was assigned before the batch arrived, so before the verifying read: the
    delete goes above it (found by the push + pull property test: the record came back)."""
    image = {**ALL_TYPES, "versionnumber": 915300}
    fake = FakeReread(high_water=915200)  # the cursor's mark is below the Update's version
    batch = [body(update_message({"name": "Renamed"}, image)), body(delete_message())]
    for messages in (batch, batch[::-1]):  # either order in the batch
        parsed = parse_messages(messages, fake)
        by_type = {n.changeType: n.version for n in parsed.notifications}
        assert by_type == {ChangeType.UPDATE: 2 * 915300, ChangeType.DELETE: 2 * 915300 + 1}
    # a delete carried by its pre-image keeps its own version (a later re-creation may share the batch)
    carried_delete = delete_message(pre_version=915100)
    parsed = parse_messages([body(update_message({"name": "Renamed"}, image)), body(carried_delete)], fake)
    assert {n.changeType: n.version for n in parsed.notifications}[ChangeType.DELETE] == m.delete_version(915100)
    # alone, the verified delete has the source's mark
    assert one(parse_messages([body(delete_message())], fake)).version == m.delete_version(915200)


@pytest.mark.parametrize("related_typed", [False, True])
def test_associate_reads_the_intersect_row(related_typed: bool) -> None:
    link = "9b2e3f6a-1c1d-4e8e-9d6c-0a2b3c4d5e6f"
    row = contract_row("des_account_contact", link, 42,
                       {"des_account_contactid": link, "accountid": ACCOUNT, "contactid": CONTACT})
    fake = FakeReread(links={("des_account_contact", ACCOUNT, CONTACT): row})
    n = one(parse_messages([body(link_message("Associate", related_typed=related_typed))], fake))
    assert (n.entity, n.recordId, n.version) == ("des_account_contact", link, 84)
    assert n.attributes == {"des_account_contactid": link, "accountid": ACCOUNT, "contactid": CONTACT}
    (r,) = reasons(parse_messages([body(link_message("Associate"))]))
    assert "names the records, not the intersect row" in r
    fake.links.clear()
    assert "not linked at the source any more" in parse_messages([body(link_message("Associate"))], fake).skipped[
        0].reason


def test_disassociate_deletes_the_rows_the_source_can_name_else_leaves_it_to_pull() -> None:
    link = "9b2e3f6a-1c1d-4e8e-9d6c-0a2b3c4d5e6f"
    fake = FakeReread(high_water=10, gone_links={("des_account_contact", ACCOUNT, CONTACT): [(link, 84)]})
    n = one(parse_messages([body(link_message("Disassociate"))], fake))
    assert (n.entity, n.recordId, n.changeType) == ("des_account_contact", link, ChangeType.DELETE)
    assert n.version == m.delete_version(42)  # newer than the row held (84 = 2 * 42)
    fake.gone_links.clear()
    parsed = parse_messages([body(link_message("Disassociate"))], fake)
    assert not parsed.notifications
    assert "the change-tracking pass of the intersect entity deletes it" in parsed.skipped[0].reason


def test_truncated_n_to_n_messages_re_read_the_records_links() -> None:
    link = "9b2e3f6a-1c1d-4e8e-9d6c-0a2b3c4d5e6f"
    gone = "8b2e3f6a-1c1d-4e8e-9d6c-0a2b3c4d5e6f"
    row = contract_row("des_account_contact", link, 42, {"accountid": ACCOUNT, "contactid": CONTACT})
    fake = FakeReread(links={("des_account_contact", ACCOUNT, CONTACT): row},
                      gone_links={("des_account_contact", ACCOUNT, PARENT): [(gone, 60)]})
    doc = truncated(link_message("Disassociate"))
    parsed = parse_messages([(body(doc), properties("Disassociate", "account", MessageMaxSizeExceeded=True))], fake)
    assert [(n.recordId, n.changeType, n.version) for n in parsed.notifications] == [
        (link, ChangeType.UPDATE, 84), (gone, ChangeType.DELETE, m.delete_version(30))]
    assert fake.calls[0] == f"links_of account {ACCOUNT}"
    (r,) = reasons(parse_messages([body(doc)]))
    assert "truncated (MessageMaxSizeExceeded) and names no relationship" in r


# ------------------------------------------------------------------------------------ hostile input
def _with(doc: dict[str, Any], **changes: Any) -> bytes:
    return body({**doc, **changes})


def _attr(name: str, value: Any) -> bytes:
    return body(create_message({**ALL_TYPES, name: value}))


HOSTILE: list[tuple[bytes, str]] = [
    (_with(create_message(), OrganizationId="not-a-guid"), "OrganizationId: not a GUID"),
    (_with(create_message(), OrganizationId=None), "OrganizationId: not a GUID: None"),
    (_with(create_message(), PrimaryEntityId="x' OR 1=1 --"), "PrimaryEntityId: not a GUID"),
    (_with(create_message(), PrimaryEntityName="Account; DROP TABLE x"), "PrimaryEntityName: not a logical name"),
    (_with(create_message(), MessageName=7), "MessageName: expected the message name"),
    (_with(create_message(), MessageName="Merge"), "'Merge' is not one this service translates"),
    (_with(create_message(), InputParameters={"Target": 1}), "InputParameters: expected an array of {key, value}"),
    (_with(create_message(), InputParameters=[{"key": 1, "value": 2}]), "InputParameters[0]: expected"),
    (_with(create_message(), InputParameters=[{"key": "Target", "value": 1}, {"key": "Target", "value": 2}]),
     "key 'Target' appears twice"),
    (_with(create_message(), OperationCreatedOn="yesterday"), "OperationCreatedOn: not a /Date(ms)/ value"),
    (_attr("modifiedon", date(999999999999999)), "lies outside years 1 to 9999"),
    (_attr("lastusedincampaign", date(-99999999999999)), "lies outside years 1 to 9999"),
    (_attr("numberofemployees", 2**64), "does not fit in 64 bits"),
    (_attr("revenue", typed("Money", Value=Decimal("1E+400"))), "out of range for an exact decimal"),
    (_attr("revenue", typed("Money", Value="100")), "Money without a numeric Value"),
    (_attr("revenue", typed("Money", Value=True)), "Money without a numeric Value"),
    (_attr("industrycode", typed("OptionSetValue", Value=2**40)), "a 32-bit integer"),
    (_attr("industrycode", typed("OptionSetValue", Value="7")), "a 32-bit integer"),
    (_attr("des_channels", [typed("OptionSetValue", Value=1), "x"]), "a multi-select item must be an OptionSetValue"),
    (_attr("parentaccountid", ref("nope", "account")), "Attributes['parentaccountid'].Id: not a GUID"),
    (_attr("parentaccountid", ref(PARENT, "Bad Name")), "LogicalName: not a logical name"),
    (_attr("parentaccountid", typed("EntityCollection", Entities=[])), "unsupported value type 'EntityCollection"),
    (_attr("parentaccountid", {"foo": 1}), "unsupported value type 'object without __type'"),
    (_attr("name", "SURROGATE").replace(b"SURROGATE", b"\\ud800"), "cannot be written as a notification"),
    (_attr("Name", "upper case"), "attributes.Name"),
    (_attr("id", "x"), "reserved by the destination layout"),
    (body(create_message()).replace(b"915244", b"NaN"), "NaN is not a JSON number"),
    (body(create_message())[:-40], "malformed JSON"),
    (b'{"MessageName": "Create", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}", "malformed JSON"),
    (_with(delete_message(), InputParameters=[{"key": "Target", "value": ref(PARENT, "account")}]),
     "is not the primary entity"),
    (_with(link_message("Associate"), InputParameters=[{"key": "Target", "value": ref(ACCOUNT, "account")},
                                                      {"key": "Relationship", "value": 5}]),
     "expected a Relationship"),
]


@pytest.mark.parametrize(("raw", "reason"), HOSTILE, ids=[r for _, r in HOSTILE])
def test_hostile_messages_are_unprocessable_with_a_precise_reason(raw: bytes, reason: str) -> None:
    parsed = parse_messages([(raw, properties("Create", "account"))], FakeReread())
    assert not parsed.notifications
    assert parsed.received == 1
    (u,) = parsed.unprocessable
    assert isinstance(u, Unprocessable)
    assert reason in u.reason, u.reason
    assert len(u.reason) <= 1000
    # the kept text replays: application properties and the body, as one line
    kept_body, kept_props = split_line(u.body)
    assert kept_props is not None
    assert kept_props[f"{CLAIMS}RequestName"] == "Create"
    (again,) = parse_messages([(kept_body, kept_props)], FakeReread()).unprocessable
    assert again.reason == u.reason


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=20)
    | st.sampled_from(["/Date(1)/", "/Date(9999999999999999)/", "Entity:x", "OptionSetValue:y", ACCOUNT]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["key", "value", "__type", "Value", "Id", "LogicalName", "Attributes", "Target",
                         "versionnumber", "SchemaName"]), inner, max_size=4),
    max_leaves=12,
)
MUTABLE_KEYS = ["InputParameters", "PostEntityImages", "PreEntityImages", "PrimaryEntityId", "OperationCreatedOn",
                "MessageName", "OrganizationId", "PrimaryEntityName"]


@settings(max_examples=300)
@given(key=st.sampled_from(MUTABLE_KEYS), value=JSONISH,
       template=st.sampled_from(["create", "update", "delete", "associate", "disassociate"]))
def test_mutated_messages_never_raise(key: str, value: Any, template: str) -> None:
    doc = {"create": create_message(), "update": update_message({"name": "n"}, None),
           "delete": delete_message(), "associate": link_message("Associate"),
           "disassociate": link_message("Disassociate")}[template]
    raw = body({**doc, key: value})
    for reread in (None, FakeReread(high_water=1)):
        parsed = parse_messages([raw], reread)
        outcomes = len(parsed.notifications) + len(parsed.unprocessable) + len(parsed.skipped)
        assert outcomes >= 1
        assert all(len(u.reason) <= 1000 for u in parsed.unprocessable)


# ------------------------------------------------------------------------------------ replay lines
def test_replay_lines_carry_application_properties() -> None:
    doc = truncated(create_message())
    line = json.dumps({"applicationProperties": {**properties("Create", "account"), "MessageMaxSizeExceeded": True},
                       "contentType": "application/json", "messageId": "m1", "body": doc}).encode()
    fake = FakeReread(rows={("account", ACCOUNT): contract_row("account", ACCOUNT, 3, {"name": "n"})})
    plain = json.dumps(contract_row("account", PARENT, 4, {"name": "p"})).encode()
    parsed = parse_lines([line, plain, body(delete_message(pre_version=1))], fake)
    assert [(n.recordId, n.version) for n in parsed.notifications] == [(ACCOUNT, 6), (PARENT, 8), (ACCOUNT, 3)]
    assert split_line(plain) == (plain, None)
    assert split_line(b'{"applicationProperties": 5}') == (b'{"applicationProperties": 5}', None)
    # a contract body mentioning the key stays a contract body
    sneaky = json.dumps({**contract_row("account", PARENT, 4, {"name": '"applicationProperties"'})}).encode()
    assert parse_bodies([sneaky]).notifications == parse_lines([sneaky]).notifications


def outcome(parsed: Any) -> tuple[Any, ...]:
    return (
        parsed.received,
        [(n.model_dump(), sorted(n.model_fields_set)) for n in parsed.notifications],
        [(u.body, u.reason, u.entity, u.record_id) for u in parsed.unprocessable],
        parsed.skipped,
        parsed.dataverse_messages,
    )


def general_route(lines: list[bytes]) -> Any:
    """What parse_lines gives without its shortcuts: each line split if it is a message line, then
    routed (a Dataverse message translated, a contract body parsed)."""
    return parse_messages([split_line(line) for line in lines], None)


def test_replay_shortcuts_give_what_the_general_route_gives() -> None:
    """parse_lines takes the contract's fast path alone while it accepts every line, and gives up
    at the first it does not (a Dataverse message, a message line, a body it refers): the batch then
    takes the general route whole, nothing of the abandoned attempt kept."""
    plain = [json.dumps(contract_row("account", PARENT, 4 + i, {"name": f"p{i}"})).encode() for i in range(3)]
    message = json.dumps({"applicationProperties": properties("Create", "account"), "contentType": "application/json",
                          "messageId": "m1", "body": json.loads(body(create_message()))}).encode()  # fmt: skip
    # a contract body whose schemaVersion key is escaped and that names MessageName: a contract body
    escaped = json.dumps({**contract_row("account", ACCOUNT, 9, {"name": "MessageName"}), "MessageName": 1})
    escaped = escaped.replace('"schemaVersion"', '"schema\\u0056ersion"').replace(', "MessageName": 1', "")
    bad = json.dumps(contract_row("account", ACCOUNT, 9, {"name": 5.0, "id": 1})).encode()
    for lines in (plain, [*plain, body(create_message())], [*plain, message, *plain], [*plain, bad],
                  [escaped.encode(), *plain], [*plain, b"\xef\xbb\xbf" + plain[0]]):  # fmt: skip
        assert outcome(parse_lines(list(lines))) == outcome(general_route(list(lines))), lines
    assert parse_lines([*plain, body(create_message())]).dataverse_messages == 1
    assert [n.recordId for n in parse_lines([escaped.encode()]).notifications] == [ACCOUNT]


def test_translate_to_notifications_gives_objects() -> None:
    out = translate_to_notifications(body(create_message()), properties("Create", "account"), None)
    assert [type(o).__name__ for o in out] == ["Notification"]
    out = translate_to_notifications(WEBHOOK_SAMPLE, None, None)
    assert [type(o).__name__ for o in out] == ["Unprocessable"]


def test_the_reread_source_is_the_one_of_the_messages_organization() -> None:
    """``reread_for``: looked up once per organization per batch; an organization without a source
    keeps its messages unprocessable with the reason, the others are re-read."""
    other = "0d8b2f52-7c55-4a9e-b8f6-2b1d2f0c9e11"
    fake = FakeReread(rows={("account", ACCOUNT): contract_row("account", ACCOUNT, 9, {"name": "read"})})
    asked: list[str] = []

    def reread_for(org: str) -> FakeReread | None:
        asked.append(org)
        return fake if org == ORG else None

    partial = update_message({"name": "partial"}, None)
    elsewhere = context("Update", "account", ACCOUNT, inputs=partial["InputParameters"], org=other)
    parsed = parse_messages([(body(partial), properties("Update", "account"))] * 2
                            + [(body(elsewhere), properties("Update", "account"))], reread_for=reread_for)  # fmt: skip
    assert sorted(asked) == sorted([ORG, other])  # once each
    assert [n.attributes["name"] for n in parsed.notifications if n.attributes] == ["read", "read"]
    assert fake.calls == [f"record account {ACCOUNT}"]  # one re-read of the record for the batch
    [u] = parsed.unprocessable
    assert "register a post-image on the step" in u.reason
    assert "synchronous" not in u.reason


def test_a_synchronous_steps_message_is_re_read_where_there_is_a_source() -> None:
    """A synchronous step (Mode 0) posts inside the transaction: the message may be a phantom of a
    rollback, so even a full post-image is checked at the source (gone: a delete at 2v + 1)."""
    doc = {**create_message(), "Mode": 0}
    fake = FakeReread()
    parsed = parse_messages([(body(doc), properties("Create", "account"))], fake)
    [n] = parsed.notifications
    assert n.changeType is ChangeType.DELETE
    assert n.version == m.delete_version(ALL_TYPES["versionnumber"])
    assert fake.calls == [f"record account {ACCOUNT}"]
    # without a source it is applied as it is (asynchronous steps are the supported setup)
    [n] = parse_messages([(body(doc), properties("Create", "account"))]).notifications
    assert n.changeType is ChangeType.CREATE


def test_an_unavailable_admin_store_keeps_re_reads_as_unprocessable_and_full_images_as_they_are() -> None:
    """The function app's re-read source is found through the admin store; when it cannot be reached
    the batch is held whole by the handler (docs/deploy.md), so the lookup must not raise: a full
    post-image is taken as it is, a message needing a re-read is kept with the reason."""
    def for_org(org: str) -> list[Any]:
        raise StoreUnavailable("connection refused")

    def no_client(source: Any) -> Any:
        raise AssertionError("no client is made without the store")

    rereads = ProfileRereads(for_org=for_org, engines=cast(EngineRegistry, None), cursors=cast(CursorStore, None),
                             client_for=no_client)  # fmt: skip
    full = (body(create_message()), properties("Create", "account"))
    partial = (body(update_message({"name": "partial"}, None)), properties("Update", "account"))
    parsed = parse_messages([full, partial], reread_for=rereads)
    [n] = parsed.notifications
    assert n.changeType is ChangeType.CREATE
    [u] = parsed.unprocessable
    assert "admin store is unavailable" in u.reason
    assert "connection refused" in u.reason
    assert "des replay --dataverse" in u.reason
