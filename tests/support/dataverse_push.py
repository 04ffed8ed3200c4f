"""Builders for Dataverse push tests: RemoteExecutionContext messages in the captured shape of the
reference (``../shared/reference/dataverse.md`` C4-C6), and :class:`FakeReread`, an in-memory fake of
the :class:`~shared.source.dataverse.push.Reread` port (named as a fake: unit tests only; the real
port is tested against the Dataverse simulator)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared.source.dataverse import mapping as m
from shared.source.dataverse.push import CLAIMS, EntityRef, RereadRefused

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ORG = "4ef5b371-1a6c-4b56-a1f4-3cb0d1e2f3a4"
USER = "75c2dd85-9e9f-e711-8122-000d3aa2331c"
ACCOUNT = "6d81597f-0f9f-e711-8122-000d3aa2331c"
CONTACT = "1a2b3c4d-0f9f-e711-8122-000d3aa2331c"
PARENT = "2e451703-c686-e711-80e5-00155db19e6d"
WHEN_MS = 1506409448000  # 2017-09-26T07:04:08Z


def typed(kind: str, **members: Any) -> dict[str, Any]:
    return {"__type": f"{kind}:{CONTRACTS}", **members}


def kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def ref(rid: str, logical: str, *, is_typed: bool = True) -> dict[str, Any]:
    members: dict[str, Any] = {"Id": rid, "KeyAttributes": [], "LogicalName": logical, "Name": None,
                               "RowVersion": None}
    return typed("EntityReference", **members) if is_typed else members


def date(ms: int, offset: str = "") -> str:
    return f"/Date({ms}{offset})/"


def entity(logical: str, rid: str, attrs: dict[str, Any], *, is_typed: bool = True) -> dict[str, Any]:
    members = {"Attributes": [kv(k, v) for k, v in attrs.items()], "EntityState": None, "FormattedValues": [],
               "Id": rid, "KeyAttributes": [], "LogicalName": logical, "RelatedEntities": [], "RowVersion": None}
    return typed("Entity", **members) if is_typed else members


def context(
    message: str,
    logical: str,
    rid: str,
    *,
    inputs: list[dict[str, Any]],
    post: dict[str, dict[str, Any]] | None = None,
    pre: dict[str, dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    when_ms: int = WHEN_MS,
    org: str = ORG,
) -> dict[str, Any]:
    """The webhook sample of reference C5 (PostOperation, asynchronous), fields in its order."""
    return {
        "BusinessUnitId": "e2b9dd85-9e9f-e711-8122-000d3aa2331c",
        "CorrelationId": "b374239d-4233-41a9-8b17-a3ffd3f3b4e0",
        "Depth": 1, "InitiatingUserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
        "InitiatingUserId": USER, "InputParameters": inputs, "IsExecutingOffline": False, "IsInTransaction": False,
        "IsOfflinePlayback": False, "IsolationMode": 1, "MessageName": message, "Mode": 1,
        "OperationCreatedOn": date(when_ms, "-0700"), "OperationId": "4af10637-4ea2-e711-8122-000d3aa2331c",
        "OrganizationId": org, "OrganizationName": "OrgName", "OutputParameters": outputs or [],
        "OwningExtension": {"Id": "75417616-4ea2-e711-8122-000d3aa2331c", "KeyAttributes": [],
                            "LogicalName": "sdkmessageprocessingstep", "Name": None, "RowVersion": None},
        "ParentContext": None,
        "PostEntityImages": [kv(k, entity(logical, rid, v, is_typed=False)) for k, v in (post or {}).items()],
        "PreEntityImages": [kv(k, entity(logical, rid, v, is_typed=False)) for k, v in (pre or {}).items()],
        "PrimaryEntityId": rid, "PrimaryEntityName": logical, "RequestId": None, "SecondaryEntityName": "none",
        "SharedVariables": [], "Stage": 40, "UserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
        "UserId": USER,
    }  # fmt: skip


def properties(message: str, logical: str, **extra: object) -> dict[str, object]:
    return {
        f"{CLAIMS}Organization": "https://org.crm.dynamics.com", f"{CLAIMS}User": USER,
        f"{CLAIMS}InitiatingUser": USER, f"{CLAIMS}EntityLogicalName": logical, f"{CLAIMS}RequestName": message,
        f"{CLAIMS}InitiatingUserAgent": "Mozilla/5.0", **extra,
    }  # fmt: skip


def body(doc: dict[str, Any], *, escape_slashes: bool = True, bom: bool = False) -> bytes:
    """As DataContractJsonSerializer writes it: ``/`` as ``\\/``; money exact (via mapping.encode)."""
    text = m.encode(doc).decode("utf-8")
    if escape_slashes:
        text = text.replace("/", "\\/")
    raw = text.encode("utf-8")
    return b"\xef\xbb\xbf" + raw if bom else raw


# ------------------------------------------------------------------------------------ captured shapes
ALL_TYPES: dict[str, Any] = {
    "accountid": ACCOUNT,
    "name": "Contoso \u00e9\u4e2d / \"quoted\"",
    "numberofemployees": 321,
    "versionnumber": 915244,
    "exchangerate": Decimal("1.0000000000"),
    "des_score": Decimal("10.12"),
    "creditonhold": False,
    "industrycode": typed("OptionSetValue", Value=7),
    "statecode": typed("OptionSetValue", Value=0),
    "statuscode": typed("OptionSetValue", Value=1),
    "des_channels": [typed("OptionSetValue", Value=1), typed("OptionSetValue", Value=3)],
    "revenue": typed("Money", Value=Decimal("12345678901.1234")),
    "creditlimit": typed("Money", Value=100),
    "parentaccountid": ref(PARENT, "account"),
    "ownerid": ref(USER, "systemuser"),
    "lastusedincampaign": date(1697526000000),
    "des_founded": date(1697500800000, "+0000"),
    "modifiedon": date(1506384247000),
    "description": None,
}


def create_message(attrs: dict[str, Any] | None = None, *, post_image: bool = True) -> dict[str, Any]:
    values = dict(ALL_TYPES if attrs is None else attrs)
    target = {k: v for k, v in values.items() if k != "versionnumber"}
    return context(
        "Create", "account", ACCOUNT, inputs=[kv("Target", entity("account", ACCOUNT, target))],
        post={"PostImage": values} if post_image else None, outputs=[kv("id", ACCOUNT)],
    )  # fmt: skip


def update_message(changed: dict[str, Any], image: dict[str, Any] | None, *, automatic: bool = True) -> dict[str, Any]:
    post: dict[str, dict[str, Any]] = {}
    if automatic:  # an async step's automatic image: primary name and id only
        post["AsynchronousStepPrimaryName"] = {"name": changed.get("name", "x"), "accountid": ACCOUNT}
    if image is not None:
        post["PostImage"] = image
    target = {**changed, "accountid": ACCOUNT, "modifiedon": date(1506384247000), "modifiedby": ref(USER, "systemuser")}
    return context("Update", "account", ACCOUNT, inputs=[kv("Target", entity("account", ACCOUNT, target))], post=post)


def delete_message(rid: str = ACCOUNT, *, pre_version: int | None = None) -> dict[str, Any]:
    pre = {"PreImage": {"accountid": rid, "versionnumber": pre_version}} if pre_version is not None else None
    return context("Delete", "account", rid, inputs=[kv("Target", ref(rid, "account"))], pre=pre)


def link_message(message: str, *, related_typed: bool = False) -> dict[str, Any]:
    return context(message, "account", ACCOUNT, inputs=[
        kv("Target", ref(ACCOUNT, "account")),
        kv("Relationship", typed("Relationship", PrimaryEntityRole=None, SchemaName="des_account_contact")),
        kv("RelatedEntities", [ref(CONTACT, "contact", is_typed=related_typed)]),
    ])  # fmt: skip


def truncated(doc: dict[str, Any]) -> dict[str, Any]:
    """Reference C3: over 192 KB, ParentContext, InputParameters and the images are dropped."""
    return {k: v for k, v in doc.items() if k not in {"ParentContext", "InputParameters", "PreEntityImages",
                                                      "PostEntityImages"}}


def contract_row(entity: str, rid: str, vn: int, attrs: dict[str, Any], *, org: str = ORG) -> dict[str, Any]:
    """A full-state notification as the change-tracking source maps a row (version 2 * versionnumber)."""
    return {"schemaVersion": 1, "organizationId": org, "entity": entity, "recordId": rid, "changeType": "update",
            "version": m.row_version(vn), "changedOn": "2026-11-30T12:00:00Z", "attributes": attrs}


# ------------------------------------------------------------------------------------ the fake
@dataclass
class FakeReread:
    """In-memory fake of the Reread port: the source's current rows, as the change-tracking source maps them."""

    exported: dict[str, frozenset[str]] = field(default_factory=dict)
    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    links: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (rel, id1, id2) -> row
    gone_links: dict[tuple[str, str, str], list[tuple[str, int]]] = field(default_factory=dict)
    high_water: int = 0
    refuse: str | None = None
    calls: list[str] = field(default_factory=list)

    def columns(self, entity: str) -> frozenset[str] | None:
        return self.exported.get(entity)

    def record(self, entity: str, record_id: str) -> dict[str, Any] | None:
        self.calls.append(f"record {entity} {record_id}")
        if self.refuse:
            raise RereadRefused(self.refuse)
        row = self.rows.get((entity, record_id))
        return json.loads(json.dumps(row, default=str)) if row is not None else None

    def deleted(self, entity: str, record_id: str) -> dict[str, Any]:
        self.calls.append(f"deleted {entity} {record_id}")
        current = self.record(entity, record_id)
        if current is not None:
            return current
        return {"schemaVersion": 1, "organizationId": ORG, "entity": entity, "recordId": record_id,
                "changeType": "delete", "version": m.delete_version(self.high_water),
                "changedOn": "2026-11-30T12:00:00Z"}

    def link(self, relationship: str, one: EntityRef, other: EntityRef) -> dict[str, Any] | None:
        self.calls.append(f"link {relationship} {one.id} {other.id}")
        return self.links.get((relationship, one.id, other.id))

    def unlinked(self, relationship: str, one: EntityRef, other: EntityRef) -> list[dict[str, Any]]:
        self.calls.append(f"unlinked {relationship} {one.id} {other.id}")
        current = self.links.get((relationship, one.id, other.id))
        if current is not None:
            return [current]
        return [
            {"schemaVersion": 1, "organizationId": ORG, "entity": relationship, "recordId": rid, "changeType": "delete",
             "version": m.delete_version(max(self.high_water, m.versionnumber_of(v))),
             "changedOn": "2026-11-30T12:00:00Z"}
            for rid, v in self.gone_links.get((relationship, one.id, other.id), [])
        ]  # fmt: skip

    def links_of(self, record: EntityRef) -> list[dict[str, Any]]:
        self.calls.append(f"links_of {record.logical_name} {record.id}")
        rows = [row for (_, one, other), row in self.links.items() if record.id in (one, other)]
        for rel, one, other in self.gone_links:
            if record.id in (one, other):
                rows.extend(self.unlinked(rel, EntityRef(one, ""), EntityRef(other, "")))
        return rows
