"""Mapping Web API rows and metadata to contract v1 (core, no I/O), on bodies from the reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contract.metadata import validate_metadata
from shared.contract.parse import parse_bodies
from shared.source.dataverse import mapping as m

pytestmark = pytest.mark.unit

ORG = "0f8fad5b-d9cb-469f-a165-70867728950e"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ACCOUNT = m.EntityInfo(
    logical_name="account", entity_set="accounts", primary_id="accountid",
    columns=("accountid", "name", "_parentaccountid_value", "revenue", "versionnumber", "modifiedon"),
    lookup_targets={"parentaccountid": ("account",)},
)  # fmt: skip

# Reference A4, the documented delta response (with versionnumber/modifiedon selected, as we always do).
DELTA = b"""{"@odata.context": "ORG/api/data/v9.0/$metadata#accounts(name,telephone1,fax)/$delta",
 "@odata.deltaLink": "ORG/api/data/v9.0/accounts?$select=name,telephone1,fax&$deltatoken=919058%2108%2f22%2f2017%2008%3a21%3a20",
 "value": [
   {"@odata.etag": "W/\\"915244\\"", "name": "Monte Orton", "telephone1": "555000", "fax": "10101",
    "accountid": "60c4e274-0d87-e711-80e5-00155db19e6d", "versionnumber": 915244,
    "modifiedon": "2017-08-22T08:21:00Z", "revenue": 20000.0000,
    "_parentaccountid_value": "2e451703-c686-e711-80e5-00155db19e6e",
    "_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account",
    "_parentaccountid_value@Microsoft.Dynamics.CRM.associatednavigationproperty": "parentaccountid",
    "industrycode": 3, "industrycode@OData.Community.Display.V1.FormattedValue": "Consulting"},
   {"@odata.context": "ORG/api/data/v9.0/$metadata#accounts/$deletedEntity",
    "id": "2e451703-c686-e711-80e5-00155db19e6d", "reason": "deleted"}]}"""  # noqa: E501


def test_delta_page_maps_rows_and_deletes() -> None:
    page = m.map_page(ACCOUNT, ORG, m.loads(DELTA), high_water=900000, change_type="update", read_at=NOW)
    assert page.rows == 2
    assert page.deleted_ids == ["2e451703-c686-e711-80e5-00155db19e6d"]
    assert page.high_water == 915244
    assert page.next_link is None
    assert page.delta_link is not None
    assert "$deltatoken=" in page.delta_link
    (n,) = page.upserts
    assert n["recordId"] == "60c4e274-0d87-e711-80e5-00155db19e6d"
    assert n["version"] == 2 * 915244
    assert n["changedOn"] == "2017-08-22T08:21:00Z"
    attrs = n["attributes"]
    assert attrs["parentaccountid"] == {"id": "2e451703-c686-e711-80e5-00155db19e6e", "logicalName": "account"}
    assert "_parentaccountid_value" not in attrs
    assert "versionnumber" not in attrs
    assert not any("@" in k for k in attrs)
    assert attrs["industrycode"] == 3  # option sets stay integers (no formatted value)
    assert attrs["revenue"] == Decimal("20000.0000")
    # the body carries the money exactly as Dataverse wrote it, and passes the contract
    body = m.encode(n)
    assert b'"revenue":20000.0000' in body
    parsed = parse_bodies([body])
    assert not parsed.unprocessable
    assert parsed.notifications[0].version == 2 * 915244


def test_money_beyond_double_precision_stays_exact_in_the_body() -> None:
    row = {"accountid": "60c4e274-0d87-e711-80e5-00155db19e6d", "versionnumber": 7,
           "modifiedon": "2026-11-30T10:00:00Z", "revenue": Decimal("922337203685477.5807")}  # fmt: skip
    body = m.encode(m.row_notification(ACCOUNT, ORG, row, change_type="create", read_at=NOW))
    assert b'"revenue":922337203685477.5807' in body
    assert json.loads(body, parse_float=Decimal)["attributes"]["revenue"] == Decimal("922337203685477.5807")


def test_lookup_without_annotation_uses_the_single_target_or_stays_a_bare_id() -> None:
    row = {"accountid": "60c4e274-0d87-e711-80e5-00155db19e6d", "versionnumber": 7,
           "_parentaccountid_value": "2e451703-c686-e711-80e5-00155db19e6e",
           "_ownerid_value": "2e451703-c686-e711-80e5-00155db19e6f"}  # fmt: skip
    attrs = m.row_attributes(ACCOUNT, row)
    assert attrs["parentaccountid"] == {"id": "2e451703-c686-e711-80e5-00155db19e6e", "logicalName": "account"}
    assert attrs["ownerid"] == "2e451703-c686-e711-80e5-00155db19e6f"  # owner: team or user, unknown here
    assert m.row_attributes(ACCOUNT, {"_parentaccountid_value": None})["parentaccountid"] is None


def test_rows_missing_id_or_version_become_unprocessable_not_dropped() -> None:
    n1 = m.row_notification(ACCOUNT, ORG, {"name": "x", "versionnumber": 1}, change_type="update", read_at=NOW)
    n2 = m.row_notification(ACCOUNT, ORG, {"accountid": "60c4e274-0d87-e711-80e5-00155db19e6d"},
                            change_type="update", read_at=NOW)  # fmt: skip
    parsed = parse_bodies([m.encode(n1), m.encode(n2)])
    assert len(parsed.unprocessable) == 2
    assert "recordId" in parsed.unprocessable[0].reason
    assert "version" in parsed.unprocessable[1].reason


def test_intersect_rows_without_modifiedon_use_the_read_time() -> None:
    info = m.EntityInfo("accountleads", "accountleadscollection", "accountleadid", ("accountleadid", "versionnumber"))
    n = m.row_notification(info, ORG, {"accountleadid": "60c4e274-0d87-e711-80e5-00155db19e6d", "versionnumber": 3},
                           change_type="create", read_at=NOW)  # fmt: skip
    assert n["changedOn"] == "2026-11-30T12:00:00Z"


def test_versions_order_rows_and_deletes() -> None:
    # rows are even, deletes odd: 2v < 2H+1 < 2R whenever v <= H < R
    assert m.row_version(10) == 20
    assert m.delete_version(10) == 21
    assert m.row_version(10) < m.delete_version(10) < m.row_version(11)
    assert m.versionnumber_of(m.delete_version(10)) == 10
    too_big = m.row_notification(ACCOUNT, ORG, {"accountid": "60c4e274-0d87-e711-80e5-00155db19e6d",
                                                "versionnumber": m.MAX_VERSIONNUMBER + 1},
                                 change_type="create", read_at=NOW)  # fmt: skip
    assert parse_bodies([m.encode(too_big)]).unprocessable


def test_expired_token_detection() -> None:
    body = {"error": {"code": "0x80044352", "message": "Version stamp associated with the client has expired."}}
    assert m.is_expired_token(400, body)
    assert not m.is_expired_token(400, {"error": {"code": "0x80072322", "message": "throttled"}})
    assert not m.is_expired_token(200, {"value": []})


def test_entity_metadata_from_definitions_and_casts() -> None:
    labels = {"LocalizedLabels": [{"Label": "Accounting", "LanguageCode": 1033}, {"Label": "Comptabilité",
              "LanguageCode": 1036}], "UserLocalizedLabel": {"Label": "Accounting", "LanguageCode": 1033}}  # fmt: skip
    definition = {"LogicalName": "account", "EntitySetName": "accounts", "PrimaryIdAttribute": "accountid",
                  "PrimaryNameAttribute": "name", "ChangeTrackingEnabled": True, "IsIntersect": False,
                  "MetadataId": "70816501-edb9-4740-a16c-6a5efbc05d84"}  # fmt: skip

    def attr(name: str, kind: str, type_name: str | None = None, **kw: object) -> dict[str, object]:
        return {"LogicalName": name, "AttributeType": kind, "AttributeTypeName": {"Value": type_name or kind + "Type"},
                "AttributeOf": None, "IsValidForRead": True, **kw}  # fmt: skip

    attributes = [
        attr("accountid", "Uniqueidentifier"), attr("name", "String"), attr("revenue", "Money"),
        attr("revenue_base", "Money"), attr("industrycode", "Picklist"), attr("statecode", "State"),
        attr("statuscode", "Status"), attr("primarycontactid", "Lookup"), attr("ownerid", "Owner"),
        attr("owneridtype", "EntityName", AttributeOf="ownerid"), attr("regardingobjectid", "Lookup"),
        attr("new_tags", "Virtual", "MultiSelectPicklistType"), attr("entityimage", "Virtual", "ImageType"),
        attr("donotemail", "Boolean"), attr("versionnumber", "BigInt"), attr("modifiedon", "DateTime"),
        attr("secret", "String", IsValidForRead=False),
    ]  # fmt: skip
    casts = {
        "String": [{"LogicalName": "name", "MaxLength": 160}, {"LogicalName": "secret", "MaxLength": 10}],
        "Money": [{"LogicalName": "revenue", "Precision": 4}, {"LogicalName": "revenue_base", "Precision": 4}],
        "Picklist": [{"LogicalName": "industrycode", "OptionSet": {"Name": "account_industrycode", "IsGlobal": False,
                      "Options": [{"Value": 1, "Label": labels}]}, "GlobalOptionSet": None}],
        "MultiSelectPicklist": [{"LogicalName": "new_tags", "OptionSet": None, "GlobalOptionSet": {
            "Name": "new_tags_global", "IsGlobal": True, "Options": [{"Value": 100, "Label": labels}]}}],
        "State": [{"LogicalName": "statecode", "OptionSet": {"Name": "account_statecode", "Options": [
            {"Value": 0, "Label": labels, "DefaultStatus": 1}]}}],
        "Status": [{"LogicalName": "statuscode", "OptionSet": {"Name": "account_statuscode", "Options": [
            {"Value": 1, "State": 0, "Label": labels}]}}],
        "Boolean": [{"LogicalName": "donotemail", "OptionSet": {"Name": "account_donotemail",
                     "TrueOption": {"Value": 1, "Label": labels}, "FalseOption": {"Value": 0, "Label": labels}}}],
        "Lookup": [{"LogicalName": "primarycontactid", "Targets": ["contact"]},
                   {"LogicalName": "ownerid", "Targets": ["systemuser", "team"]},
                   {"LogicalName": "regardingobjectid", "Targets": ["email", "account"]}],
    }  # fmt: skip
    info, note = m.entity_metadata(definition, attributes, casts, organization_id=ORG, version=5, changed_on=NOW)
    assert info.entity_set == "accounts"
    assert info.primary_id == "accountid"
    assert info.change_tracking
    assert info.columns == (
        "accountid", "name", "revenue", "revenue_base", "industrycode", "statecode", "statuscode",
        "_primarycontactid_value", "_ownerid_value", "_regardingobjectid_value", "new_tags", "donotemail",
        "versionnumber", "modifiedon",
    )  # fmt: skip
    assert info.lookup_targets["ownerid"] == ("systemuser", "team")
    parsed = validate_metadata(note)
    assert not isinstance(parsed, str), parsed
    by = {a.logicalName: a for a in parsed.metadata.attributes}
    assert by["name"].maxLength == 160
    assert by["revenue"].precision == 4
    assert by["new_tags"].type.value == "MultiSelectPicklist"
    assert by["new_tags"].optionSet.isGlobal
    assert by["entityimage"].type.value == "Image"
    assert by["statuscode"].optionSet.options[0].state == 0  # type: ignore[union-attr]
    assert [o.value for o in by["donotemail"].optionSet.options] == [0, 1]  # type: ignore[union-attr]
    assert by["regardingobjectid"].target_keys() == [("email", "activityid"), ("account", "accountid")]
    labels_out = by["industrycode"].optionSet.options[0].labels  # type: ignore[union-attr]
    assert {(lb.languageCode, lb.isUserLocalizedLabel) for lb in labels_out} == {(1033, False), (1036, False),
                                                                                 (1033, True)}  # fmt: skip


def test_decimal_encoding_refuses_non_finite() -> None:
    with pytest.raises(ValueError, match="not a JSON number"):
        m.encode({"x": Decimal("NaN")})


VN = st.integers(min_value=0, max_value=m.MAX_VERSIONNUMBER - 1)


@given(high_water=VN, held_vn=st.one_of(st.none(), VN), odd=st.booleans(), later=st.integers(min_value=1, max_value=10))
def test_a_delete_is_newer_than_what_the_destination_holds_and_older_than_a_recreation(
    high_water: int, held_vn: int | None, odd: bool, later: int
) -> None:
    """docs/dataverse.md, "Versions": with ``held`` (a row 2v, or a tombstone 2v+1) folded into H, the
    delete beats every version the destination holds and every version read before, and every
    versionnumber assigned after (above both marks) re-creates the record over it."""
    held = None if held_vn is None else 2 * held_vn + (1 if odd else 0)
    mark = m.delete_mark(high_water, held)
    version = m.delete_version(mark)
    assert version % 2 == 1
    assert version > m.row_version(high_water)
    if held is not None:
        assert version > held
    newest_before = max(high_water, held_vn if held_vn is not None else 0)
    recreated = newest_before + later  # a write after the delete was established
    if recreated <= m.MAX_VERSIONNUMBER and not (odd and held_vn is not None and held_vn >= high_water):
        assert m.row_version(recreated) > version
    assert m.delete_mark(high_water, None) == high_water
