"""A Dataverse Web API test double (in memory, served through ``httpx.MockTransport``).

Named as a double: it is not the simulator (``shared/tools/dataverse_sim``, helper dv-sim) and it
follows ``../shared/reference/dataverse.md``, not our client: change tracking pages (``nextLink``
until ``deltaLink`` on the last page), delta responses (new/updated rows by version, then
``$deletedEntity`` entries), ``0x80044352`` for expired tokens, 429 with ``Retry-After`` and the
standard error envelope, 5xx, lookups as ``_x_value`` with the ``lookuplogicalname`` annotation only
when requested, money as JSON numbers with four decimals, the metadata endpoints with casts, and
``$filter``/``$orderby``/``$expand``/``$top`` refused with track-changes.

Every page is computed live when it is requested (no snapshot), the adversarial reading of the
unverified paging semantics. ``versionnumber`` is one counter for the organization (SQL rowversion),
so every write gets a number above all earlier ones; a delete consumes none.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

_DEFINITIONS = r"EntityDefinitions\(LogicalName='([a-z_0-9]+)'\)(/Attributes/Microsoft\.Dynamics\.CRM\.(\w+))?"
ORG_URL = "https://double.crm.dynamics.com"
API = ORG_URL + "/api/data/v9.2/"
ORG_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@dataclass
class EntityDef:
    logical: str
    entity_set: str
    primary_id: str
    # attribute -> (AttributeType, extra cast properties)
    attributes: dict[str, tuple[str, dict[str, Any]]]
    change_tracking: bool = True
    is_intersect: bool = False


def crm_entities() -> dict[str, EntityDef]:
    """account, contact (lookup to account, money, option set) and an activity (email: activityid)."""
    labels = {"LocalizedLabels": [{"Label": "Active", "LanguageCode": 1033}],
              "UserLocalizedLabel": {"Label": "Active", "LanguageCode": 1033}}  # fmt: skip
    common = {
        "modifiedon": ("DateTime", {}),
        "versionnumber": ("BigInt", {}),
        "statecode": ("State", {"OptionSet": {"Name": "x_statecode", "IsGlobal": False, "OptionSetType": "State",
                                              "Options": [{"Value": 0, "Label": labels}]}}),
    }  # fmt: skip
    return {
        "account": EntityDef("account", "accounts", "accountid", {
            "accountid": ("Uniqueidentifier", {}),
            "name": ("String", {"MaxLength": 160}),
            "revenue": ("Money", {"Precision": 4}),
            "industrycode": ("Picklist", {"OptionSet": {"Name": "account_industrycode", "IsGlobal": False,
                                                        "Options": [{"Value": 1, "Label": labels},
                                                                    {"Value": 2, "Label": labels}]}}),
            "parentaccountid": ("Lookup", {"Targets": ["account"]}),
            **common,
        }),
        "contact": EntityDef("contact", "contacts", "contactid", {
            "contactid": ("Uniqueidentifier", {}),
            "fullname": ("String", {"MaxLength": 160}),
            "parentcustomerid": ("Customer", {"Targets": ["account", "contact"]}),
            "creditlimit": ("Money", {"Precision": 4}),
            "donotemail": ("Boolean", {}),
            **common,
        }),
        "email": EntityDef("email", "emails", "activityid", {
            "activityid": ("Uniqueidentifier", {}),
            "subject": ("String", {"MaxLength": 200}),
            "regardingobjectid": ("Lookup", {"Targets": ["account", "contact"]}),
            **common,
        }),
    }  # fmt: skip


def _dumps(value: Any) -> bytes:
    """JSON with Decimals as numbers exactly as given (money as Dataverse writes it: 20000.0000)."""
    marks: dict[str, str] = {}

    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            key = f"@@dec{len(marks)}@@"
            marks[key] = str(o)
            return key
        raise TypeError(type(o).__name__)

    text = json.dumps(value, default=default, ensure_ascii=False)
    for key, number in marks.items():
        text = text.replace(f'"{key}"', number)
    return text.encode()


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=_dumps({"error": {"code": code, "message": message}}), headers=headers)


@dataclass
class DataverseDouble:
    entities: dict[str, EntityDef] = field(default_factory=crm_entities)
    counter: int = 1000  # the organization's rowversion counter
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # entity -> id -> row (with lookups)
    deleted: dict[str, dict[str, int]] = field(default_factory=dict)  # entity -> id -> counter at delete
    expired_before: int = 0  # delta tokens below this are expired (0x80044352)
    throttle_next: int = 0  # the next N requests get 429
    retry_after: str = "0"
    fail_next: int = 0  # the next N requests get 503
    requests: list[httpx.Request] = field(default_factory=list)
    on_request: Callable[[httpx.Request], None] | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        for e in self.entities:
            self.rows.setdefault(e, {})
            self.deleted.setdefault(e, {})

    # ------------------------------------------------------------------------------- writes
    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def upsert(self, entity: str, record_id: str | None = None, **values: Any) -> str:
        """Create (or, for an existing id, update) a record; values by attribute name (lookups: (entity, id))."""
        with self._lock:
            rid = (record_id or str(uuid.uuid4())).lower()
            d = self.entities[entity]
            row = dict(self.rows[entity].get(rid, {}))
            row.update(values)
            row[d.primary_id] = rid
            row["versionnumber"] = self._next()
            row["modifiedon"] = f"2026-11-30T10:{(self.counter // 60) % 60:02d}:{self.counter % 60:02d}Z"
            row.setdefault("statecode", 0)
            self.rows[entity][rid] = row
            self.deleted[entity].pop(rid, None)
            return rid

    def delete(self, entity: str, record_id: str) -> None:
        with self._lock:
            if self.rows[entity].pop(record_id.lower(), None) is not None:
                # the change-tracking position of the delete (rowversion itself does not move)
                self.deleted[entity][record_id.lower()] = self.counter

    def expire_tokens(self) -> None:
        """Every delta token issued so far expires (retention passed, or metadata changed)."""
        with self._lock:
            self.expired_before = self.counter + 1

    # ------------------------------------------------------------------------------- reads
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            if self.on_request is not None:
                self.on_request(request)
            if not request.headers.get("Authorization", "").startswith("Bearer "):
                return error(401, "0x80072560", "The user is not authenticated")
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return error(429, "0x80072322", "Number of requests exceeded the limit of 6000 over time window "
                             "of 300 seconds.", {"Retry-After": self.retry_after})  # fmt: skip
            if self.fail_next > 0:
                self.fail_next -= 1
                return error(503, "0x80040216", "An unexpected error occurred.")
            return self._route(request)

    def _route(self, request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        path = unquote(url.path)
        if not path.startswith("/api/data/v9.2/"):
            return error(404, "0x80060888", "Resource not found")
        tail = path[len("/api/data/v9.2/") :]
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        prefer = request.headers.get("Prefer", "")
        if tail == "WhoAmI":
            return httpx.Response(200, content=_dumps({"OrganizationId": ORG_ID, "UserId": str(uuid.uuid4())}))
        m = re.fullmatch(_DEFINITIONS, tail)
        if m:
            return self._metadata(m.group(1), m.group(3), q)
        m = re.fullmatch(r"([a-z_0-9]+)\(([0-9a-fA-F-]{36})\)", tail)
        if m:
            return self._by_id(m.group(1), m.group(2).lower(), q, prefer)
        d = next((e for e in self.entities.values() if e.entity_set == tail), None)
        if d is None:
            return error(404, "0x80060888", f"Resource not found for the segment '{tail}'.")
        for option in ("$filter", "$orderby", "$expand", "$top"):
            if option in q and ("odata.track-changes" in prefer or "$deltatoken" in q):
                text = f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.'
                return error(400, "0x80060888", text)
        size = 5000
        sm = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        if sm:
            size = min(5000, int(sm.group(1)))
        annotate = "lookuplogicalname" in prefer or 'include-annotations="*"' in prefer
        select = q.get("$select")
        if "$deltatoken" in q:
            return self._delta(d, q, size, annotate, select)
        if "odata.track-changes" not in prefer and "$skiptoken" not in q:
            return error(400, "0x80060888", "this double serves entity sets with change tracking only")
        return self._full(d, q, size, annotate, select)

    def _row(self, d: EntityDef, row: dict[str, Any], annotate: bool, select: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        wanted = set(select.split(",")) if select else None
        for attr, (kind, _) in d.attributes.items():
            if kind in ("Lookup", "Customer", "Owner"):
                key = f"_{attr}_value"
                if wanted is not None and key not in wanted:
                    continue
                ref = row.get(attr)
                out[key] = ref[1] if ref else None
                if annotate and ref:
                    out[key + "@Microsoft.Dynamics.CRM.lookuplogicalname"] = ref[0]
            elif wanted is None or attr in wanted or attr == d.primary_id:
                out[attr] = row.get(attr)
        return out

    def _link(self, d: EntityDef, select: str | None, **params: Any) -> str:
        query = "&".join([f"$select={select}"] if select else []) + "".join(f"&{k}={v}" for k, v in params.items())
        return f"{API}{d.entity_set}?{query.lstrip('&')}"

    def _full(self, d: EntityDef, q: dict[str, str], size: int, annotate: bool, select: str | None) -> httpx.Response:
        # The delta token of a full load is the counter when it started, so changes during the load
        # come again in the next delta.
        start = int(q.get("$start", self.counter))
        after = q.get("$skiptoken", "")
        ids = sorted(i for i in self.rows[d.logical] if i > after)
        page = ids[:size]
        body: dict[str, Any] = {
            "@odata.context": f"{API}$metadata#{d.entity_set}({select or ''})",
            "value": [self._row(d, self.rows[d.logical][i], annotate, select) for i in page],
        }
        if len(ids) > size:
            body["@odata.nextLink"] = self._link(d, select, **{"$skiptoken": page[-1], "$start": start})
        else:
            body["@odata.deltaLink"] = self._link(d, select, **{"$deltatoken": f"{start}!11/30/2026"})
        return httpx.Response(200, content=_dumps(body), headers={"Preference-Applied": "odata.track-changes"})

    def _delta(self, d: EntityDef, q: dict[str, str], size: int, annotate: bool, select: str | None) -> httpx.Response:
        token = int(q["$deltatoken"].split("!")[0])
        if token < self.expired_before:
            return error(400, "0x80044352", "Version stamp associated with the client has expired. "
                         "Please perform a full sync.")  # fmt: skip
        start = int(q.get("$start", self.counter))
        # keyset over (kind, position): upserts by version, then deletes by position, then id
        after = q.get("$skiptoken")
        items: list[tuple[int, int, str]] = sorted(
            [(0, r["versionnumber"], i) for i, r in self.rows[d.logical].items() if r["versionnumber"] > token]
            + [(1, v, i) for i, v in self.deleted[d.logical].items() if v >= token]
        )
        if after:
            k, v, i = after.split(".")
            items = [it for it in items if it > (int(k), int(v), i)]
        page = items[:size]
        value: list[dict[str, Any]] = []
        for kind, _, rid in page:
            if kind == 0:
                value.append(self._row(d, self.rows[d.logical][rid], annotate, select))
            else:
                value.append({"@odata.context": f"{API}$metadata#{d.entity_set}/$deletedEntity", "id": rid,
                              "reason": "deleted"})  # fmt: skip
        body: dict[str, Any] = {"@odata.context": f"{API}$metadata#{d.entity_set}({select or ''})/$delta",
                                "value": value}  # fmt: skip
        if len(items) > size:
            last = page[-1]
            body["@odata.nextLink"] = self._link(
                d, select, **{"$deltatoken": q["$deltatoken"], "$skiptoken": f"{last[0]}.{last[1]}.{last[2]}",
                              "$start": start})  # fmt: skip
        else:
            body["@odata.deltaLink"] = self._link(d, select, **{"$deltatoken": f"{start}!11/30/2026"})
        return httpx.Response(200, content=_dumps(body))

    def _by_id(self, entity_set: str, rid: str, q: dict[str, str], prefer: str) -> httpx.Response:
        d = next((e for e in self.entities.values() if e.entity_set == entity_set), None)
        if d is None or rid not in self.rows[d.logical]:
            return error(404, "0x80040217", f"Entity with id = {rid} Does Not Exist")
        return httpx.Response(
            200,
            content=_dumps(self._row(d, self.rows[d.logical][rid], "lookuplogicalname" in prefer, q.get("$select"))),
        )

    def _metadata(self, logical: str, cast: str | None, q: dict[str, str]) -> httpx.Response:
        d = self.entities.get(logical)
        if d is None:
            return error(404, "0x80040217", f"Could not find an entity with name {logical}")
        if cast is None and "$expand" not in q:
            return httpx.Response(200, content=_dumps({
                "LogicalName": logical, "SchemaName": logical.title(), "EntitySetName": d.entity_set,
                "PrimaryIdAttribute": d.primary_id, "PrimaryNameAttribute": None, "ObjectTypeCode": 1,
                "ChangeTrackingEnabled": d.change_tracking, "IsIntersect": d.is_intersect,
                "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, logical)),
            }))  # fmt: skip
        if cast is None:
            attrs = [{"LogicalName": a, "SchemaName": a, "AttributeType": kind,
                      "AttributeTypeName": {"Value": f"{kind}Type"}, "AttributeOf": None,
                      "IsValidForRead": True, "IsPrimaryId": a == d.primary_id}
                     for a, (kind, _) in d.attributes.items()]  # fmt: skip
            return httpx.Response(200, content=_dumps({"LogicalName": logical, "Attributes": attrs}))
        kinds = {"LookupAttributeMetadata": ("Lookup", "Customer", "Owner")}.get(cast, (cast.removesuffix(
            "AttributeMetadata"),))  # fmt: skip
        value = [{"LogicalName": a, **extra} for a, (kind, extra) in d.attributes.items() if kind in kinds]
        return httpx.Response(200, content=_dumps({"value": value}))

    # ------------------------------------------------------------------------------- truth
    def truth(self, entity: str) -> dict[str, dict[str, Any]]:
        """The live records of an entity, as the destination should hold them (id -> attribute values)."""
        return {rid: dict(row) for rid, row in self.rows[entity].items()}
