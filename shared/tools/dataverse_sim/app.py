"""The simulator's HTTP face: a FastAPI app serving ``<any base>/api/data/v9.x/...`` and ``/_sim/...``.

Web API requests go: bearer token check (401) -> service protection and injected faults (429, 5xx)
-> the route. Errors use the Web API envelope ``{"error": {"code", "message"}}``. Control endpoints
under ``/_sim/`` need no token and never count as requests.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import Response

from shared.tools.dataverse_sim import metadata
from shared.tools.dataverse_sim.odata import PageCookie, Prefer, RowWriter, row_json, select_attributes
from shared.tools.dataverse_sim.query import matches, parse_filter
from shared.tools.dataverse_sim.schema import AttributeDef, EntityDef, metadata_id
from shared.tools.dataverse_sim.simulator import DataverseSimulator
from shared.tools.dataverse_sim.state import Values
from shared.tools.dataverse_sim.values import Ref, SimError, dumps, loads, normalize_guid

log = logging.getLogger(__name__)
JSON = "application/json; odata.metadata=minimal"
TRACKING_REJECTED = ("$filter", "$orderby", "$expand", "$top")
_API = re.compile(r"^(?P<base>.*?)/api/data/(?P<version>v\d+\.\d+)(?:/(?P<rest>.*))?$")
_KEYED = re.compile(r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?:[a-z_]+=)?(?P<id>[^)]+)\)(?P<tail>/.*)?$")
_BIND_TARGET = re.compile(r"(?:^|/)(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<id>[^)]+)\)$")


def _response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    all_headers = {"OData-Version": "4.0", **(headers or {})}
    if body is None:
        return Response(status_code=status, headers=all_headers)
    return Response(content=dumps(body).encode(), status_code=status, media_type=JSON, headers=all_headers)


def _error(exc: SimError, sim: DataverseSimulator) -> Response:
    if exc.status == 401 and sim.switches.unauthorized_body == "empty":
        return Response(status_code=401, headers={"OData-Version": "4.0", **exc.headers})
    return _response(exc.status, exc.body(), exc.headers)


class _Ctx:
    """One Web API request."""

    def __init__(self, sim: DataverseSimulator, request: Request, api: str, rest: str, body: bytes) -> None:
        self.sim = sim
        self.state = sim.state
        self.request = request
        self.api = api
        self.rest = rest
        self.body = body
        self.query = dict(request.query_params)
        self.prefer = Prefer.parse(request.headers.get("prefer"))


def create_app(sim: DataverseSimulator) -> FastAPI:
    app = FastAPI(title="Dataverse Web API simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.simulator = sim

    @app.api_route("/_sim/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
    async def control(path: str, request: Request) -> Response:
        try:
            return _control(sim, path, request.method, await request.body(), dict(request.query_params))
        except SimError as exc:
            return _error(exc, sim)
        except (KeyError, ValueError, TypeError) as exc:
            return _response(400, {"error": {"code": "sim", "message": str(exc)}})

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def web_api(path: str, request: Request) -> Response:
        m = _API.match("/" + path)
        if m is None:
            return _response(404, {"error": {"code": "0x80060888",
                                             "message": f"Resource not found: '/{path}' (the Web API is under "
                                                        f"<base>/api/data/v9.2/)."}})
        url = urlsplit(str(request.url))
        api = f"{url.scheme}://{url.netloc}{m.group('base')}/api/data/{m.group('version')}/"
        body = await request.body()
        admitted = False
        try:
            token = sim.check_auth(request.headers.get("authorization"))
            sim.admit(token)
            admitted = True
            if sim.faults.latency_seconds:
                await asyncio.sleep(sim.faults.latency_seconds)
            ctx = _Ctx(sim, request, api, unquote(m.group("rest") or ""), body)
            with sim.state.lock:
                return _route(ctx)
        except SimError as exc:
            return _error(exc, sim)
        except Exception:
            log.exception("dataverse simulator: unexpected error on %s %s", request.method, path)
            return _response(500, {"error": {"code": "0x80040216", "message": "Unexpected error in the Dataverse "
                                                                             "simulator (see its log)."}})
        finally:
            if admitted:
                sim.release()

    return app


# ---------------------------------------------------------------------------------------- routing
def _route(ctx: _Ctx) -> Response:
    rest, method = ctx.rest.rstrip("/"), ctx.request.method
    if rest in {"", "$metadata"}:
        return _service_document(ctx) if rest == "" else _csdl(ctx)
    if rest in {"WhoAmI", "WhoAmI()"}:
        org = ctx.state.organization
        return _response(200, {"@odata.context": f"{ctx.api}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                               "BusinessUnitId": org.business_unit_id, "UserId": org.user_id,
                               "OrganizationId": org.organization_id})
    if rest.startswith("organizations"):
        return _organizations(ctx, rest)
    if rest.startswith("EntityDefinitions"):
        _only(method, "GET")
        return _response(200, metadata.entity_definitions(ctx.state, rest[len("EntityDefinitions"):], ctx.query,
                                                          ctx.api))
    if rest.startswith("GlobalOptionSetDefinitions"):
        _only(method, "GET")
        return _response(200, metadata.global_option_set(ctx.state, rest[len("GlobalOptionSetDefinitions"):],
                                                          ctx.api))
    if "/Microsoft.Dynamics.CRM.RetrieveUserPrivileges" in rest:
        return _user_privileges(ctx, rest)
    keyed = _KEYED.match(rest)
    if keyed is not None:
        entity = ctx.state.entity_by_set(keyed.group("set"))
        record_id = normalize_guid(keyed.group("id").strip("'"))
        tail = keyed.group("tail")
        if tail:
            return _navigation(ctx, entity, record_id, tail)
        if method == "GET":
            return _get_one(ctx, entity, record_id)
        if method == "PATCH":
            return _patch(ctx, entity, record_id)
        if method == "DELETE":
            _read_check(ctx, entity)
            ctx.state.delete(entity.logical_name, record_id)
            return _response(204)
        raise _method_not_allowed(method)
    if rest.endswith("/$count"):
        return _count(ctx, ctx.state.entity_by_set(rest[: -len("/$count")]))
    entity = ctx.state.entity_by_set(rest)
    if method == "GET":
        return _get_collection(ctx, entity)
    if method == "POST":
        return _post(ctx, entity)
    raise _method_not_allowed(method)


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise _method_not_allowed(method)


def _method_not_allowed(method: str) -> SimError:
    return SimError(405, "0x80060888", f"The HTTP method '{method}' is not allowed on this resource.")


def _service_document(ctx: _Ctx) -> Response:
    sets = [{"name": e.entity_set_name, "kind": "EntitySet", "url": e.entity_set_name}
            for e in ctx.state.entities.values()]
    return _response(200, {"@odata.context": f"{ctx.api}$metadata", "value": sets})


def _csdl(ctx: _Ctx) -> Response:
    """A minimal CSDL: entity sets, with the change tracking capability when ``annotations=true``."""
    annotate = ctx.query.get("annotations", "").lower() == "true"
    sets = []
    for e in ctx.state.entities.values():
        inner = ""
        if annotate:
            inner = (f'<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record><PropertyValue '
                     f'Property="Supported" Bool="{str(ctx.state.change_tracking_enabled(e)).lower()}"/>'
                     f"</Record></Annotation>")
        sets.append(f'<EntitySet Name="{e.entity_set_name}" EntityType="Microsoft.Dynamics.CRM.{e.logical_name}">'
                    f"{inner}</EntitySet>")
    xml = ('<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" '
           'xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices><Schema '
           'Namespace="Microsoft.Dynamics.CRM" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
           f'<EntityContainer Name="System">{"".join(sets)}</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>')
    return Response(content=xml.encode(), media_type="application/xml", headers={"OData-Version": "4.0"})


def _organizations(ctx: _Ctx, rest: str) -> Response:
    _only(ctx.request.method, "GET")
    org = ctx.state.organization
    row = {"@odata.etag": 'W/"1"', "organizationid": org.organization_id, "name": org.name,
           "expirechangetrackingindays": ctx.state.switches.expire_change_tracking_in_days,
           "basecurrencyid": org.base_currency_id, "_basecurrencyid_value": org.base_currency_id}
    select = ctx.query.get("$select")
    if select:
        names = [n.strip() for n in select.split(",")]
        unknown = [n for n in names if n not in row]
        if unknown:
            raise SimError(400, "0x0", f"Could not find a property named '{unknown[0]}' on type "
                                       f"'Microsoft.Dynamics.CRM.organization'.")
        row = {k: v for k, v in row.items() if k in names or k in {"@odata.etag", "organizationid"}}
    if rest != "organizations":
        return _response(200, {"@odata.context": f"{ctx.api}$metadata#organizations/$entity", **row})
    return _response(200, {"@odata.context": f"{ctx.api}$metadata#organizations", "value": [row]})


def _user_privileges(ctx: _Ctx, rest: str) -> Response:
    """``systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()``: the caller's privileges,
    with the Read depth the control API set per table (Global = organization level)."""
    org = ctx.state.organization
    privileges = []
    for name, entity in ctx.state.entities.items():
        depth = ctx.state.read_depth.get(name, "Global")
        if depth == "None":
            continue
        for verb in ("Read", "Write", "Create", "Delete"):
            privileges.append({"Depth": depth, "PrivilegeId": metadata_id("privilege", verb, name),
                               "BusinessUnitId": org.business_unit_id,
                               "PrivilegeName": f"prv{verb}{entity.schema_name}"})
    context = f"{ctx.api}$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse"
    return _response(200, {"@odata.context": context, "RolePrivileges": privileges})


# ---------------------------------------------------------------------------------------- reads
def _read_check(ctx: _Ctx, entity: EntityDef, *, organization_level: bool = False) -> None:
    depth = ctx.state.read_depth.get(entity.logical_name, "Global")
    if depth == "None" or (organization_level and depth != "Global"):
        sw = ctx.state.switches
        raise SimError(sw.privilege_error_status, sw.privilege_error_code,
                       f"Principal user (Id={ctx.state.organization.user_id}, type=8) is missing "
                       f"prvRead{entity.schema_name} privilege at {'Global' if organization_level else 'Basic'} "
                       f"depth (Id={metadata_id('privilege', 'Read', entity.logical_name)}) on OTC="
                       f"{entity.object_type_code} for entity '{entity.logical_name}'.")


def _select_part(select: str | None) -> str:
    return f"$select={quote(select, safe=',_')}" if select else ""


def _link(ctx: _Ctx, entity: EntityDef, *parts: str) -> str:
    query = "&".join(p for p in parts if p)
    return f"{ctx.api}{entity.entity_set_name}" + (f"?{query}" if query else "")


def _context(ctx: _Ctx, entity: EntityDef, attrs_select: str | None, suffix: str = "") -> str:
    cols = f"({attrs_select})" if attrs_select else ""
    return f"{ctx.api}$metadata#{entity.entity_set_name}{cols}{suffix}"


def _get_collection(ctx: _Ctx, entity: EntityDef) -> Response:
    state, sw, query, prefer = ctx.state, ctx.state.switches, ctx.query, ctx.prefer
    tracked = prefer.track_changes or "$deltatoken" in query
    if tracked:
        for option in TRACKING_REJECTED:
            if option in query:
                raise SimError(sw.unsupported_query_status, sw.unsupported_query_code,
                               f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.')
    if "$skip" in query:
        raise SimError(400, "0x0", "The query parameter $skip is not supported.")
    for option in ("$expand", "$orderby", "$apply"):
        if option in query:
            raise SimError(400, "0x0", f"The Dataverse simulator does not implement {option} on entity sets.")
    attrs = select_attributes(entity, query.get("$select"))
    if tracked and not state.change_tracking_enabled(entity):
        if sw.untracked == "error" or "$deltatoken" in query:
            raise SimError(sw.untracked_error_status, "0x80044353",
                           f"Change tracking is not enabled for the entity '{entity.logical_name}'.")
        tracked = False
    _read_check(ctx, entity, organization_level=tracked)
    if "$deltatoken" in query:
        return _delta(ctx, entity, attrs)
    cookie = PageCookie.decode(query["$skiptoken"]) if "$skiptoken" in query else None
    snapshot = cookie.snapshot if cookie else state.current_version
    after = cookie.last_id if cookie else None
    page_no = cookie.page if cookie else 1
    limit = prefer.page_size()
    if tracked and not sw.page_tracked_loads:
        limit = 10**9
    top = None
    if "$top" in query:
        try:
            top = max(0, int(query["$top"]))
        except ValueError:
            raise SimError(400, "0x0", f"Invalid $top value '{query['$top']}'.") from None
        limit = min(limit, top)
    if "$filter" in query:
        groups = parse_filter(query["$filter"])
        by_web = entity.by_web_name()

        def getter(row: Values) -> Any:
            def get(name: str) -> Any:
                attr = by_web.get(name)
                if attr is None:
                    raise SimError(400, "0x0", f"Could not find a property named '{name}' on type "
                                               f"'Microsoft.Dynamics.CRM.{entity.logical_name}'.")
                value = row.get(attr.logical_name)
                return value.id if isinstance(value, Ref) else value
            return get

        candidates = [row for _, row in sorted(state.truth(entity.logical_name).items())
                      if (after is None or row[entity.primary_id] > after) and matches(groups, getter(row))]
        rows, more = candidates[:limit], len(candidates) > limit
    else:
        rows, more = state.page(entity.logical_name, after, limit)
    if top is not None:
        more = False
    body: dict[str, Any] = {"@odata.context": _context(ctx, entity, query.get("$select"))}
    writer = RowWriter(state, entity, attrs, prefer)
    body["value"] = [writer.row(row) for row in rows]
    select_part = _select_part(query.get("$select"))
    headers: dict[str, str] = {}
    applied = prefer.applied(tracked=tracked, page_size=True)
    if applied:
        headers["Preference-Applied"] = applied
    if more and rows:
        next_cookie = PageCookie(page_no + 1, str(rows[-1][entity.primary_id]), snapshot)
        skiptoken = next_cookie.encode(entity.primary_id, str(rows[0][entity.primary_id]),
                                       sw.skiptoken_istracking if tracked else False)
        extra = "&".join(f"{k}={quote(v, safe=',_ ')}" for k, v in query.items() if k == "$filter")
        body["@odata.nextLink"] = _link(ctx, entity, select_part, extra, f"$skiptoken={skiptoken}")
    elif tracked and not (sw.formatted_values_drop_delta_link and prefer.wants(
            "OData.Community.Display.V1.FormattedValue")):
        token = state.issue_token(entity.logical_name, snapshot)
        body["@odata.deltaLink"] = _link(ctx, entity, select_part, f"$deltatoken={quote(token, safe='')}")
    return _response(200, body, headers)


def _delta(ctx: _Ctx, entity: EntityDef, attrs: list[AttributeDef]) -> Response:
    state, sw, query, prefer = ctx.state, ctx.state.switches, ctx.query, ctx.prefer
    token = query["$deltatoken"]
    since = state.check_token(entity.logical_name, token)
    cookie = PageCookie.decode(query["$skiptoken"]) if "$skiptoken" in query else None
    snapshot = cookie.snapshot if cookie else state.current_version
    after = cookie.delta if cookie else None
    limit = prefer.page_size() if sw.page_deltas else None
    items, more = state.delta(entity.logical_name, since, snapshot, after, limit)
    headers = {"Preference-Applied": prefer.applied(tracked=True, page_size=sw.page_deltas)}
    if not items and cookie is None and sw.empty_delta == "empty_object":
        return _response(200, {}, headers)
    deleted_context = f"{ctx.api}$metadata#{entity.entity_set_name}/$deletedEntity"
    values: list[dict[str, Any]] = []
    writer = RowWriter(state, entity, attrs, prefer)
    for item in items:
        if item.row is None:
            values.append({"@odata.context": deleted_context, "id": item.record_id, "reason": sw.deleted_reason})
        else:
            values.append(writer.row(item.row))
    select_part = _select_part(query.get("$select"))
    body: dict[str, Any] = {"@odata.context": _context(ctx, entity, query.get("$select"), "/$delta")}
    if more:
        last = items[-1]
        next_cookie = PageCookie((cookie.page if cookie else 1) + 1, last.record_id, snapshot, last.key)
        skiptoken = next_cookie.encode(entity.primary_id, items[0].record_id, sw.skiptoken_istracking)
        body["@odata.nextLink"] = _link(ctx, entity, select_part, f"$deltatoken={quote(token, safe='')}",
                                        f"$skiptoken={skiptoken}")
    elif not (sw.formatted_values_drop_delta_link and prefer.wants("OData.Community.Display.V1.FormattedValue")):
        new_token = state.issue_token(entity.logical_name, snapshot)
        body["@odata.deltaLink"] = _link(ctx, entity, select_part, f"$deltatoken={quote(new_token, safe='')}")
    body["value"] = values
    return _response(200, body, headers)


def _count(ctx: _Ctx, entity: EntityDef) -> Response:
    _read_check(ctx, entity)
    if "$deltatoken" in ctx.query:
        since = ctx.state.check_token(entity.logical_name, ctx.query["$deltatoken"])
        items, _ = ctx.state.delta(entity.logical_name, since, ctx.state.current_version, None, None)
        count = len(items)
    else:
        count = ctx.state.count(entity.logical_name)
    return Response(content=str(count).encode(), media_type="text/plain", headers={"OData-Version": "4.0"})


def _get_one(ctx: _Ctx, entity: EntityDef, record_id: str) -> Response:
    _read_check(ctx, entity)
    row = ctx.state.get(entity.logical_name, record_id)
    if row is None:
        raise SimError(404, "0x80040217", f"{entity.logical_name} With Id = {record_id} Does Not Exist")
    attrs = select_attributes(entity, ctx.query.get("$select"))
    body = {"@odata.context": _context(ctx, entity, ctx.query.get("$select"), "/$entity"),
            **row_json(ctx.state, entity, row, attrs, ctx.prefer)}
    return _response(200, body)


# ---------------------------------------------------------------------------------------- writes
def _bind_target(ctx: _Ctx, text: str) -> Ref:
    m = _BIND_TARGET.search(text.strip())
    if m is None:
        raise SimError(400, "0x80060891", f"A URL '{text}' in an @odata.bind annotation is not valid.")
    target = ctx.state.entity_by_set(m.group("set"))
    return Ref(normalize_guid(m.group("id").strip("'")), target.logical_name)


def _values_from_body(ctx: _Ctx, entity: EntityDef) -> tuple[Values, str | None]:
    try:
        payload = loads(ctx.body) if ctx.body else {}
    except ValueError as exc:
        raise SimError(400, "0x80040203", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise SimError(400, "0x80040203", "The request body must be a JSON object.")
    values: Values = {}
    record_id: str | None = None
    for key, value in payload.items():
        if key.endswith("@odata.bind"):
            nav = key[: -len("@odata.bind")]
            ref = _bind_target(ctx, str(value)) if value is not None else None
            attr = next((a for a in entity.attributes if a.is_lookup and (
                a.logical_name == nav or any(a.navigation_property(t) == nav for t in a.targets))), None)
            if attr is None:
                raise SimError(400, "0x0", f"An undeclared property '{nav}' which only has property annotations in "
                                           f"the payload but no property value was found in the payload.")
            values[attr.logical_name] = ref
            continue
        if "@" in key:
            continue
        attr = entity.attribute(key)
        if attr is None or attr.is_lookup:
            hint = " (set lookups with <navigation property>@odata.bind)" if key.startswith("_") else ""
            raise SimError(400, "0x0", f"Invalid property '{key}' was found in entity "
                                       f"'Microsoft.Dynamics.CRM.{entity.logical_name}'.{hint}")
        if attr.is_primary_id:
            record_id = normalize_guid(str(value))
            continue
        values[key] = value
    return values, record_id


def _written(ctx: _Ctx, entity: EntityDef, record_id: str, status_plain: int = 204) -> Response:
    headers = {"OData-EntityId": f"{ctx.api}{entity.entity_set_name}({record_id})"}
    if ctx.prefer.return_representation:
        row = ctx.state.get(entity.logical_name, record_id)
        assert row is not None
        attrs = select_attributes(entity, ctx.query.get("$select"))
        body = {"@odata.context": _context(ctx, entity, ctx.query.get("$select"), "/$entity"),
                **row_json(ctx.state, entity, row, attrs, ctx.prefer)}
        return _response(201 if status_plain == 204 and ctx.request.method == "POST" else 200, body, headers)
    return _response(status_plain, None, headers)


def _post(ctx: _Ctx, entity: EntityDef) -> Response:
    _read_check(ctx, entity)
    values, record_id = _values_from_body(ctx, entity)
    rid = ctx.state.create(entity.logical_name, values, record_id)
    return _written(ctx, entity, rid)


def _patch(ctx: _Ctx, entity: EntityDef, record_id: str) -> Response:
    _read_check(ctx, entity)
    values, _ = _values_from_body(ctx, entity)
    exists = ctx.state.get(entity.logical_name, record_id)
    if_match = ctx.request.headers.get("if-match")
    if_none_match = ctx.request.headers.get("if-none-match")
    if if_match is not None:
        if exists is None:
            raise SimError(404, "0x80040217", f"{entity.logical_name} With Id = {record_id} Does Not Exist")
        etag = f'W/"{ctx.state.etag(entity.logical_name, exists)}"'
        if if_match.strip() not in {"*", etag}:
            raise SimError(412, "0x80060882", "The version of the existing record doesn't match the RowVersion "
                                              "property provided.")
    if if_none_match is not None and if_none_match.strip() == "*" and exists is not None:
        raise SimError(412, "0x80040237", "A record with matching key values already exists.")
    ctx.state.upsert(entity.logical_name, record_id, values)
    return _written(ctx, entity, record_id)


def _navigation(ctx: _Ctx, entity: EntityDef, record_id: str, tail: str) -> Response:
    """N:N: ``POST <set>(id)/<relationship>/$ref`` associates; ``DELETE <set>(id)/<relationship>(id2)/$ref``
    or ``DELETE <set>(id)/<relationship>/$ref?$id=<url>`` disassociates."""
    m = re.match(r"^/(?P<nav>\w+)(?:\((?P<other>[^)]+)\))?/\$ref$", tail)
    if m is None:
        raise SimError(404, "0x80060888", f"Resource not found for the segment '{tail.strip('/')}'.")
    rel = ctx.state.relationship(m.group("nav"))
    if entity.logical_name not in {rel.entity1, rel.entity2}:
        raise SimError(404, "0x80060888", f"'{rel.schema_name}' is not a navigation property of {entity.logical_name}.")
    method = ctx.request.method
    if method == "POST":
        try:
            payload = loads(ctx.body) if ctx.body else {}
        except ValueError as exc:
            raise SimError(400, "0x80040203", f"The request body is not valid JSON: {exc}") from exc
        other = _bind_target(ctx, str(payload.get("@odata.id", "")) if isinstance(payload, dict) else "")
    elif method == "DELETE":
        if m.group("other"):
            other_entity = rel.entity2 if entity.logical_name == rel.entity1 else rel.entity1
            other = Ref(normalize_guid(m.group("other")), other_entity)
        else:
            other = _bind_target(ctx, ctx.query.get("$id", ""))
    else:
        raise _method_not_allowed(method)
    this = Ref(record_id, entity.logical_name)
    first, second = (this, other) if entity.logical_name == rel.entity1 else (other, this)
    if first.entity != rel.entity1 or second.entity != rel.entity2:
        raise SimError(400, "0x80040203", f"{rel.schema_name} links {rel.entity1} and {rel.entity2}.")
    if method == "POST":
        ctx.state.associate(rel.schema_name, first.id, second.id)
    else:
        ctx.state.disassociate(rel.schema_name, first.id, second.id)
    return _response(204)


# ---------------------------------------------------------------------------------------- control
def _control(sim: DataverseSimulator, path: str, method: str, raw: bytes, query: dict[str, str]) -> Response:
    payload: dict[str, Any] = loads(raw) if raw else {}
    parts = path.strip("/").split("/")
    head = parts[0]
    if head == "faults" and method == "POST":
        if "throttle" in payload:
            sim.throttle_next(int(payload["throttle"]), retry_after=int(payload.get("retry_after", 30)),
                              measure=payload.get("measure", "requests"))
        if "fail" in payload:
            sim.fail_next(int(payload["fail"]), status=int(payload.get("status", 503)))
        if any(k in payload for k in ("rate_limit", "concurrency_limit", "latency_seconds")):
            sim.set_limits(rate_limit=payload.get("rate_limit"),
                           rate_window_seconds=float(payload.get("rate_window_seconds", 300.0)),
                           concurrency_limit=payload.get("concurrency_limit"),
                           latency_seconds=float(payload.get("latency_seconds", 0.0)))
        return _response(204)
    if head == "tokens" and method == "POST":
        if len(parts) > 1 and parts[1] == "expire":
            sim.expire_tokens(payload.get("token"))
        else:
            sim.add_token(str(payload["token"]), payload.get("expires_in"))
        return _response(204)
    if head == "delta-tokens" and len(parts) > 1 and parts[1] == "expire" and method == "POST":
        sim.expire_delta_tokens(payload.get("entity"))
        return _response(204)
    if head == "switches":
        if method == "PATCH":
            sim.set_switches(**payload)
        return _response(200, sim.switches.as_dict())
    if head == "push-options":
        if method == "PATCH":
            with sim.state.lock:
                sim.push.options.update(payload)
        return _response(200, sim.push.options.as_dict())
    if head == "privileges" and method == "POST":
        sim.set_read_depth(str(payload["entity"]), str(payload["depth"]))
        return _response(204)
    if head == "churn" and method == "POST":
        sim.start_churn(float(payload.get("per_second", 0)), payload.get("seed"))
        return _response(204)
    if head == "changes" and method == "POST":
        done = sim.random_changes(int(payload.get("count", 10)), payload.get("seed"))
        return _response(200, {"changes": done})
    if head == "truth" and method == "GET":
        with sim.state.lock:
            if len(parts) == 1:
                return _response(200, {name: sim.state.count(name) for name in sim.state.entities})
            entity = sim.state.entity(parts[1])
            attrs = list(entity.attributes)
            prefer = Prefer(annotations=["*"])
            rows = [row_json(sim.state, entity, row, attrs, prefer)
                    for _, row in sorted(sim.state.truth(entity.logical_name).items())]
            return _response(200, {"entity": entity.logical_name, "value": rows})
    if head == "push" and method == "GET":
        messages = sim.push.drain() if query.get("drain") == "true" else list(sim.push.messages)
        return _response(200, {"value": [{"messageId": m.message_id, "applicationProperties": m.application_properties,
                                          "truncated": m.truncated, "duplicate": m.duplicate,
                                          "body": m.body.decode("utf-8-sig")} for m in messages]})
    if head == "push" and len(parts) > 1 and parts[1] == "flush" and method == "POST":
        sim.push.flush()
        return _response(204)
    if head == "organization" and method == "GET":
        org = sim.state.organization
        return _response(200, {"organizationId": org.organization_id, "name": org.name, "url": org.url,
                               "userId": org.user_id, "version": sim.state.current_version,
                               "requests": sim.requests})
    raise SimError(404, "sim", f"Unknown control endpoint {method} /_sim/{path}")
