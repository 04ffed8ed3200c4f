"""The Dataverse Web API simulator over HTTP (httpx against a running simulator on a loopback port):
change tracking paging and deltas, errors and faults, auth, metadata, writes, control endpoints, CLI.
Shapes are checked against shared/reference/dataverse.md."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.tools.dataverse_sim import DataverseSimulator, RunningSimulator, run_simulator
from shared.tools.dataverse_sim.schema import ACCOUNT_CONTACT

pytestmark = pytest.mark.integration
TRACK = "odata.track-changes,odata.maxpagesize={}"
LOOKUP_ANNOTATIONS = ('odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname,'
                      'Microsoft.Dynamics.CRM.associatednavigationproperty"')
ACCOUNT_SELECT = "name,revenue,_parentaccountid_value,_ownerid_value,des_channels,modifiedon,versionnumber"


@pytest.fixture(scope="module")
def running() -> Iterator[RunningSimulator]:
    with run_simulator(seed=11, records=25, base="/org1") as rs:
        yield rs


@pytest.fixture
def fresh() -> Iterator[RunningSimulator]:
    with run_simulator(seed=5, records=6) as rs:
        yield rs


def get(rs: RunningSimulator, url: str, prefer: str | None = None, **headers: str) -> httpx.Response:
    if prefer:
        headers["Prefer"] = prefer
    return httpx.get(url if url.startswith("http") else rs.api + url, headers=rs.headers(**headers), timeout=10)


def load(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def full_load(rs: RunningSimulator, entity_set: str, select: str, page: int,
              prefer_extra: str = "") -> tuple[list[dict[str, Any]], str, int]:
    prefer = TRACK.format(page) + (f",{prefer_extra}" if prefer_extra else "")
    body = load(get(rs, f"{entity_set}?$select={select}", prefer))
    rows, pages = list(body["value"]), 1
    while "@odata.nextLink" in body:
        assert "@odata.deltaLink" not in body  # never both on one page
        body = load(get(rs, body["@odata.nextLink"], prefer))
        rows += body["value"]
        pages += 1
    return rows, body["@odata.deltaLink"], pages


def delta(rs: RunningSimulator, link: str, page: int = 5000) -> tuple[list[dict[str, Any]], str | None]:
    body = load(get(rs, link, f"odata.maxpagesize={page}"))
    assert body.get("@odata.context", "").endswith("/$delta")
    rows = list(body["value"])
    while "@odata.nextLink" in body:
        body = load(get(rs, body["@odata.nextLink"], f"odata.maxpagesize={page}"))
        rows += body["value"]
    return rows, body.get("@odata.deltaLink")


def test_an_initial_load_pages_with_next_links_and_ends_with_a_delta_link(running: RunningSimulator) -> None:
    response = get(running, f"accounts?$select={ACCOUNT_SELECT}", TRACK.format(7))
    assert response.headers["Preference-Applied"] == "odata.track-changes,odata.maxpagesize=7"
    assert response.headers["OData-Version"] == "4.0"
    first = load(response)
    assert first["@odata.context"] == f"{running.api}$metadata#accounts({ACCOUNT_SELECT})"
    assert len(first["value"]) == 7
    assert "$skiptoken=" in first["@odata.nextLink"]
    assert first["@odata.nextLink"].startswith(running.api)  # under the same base (/org1)
    rows, delta_link, pages = full_load(running, "accounts", ACCOUNT_SELECT, 7)
    assert pages == 4
    assert "$deltatoken=" in delta_link
    truth = running.sim.truth("account")
    assert sorted(r["accountid"] for r in rows) == sorted(truth)
    for row in rows:
        expected = truth[row["accountid"]]
        assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'
        assert row["versionnumber"] == expected["versionnumber"]
        assert row["revenue"] == expected["revenue"]  # exact decimals
        assert set(row) == {"@odata.etag", "accountid", "_transactioncurrencyid_value", *ACCOUNT_SELECT.split(",")}
        assert row["modifiedon"].endswith("Z")
        owner = expected["ownerid"]
        assert row["_ownerid_value"] == owner.id
    channels = [r["des_channels"] for r in rows if r["des_channels"] is not None]
    assert channels
    assert all(isinstance(c, str) for c in channels)  # comma-separated (switch multiselect_format)


def test_lookup_annotations_come_only_when_asked(running: RunningSimulator) -> None:
    plain = load(get(running, "contacts?$select=lastname,_parentcustomerid_value", TRACK.format(50)))
    assert not any("@" in key for row in plain["value"] for key in row if key != "@odata.etag")
    body = load(get(running, "contacts?$select=lastname,_parentcustomerid_value",
                    f"{TRACK.format(50)},{LOOKUP_ANNOTATIONS}"))
    truth = running.sim.truth("contact")
    targets = set()
    for row in body["value"]:
        parent = truth[row["contactid"]]["parentcustomerid"]
        if parent is None:
            assert "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname" not in row
            continue
        assert row["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == parent.entity
        nav = row["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"]
        assert nav == f"parentcustomerid_{parent.entity}"
        targets.add(parent.entity)
    assert targets == {"account", "contact"}
    formatted = load(get(running, "accounts?$select=industrycode", TRACK.format(50) +
                         ',odata.include-annotations="OData.Community.Display.V1.FormattedValue"'))
    labelled = [r for r in formatted["value"] if r["industrycode"] is not None]
    assert labelled
    assert all(isinstance(r["industrycode@OData.Community.Display.V1.FormattedValue"], str) for r in labelled)


def test_deltas_carry_updates_deletes_and_recreations(fresh: RunningSimulator) -> None:
    rows, link, _ = full_load(fresh, "accounts", "name,telephone1,versionnumber", 4)
    ids = [r["accountid"] for r in rows]
    h = fresh.headers(**{"Content-Type": "application/json"})
    patched = httpx.patch(f"{fresh.api}accounts({ids[0]})", json={"telephone1": "+49 30 1234"}, headers=h)
    assert patched.status_code == 204
    assert patched.headers["OData-EntityId"] == f"{fresh.api}accounts({ids[0]})"
    assert httpx.delete(f"{fresh.api}accounts({ids[1]})", headers=h).status_code == 204
    created = httpx.post(f"{fresh.api}accounts", json={"name": "Neue Firma", "revenue": 1000.25,
                                                       "parentaccountid@odata.bind": f"/accounts({ids[2]})"},
                         headers=h)
    assert created.status_code == 204
    new_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    changes, link2 = delta(fresh, link)
    assert link2 is not None
    assert link2 != link
    upserts = {c["accountid"]: c for c in changes if "accountid" in c}
    deletes = [c for c in changes if "accountid" not in c]
    assert upserts[ids[0]]["telephone1"] == "+49 30 1234"
    assert upserts[ids[0]]["versionnumber"] == fresh.sim.truth("account")[ids[0]]["versionnumber"]
    assert upserts[new_id]["name"] == "Neue Firma"
    assert deletes == [{"@odata.context": f"{fresh.api}$metadata#accounts/$deletedEntity", "id": ids[1],
                        "reason": "deleted"}]
    assert changes.index(deletes[0]) == len(changes) - 1  # upserts first, then deletes
    # re-create the deleted id: the next delta has the row (and, by default, no stale tombstone from before)
    again = httpx.post(f"{fresh.api}accounts", json={"accountid": ids[1], "name": "Wieder da"}, headers=h)
    assert again.status_code == 204
    changes3, link3 = delta(fresh, link2)
    assert [c.get("accountid") for c in changes3] == [ids[1]]
    empty, link4 = delta(fresh, link3 or "")
    assert empty == []
    assert link4 is not None


def test_deltas_page_when_they_are_large(fresh: RunningSimulator) -> None:
    _, link, _ = full_load(fresh, "contacts", "lastname", 100)
    for rid in fresh.sim.state.ids("contact"):
        fresh.sim.state.update("contact", rid, {"jobtitle": "Tester"})
    body = load(get(fresh, link, "odata.maxpagesize=3"))
    assert "@odata.nextLink" in body
    assert "@odata.deltaLink" not in body
    changes, _ = delta(fresh, link, page=3)
    assert sorted(c["contactid"] for c in changes) == sorted(fresh.sim.truth("contact"))


@pytest.mark.parametrize("option", ["$filter=name eq 'x'", "$orderby=name", "$expand=primarycontactid", "$top=3"])
def test_query_options_are_refused_with_track_changes(running: RunningSimulator, option: str) -> None:
    response = get(running, f"accounts?$select=name&{option}", TRACK.format(10))
    assert response.status_code == 400
    name = option.split("=", 1)[0]
    assert response.json()["error"]["message"] == (
        f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.')


def test_plain_queries_accept_filter_and_top(running: RunningSimulator) -> None:
    rid = running.sim.state.ids("account")[3]
    body = load(get(running, f"accounts?$select=name&$filter=accountid eq {rid}"))
    assert [r["accountid"] for r in body["value"]] == [rid]
    assert "@odata.deltaLink" not in body
    assert len(load(get(running, "accounts?$select=name&$top=2"))["value"]) == 2
    one = load(get(running, f"accounts({rid})?$select=name"))
    assert one["accountid"] == rid
    assert get(running, "accounts(00000000-0000-0000-0000-000000000001)").status_code == 404


def test_an_expired_delta_token_gets_the_documented_error(fresh: RunningSimulator) -> None:
    _, link, _ = full_load(fresh, "accounts", "name", 50)
    httpx.post(f"{fresh.url}/_sim/delta-tokens/expire", json={"entity": "account"}).raise_for_status()
    response = get(fresh, link)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "0x80044352", "message": "Version stamp associated with the client "
                                                                          "has expired. Please perform a full sync."}}
    garbage = get(fresh, "accounts?$select=name&$deltatoken=not-a-token")
    assert garbage.json()["error"]["code"] == "0x80044352"
    _, new_link, _ = full_load(fresh, "accounts", "name", 50)  # a full sync gets a working link again
    assert get(fresh, new_link).status_code == 200


def test_throttling_answers_429_with_retry_after(fresh: RunningSimulator) -> None:
    fresh.sim.throttle_next(2, retry_after=7)
    for _ in range(2):
        response = get(fresh, "WhoAmI")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"] == {
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds."}
    assert get(fresh, "WhoAmI").status_code == 200
    httpx.post(f"{fresh.url}/_sim/faults", json={"throttle": 1, "retry_after": 3, "measure": "concurrency"})
    response = get(fresh, "WhoAmI")
    assert (response.status_code, response.json()["error"]["code"]) == (429, "0x80072326")
    fresh.sim.set_limits(rate_limit=2, rate_window_seconds=60)
    statuses = [get(fresh, "WhoAmI").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    fresh.sim.set_limits()


def test_injected_server_errors(fresh: RunningSimulator) -> None:
    httpx.post(f"{fresh.url}/_sim/faults", json={"fail": 1, "status": 502}).raise_for_status()
    response = get(fresh, "accounts?$select=name", TRACK.format(5))
    assert response.status_code == 502
    assert "error" in response.json()
    assert get(fresh, "accounts?$select=name", TRACK.format(5)).status_code == 200


def test_bearer_tokens_are_checked_and_expire(fresh: RunningSimulator) -> None:
    url = f"{fresh.api}WhoAmI"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    fresh.sim.add_token("short-lived", expires_in=3600)
    ok = httpx.get(url, headers={"Authorization": "Bearer short-lived"})
    assert ok.status_code == 200
    assert ok.json()["OrganizationId"] == fresh.sim.state.organization.organization_id
    httpx.post(f"{fresh.url}/_sim/tokens/expire", json={"token": "short-lived"}).raise_for_status()
    expired = httpx.get(url, headers={"Authorization": "Bearer short-lived"})
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert expired.content == b""
    fresh.sim.set_switches(unauthorized_body="error")
    assert httpx.get(url).json()["error"]["code"] == "0x80072560"
    assert get(fresh, "WhoAmI").status_code == 200  # the default token still works


def test_entity_definitions(running: RunningSimulator) -> None:
    body = load(get(running, "EntityDefinitions?$select=LogicalName,EntitySetName"
                             "&$filter=ChangeTrackingEnabled eq true"))
    assert sorted(e["LogicalName"] for e in body["value"]) == sorted(
        ["account", "contact", "opportunity", ACCOUNT_CONTACT.schema_name])
    assert all(set(e) == {"LogicalName", "EntitySetName", "MetadataId"} for e in body["value"])
    one = load(get(running, "EntityDefinitions(LogicalName='opportunity')?$select=LogicalName,SchemaName,EntitySetName,"
                            "PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled,ObjectTypeCode,IsIntersect"))
    assert one["EntitySetName"] == "opportunities"
    assert one["PrimaryIdAttribute"] == "opportunityid"
    assert one["PrimaryNameAttribute"] == "name"
    assert one["ChangeTrackingEnabled"] is True
    assert one["ObjectTypeCode"] == 3
    intersect = load(get(running, f"EntityDefinitions(LogicalName='{ACCOUNT_CONTACT.schema_name}')"))
    assert intersect["IsIntersect"] is True
    assert intersect["CanChangeTrackingBeEnabled"]["Value"] is True
    expanded = load(get(running, "EntityDefinitions(LogicalName='account')?$select=LogicalName"
                                 "&$expand=Attributes($select=LogicalName,AttributeType,AttributeTypeName,AttributeOf)"))
    attrs = {a["LogicalName"]: a for a in expanded["Attributes"]}
    assert attrs["des_channels"]["AttributeType"] == "Virtual"
    assert attrs["des_channels"]["AttributeTypeName"] == {"Value": "MultiSelectPicklistType"}
    assert attrs["revenue_base"]["AttributeOf"] == "revenue"
    assert attrs["ownerid"]["AttributeType"] == "Owner"
    relationships = load(get(running, "EntityDefinitions(LogicalName='account')/ManyToManyRelationships"))
    assert relationships["value"][0]["IntersectEntityName"] == ACCOUNT_CONTACT.schema_name


def test_attribute_casts_option_sets_and_targets(running: RunningSimulator) -> None:
    base = "EntityDefinitions(LogicalName='account')/Attributes"
    picklists = load(get(running, f"{base}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName"
                                  "&$expand=OptionSet,GlobalOptionSet"))
    by_name = {a["LogicalName"]: a for a in picklists["value"]}
    assert set(by_name) == {"industrycode", "customertypecode"}
    options = by_name["industrycode"]["OptionSet"]["Options"]
    assert options[0]["Value"] == 1
    assert options[0]["Label"]["UserLocalizedLabel"]["Label"] == "Accounting"
    assert options[0]["Label"]["LocalizedLabels"][0]["LanguageCode"] == 1033
    assert by_name["industrycode"]["OptionSet"]["Name"] == "account_industrycode"
    assert by_name["industrycode"]["GlobalOptionSet"] is None
    multi = load(get(running, f"{base}/Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata"
                              "?$select=LogicalName&$expand=OptionSet,GlobalOptionSet"))
    assert multi["value"][0]["GlobalOptionSet"]["IsGlobal"] is True
    status = load(get(running, f"{base}/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$select=LogicalName"
                               "&$expand=OptionSet"))
    assert {o["Value"]: o["State"] for o in status["value"][0]["OptionSet"]["Options"]} == {1: 0, 2: 1}
    state = load(get(running, f"{base}/Microsoft.Dynamics.CRM.StateAttributeMetadata?$select=LogicalName"
                              "&$expand=OptionSet"))
    assert {o["Value"]: o["DefaultStatus"] for o in state["value"][0]["OptionSet"]["Options"]} == {0: 1, 1: 2}
    lookups = load(get(running, "EntityDefinitions(LogicalName='contact')/Attributes/"
                                "Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets"))
    targets = {a["LogicalName"]: a["Targets"] for a in lookups["value"]}
    assert targets["parentcustomerid"] == ["account", "contact"]
    assert targets["ownerid"] == ["systemuser", "team"]
    money = load(get(running, f"{base}/Microsoft.Dynamics.CRM.MoneyAttributeMetadata?$select=LogicalName,Precision"))
    assert {a["LogicalName"]: a["Precision"] for a in money["value"]}["revenue"] == 2
    strings = load(get(running, f"{base}/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength"))
    assert {a["LogicalName"]: a["MaxLength"] for a in strings["value"]}["name"] == 160
    refused = get(running, f"{base}/Microsoft.Dynamics.CRM.EnumAttributeMetadata?$expand=OptionSet")
    assert refused.status_code == 400
    assert get(running, f"{base}?$expand=OptionSet").status_code == 400
    filtered = load(get(running, f"{base}?$select=LogicalName&$filter=AttributeType eq "
                                 "Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'"))
    assert sorted(a["LogicalName"] for a in filtered["value"]) == ["customertypecode", "industrycode"]


def test_organization_settings_and_privileges(fresh: RunningSimulator) -> None:
    org = load(get(fresh, "organizations?$select=expirechangetrackingindays"))
    assert org["value"][0]["expirechangetrackingindays"] == 7
    assert org["value"][0]["organizationid"] == fresh.sim.state.organization.organization_id
    user = fresh.sim.state.organization.user_id
    privileges = load(get(fresh, f"systemusers({user})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"))
    reads = {p["PrivilegeName"]: p["Depth"] for p in privileges["RolePrivileges"]}
    assert reads["prvReadAccount"] == "Global"
    httpx.post(f"{fresh.url}/_sim/privileges", json={"entity": "contact", "depth": "Local"}).raise_for_status()
    denied = get(fresh, "contacts?$select=lastname", TRACK.format(10))
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "0x80040220"
    assert "prvReadContact" in denied.json()["error"]["message"]
    privileges = load(get(fresh, f"systemusers({user})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"))
    assert {p["PrivilegeName"]: p["Depth"] for p in privileges["RolePrivileges"]}["prvReadContact"] == "Local"


def test_n_to_n_links_over_ref_and_the_intersect_delta(fresh: RunningSimulator) -> None:
    rel = ACCOUNT_CONTACT.schema_name
    entity_set = f"{rel}set"
    rows, link, _ = full_load(fresh, entity_set, "accountid,contactid,versionnumber", 3)
    assert sorted((r["accountid"], r["contactid"]) for r in rows) == fresh.sim.state.links(rel)
    account, contact = fresh.sim.state.ids("account")[0], fresh.sim.state.ids("contact")[0]
    if (account, contact) in fresh.sim.state.links(rel):
        fresh.sim.state.disassociate(rel, account, contact)
    h = fresh.headers()
    posted = httpx.post(f"{fresh.api}accounts({account})/{rel}/$ref",
                        json={"@odata.id": f"{fresh.api}contacts({contact})"}, headers=h)
    assert posted.status_code == 204
    assert (account, contact) in fresh.sim.state.links(rel)
    changes, link2 = delta(fresh, link)
    assert any(c.get("accountid") == account and c.get("contactid") == contact for c in changes)
    removed = httpx.delete(f"{fresh.api}contacts({contact})/{rel}({account})/$ref", headers=h)
    assert removed.status_code == 204
    changes, _ = delta(fresh, link2 or "")
    assert [c["reason"] for c in changes] == ["deleted"]
    fresh.sim.set_switches(intersect_change_tracking=False)
    no_tracking = load(get(fresh, f"{entity_set}?$select=accountid", TRACK.format(5000)))
    assert "@odata.deltaLink" not in no_tracking  # the switch's default: no deltaLink, no error
    fresh.sim.set_switches(untracked="error")
    assert get(fresh, f"{entity_set}?$select=accountid", TRACK.format(10)).status_code == 400


def test_writes_are_validated_and_return_representations(fresh: RunningSimulator) -> None:
    h = fresh.headers(Prefer="return=representation")
    created = httpx.post(f"{fresh.api}contacts", json={"firstname": "Łukasz", "lastname": "Kowalski",
                                                       "des_channels": "1"}, headers=h)
    assert created.status_code == 400  # no such column on contact
    created = httpx.post(f"{fresh.api}contacts?$select=fullname,versionnumber",
                         json={"firstname": "Łukasz", "lastname": "Kowalski", "annualincome": 12.34}, headers=h)
    assert created.status_code == 201
    assert created.json()["fullname"] == "Łukasz Kowalski"
    rid = created.json()["contactid"]
    bad = httpx.patch(f"{fresh.api}contacts({rid})", json={"gendercode": 42}, headers=h)
    assert bad.status_code == 400
    stale = httpx.patch(f"{fresh.api}contacts({rid})", json={"jobtitle": "x"},
                        headers={**fresh.headers(), "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    missing = httpx.patch(f"{fresh.api}contacts(00000000-0000-0000-0000-00000000abcd)", json={"lastname": "U"},
                          headers={**fresh.headers(), "If-Match": "*"})
    assert missing.status_code == 404
    upserted = httpx.patch(f"{fresh.api}contacts(00000000-0000-0000-0000-00000000abcd)", json={"lastname": "U"},
                           headers=fresh.headers())
    assert upserted.status_code == 204
    assert "00000000-0000-0000-0000-00000000abcd" in fresh.sim.truth("contact")
    read_only = httpx.patch(f"{fresh.api}contacts({rid})", json={"_parentcustomerid_value": rid},
                            headers=fresh.headers())
    assert read_only.status_code == 400


def test_control_endpoints(fresh: RunningSimulator) -> None:
    counts = httpx.get(f"{fresh.url}/_sim/truth").json()
    assert counts["account"] == 6
    truth = httpx.get(f"{fresh.url}/_sim/truth/account").json()["value"]
    assert sorted(r["accountid"] for r in truth) == sorted(fresh.sim.truth("account"))
    made = httpx.post(f"{fresh.url}/_sim/changes", json={"count": 12, "seed": 4}).json()["changes"]
    assert len(made) == 12
    pushed = httpx.get(f"{fresh.url}/_sim/push?drain=true").json()["value"]
    assert len(pushed) >= 12
    assert all(json.loads(p["body"])["MessageName"] in {"Create", "Update", "Delete", "Associate", "Disassociate"}
               for p in pushed)
    assert httpx.get(f"{fresh.url}/_sim/push").json()["value"] == []
    switches = httpx.patch(f"{fresh.url}/_sim/switches", json={"etag_is_version": False}).json()
    assert switches["etag_is_version"] is False
    assert httpx.patch(f"{fresh.url}/_sim/switches", json={"no_such_switch": 1}).status_code == 400
    options = httpx.patch(f"{fresh.url}/_sim/push-options", json={"duplicate_rate": 0.5}).json()
    assert options["duplicate_rate"] == 0.5


def test_the_simulator_object_can_be_served_after_setup() -> None:
    sim = DataverseSimulator(seed=2, records=3, require_auth=False)
    sim.set_switches(empty_delta="empty_object")
    with run_simulator(sim) as rs:
        body = load(httpx.get(f"{rs.api}accounts?$select=name", headers={"Prefer": TRACK.format(50)}))
        assert load(httpx.get(body["@odata.deltaLink"])) == {}  # the doc's "empty JSON response"


def test_the_command_line_serves_and_prints_where(tmp_path: Path) -> None:
    push_file = tmp_path / "push.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.tools.dataverse_sim", "--port", "0", "--seed", "3", "--records", "4",
         "--token", "t1", "--push-file", str(push_file), "--switch", "deleted_reason=\"changed\""],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        headers = {"Authorization": "Bearer t1"}
        who = None
        for _ in range(100):
            try:
                who = httpx.get(f"{info['api']}WhoAmI", headers=headers)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert who is not None
        assert who.json()["OrganizationId"] == info["organization_id"]
        assert info["entities"] == ["account", "contact", "opportunity", ACCOUNT_CONTACT.schema_name]
        body = httpx.get(f"{info['api']}accounts?$select=name", headers={**headers, "Prefer": TRACK.format(50)}).json()
        rid = body["value"][0]["accountid"]
        assert httpx.delete(f"{info['api']}accounts({rid})", headers=headers).status_code == 204
        deleted = httpx.get(body["@odata.deltaLink"], headers=headers).json()["value"]
        assert deleted[-1]["reason"] == "changed"
        lines = push_file.read_text(encoding="utf-8").splitlines()
        assert json.loads(lines[-1])["MessageName"] == "Delete"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------ property test over HTTP
HTTP_OPS = st.lists(st.tuples(st.sampled_from(["patch", "post", "delete", "recreate", "link", "poll", "expire"]),
                              st.integers(0, 10**6)), min_size=1, max_size=25)


def _replica_poll(rs: RunningSimulator, entity_set: str, pk: str, link: str | None,
                  replica: dict[str, dict[str, Any]], page: int) -> str:
    """Follow the protocol: full load when there is no link or the token expired, else one delta."""
    if link is not None:
        response = get(rs, link, f"odata.maxpagesize={page}")
        if response.status_code == 400 and response.json()["error"]["code"] == "0x80044352":
            link = None
        else:
            body = load(response)
            while True:
                for item in body["value"]:
                    if item.get("@odata.context", "").endswith("/$deletedEntity"):
                        replica.pop(item["id"], None)
                    else:
                        replica[item[pk]] = item
                if "@odata.nextLink" not in body:
                    return str(body["@odata.deltaLink"])
                body = load(get(rs, body["@odata.nextLink"], f"odata.maxpagesize={page}"))
    rows, new_link, _ = full_load(rs, entity_set, "name,telephone1,versionnumber" if pk == "accountid"
                                  else "accountid,contactid,versionnumber", page)
    replica.clear()
    replica.update({r[pk]: r for r in rows})
    return new_link


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=HTTP_OPS, page=st.integers(1, 4))
def test_a_client_following_links_over_http_converges(fresh: RunningSimulator, ops: list[tuple[str, int]],
                                                      page: int) -> None:
    """Paging, delta links, $deletedEntity, re-creations and expired tokens over HTTP: a replica that
    follows the protocol (deltas in version order here) ends equal to the simulator's ground truth."""
    fresh.sim.set_switches(delta_order="by_version")
    rel_set = f"{ACCOUNT_CONTACT.schema_name}set"
    tables = {"accounts": "accountid", rel_set: f"{ACCOUNT_CONTACT.schema_name}id"}
    replicas: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in tables}
    links: dict[str, str | None] = dict.fromkeys(tables)
    h = fresh.headers()
    deleted: list[str] = []
    for op, n in ops:
        ids = fresh.sim.state.ids("account")
        if op == "patch" and ids:
            httpx.patch(f"{fresh.api}accounts({ids[n % len(ids)]})", json={"telephone1": str(n)},
                        headers=h).raise_for_status()
        elif op == "post":
            httpx.post(f"{fresh.api}accounts", json={"name": f"n{n}"}, headers=h).raise_for_status()
        elif op == "delete" and ids:
            rid = ids[n % len(ids)]
            httpx.delete(f"{fresh.api}accounts({rid})", headers=h).raise_for_status()
            deleted.append(rid)
        elif op == "recreate" and deleted:
            rid = deleted.pop(n % len(deleted))
            httpx.post(f"{fresh.api}accounts", json={"accountid": rid, "name": "again"}, headers=h).raise_for_status()
        elif op == "link" and ids:
            contacts = fresh.sim.state.ids("contact")
            a, c = ids[n % len(ids)], contacts[n % len(contacts)]
            if (a, c) not in fresh.sim.state.links(ACCOUNT_CONTACT.schema_name):
                httpx.post(f"{fresh.api}accounts({a})/{ACCOUNT_CONTACT.schema_name}/$ref",
                           json={"@odata.id": f"{fresh.api}contacts({c})"}, headers=h).raise_for_status()
        elif op == "expire":
            fresh.sim.expire_delta_tokens("account" if n % 2 else None)
        else:
            for table, pk in tables.items():
                links[table] = _replica_poll(fresh, table, pk, links[table], replicas[table], page)
    for table, pk in tables.items():
        _replica_poll(fresh, table, pk, links[table], replicas[table], page)
    truth = fresh.sim.truth("account")
    assert {rid: (r["name"], r["telephone1"], r["versionnumber"]) for rid, r in replicas["accounts"].items()} == {
        rid: (r["name"], r["telephone1"], r["versionnumber"]) for rid, r in truth.items()}
    assert sorted((r["accountid"], r["contactid"]) for r in replicas[rel_set].values()) == fresh.sim.state.links(
        ACCOUNT_CONTACT.schema_name)


def test_delete_and_recreate_between_polls_follows_the_switches(fresh: RunningSimulator) -> None:
    _, link, _ = full_load(fresh, "accounts", "name", 50)
    rid = fresh.sim.state.ids("account")[0]
    h = fresh.headers()
    httpx.delete(f"{fresh.api}accounts({rid})", headers=h).raise_for_status()
    httpx.post(f"{fresh.api}accounts", json={"accountid": rid, "name": "Again"}, headers=h).raise_for_status()
    changes, _ = delta(fresh, link)
    mine = [("row" if "accountid" in c else "deleted") for c in changes if rid in (c.get("accountid"), c.get("id"))]
    assert mine == ["row", "deleted"]  # default: the row, then the older delete (a client must not lose the row)
    fresh.sim.set_switches(delta_order="by_version")
    changes, _ = delta(fresh, link)
    mine = [("row" if "accountid" in c else "deleted") for c in changes if rid in (c.get("accountid"), c.get("id"))]
    assert mine == ["deleted", "row"]
    fresh.sim.set_switches(delta_order="upserts_then_deletes", recreated_in_delta="row_only")
    changes, _ = delta(fresh, link)
    assert [c.get("accountid") for c in changes if rid in (c.get("accountid"), c.get("id"))] == [rid]


def test_value_format_switches(fresh: RunningSimulator) -> None:
    rid = fresh.sim.state.create("account", {"name": "S", "des_channels": [100000004, 100000001],
                                             "des_founded": "1999-12-31"})
    url = f"accounts({rid})?$select=des_channels,des_founded,versionnumber"
    row = load(get(fresh, url))
    assert (row["des_channels"], row["des_founded"]) == ("100000001,100000004", "1999-12-31")
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'
    fresh.sim.set_switches(multiselect_format="array", date_only_format="datetime", etag_is_version=False)
    row = load(get(fresh, url))
    assert (row["des_channels"], row["des_founded"]) == ([100000001, 100000004], "1999-12-31T00:00:00Z")
    assert row["@odata.etag"] != f'W/"{row["versionnumber"]}"'


def test_paging_switches(fresh: RunningSimulator) -> None:
    first = load(get(fresh, "contacts?$select=lastname", TRACK.format(2)))
    assert 'istracking="True"' in httpx.URL(first["@odata.nextLink"]).params["$skiptoken"]
    fresh.sim.set_switches(skiptoken_istracking=False)
    first = load(get(fresh, "contacts?$select=lastname", TRACK.format(2)))
    assert 'istracking="False"' in httpx.URL(first["@odata.nextLink"]).params["$skiptoken"]
    fresh.sim.set_switches(page_tracked_loads=False, page_deltas=False)
    whole = load(get(fresh, "contacts?$select=lastname", TRACK.format(2)))
    assert len(whole["value"]) == fresh.sim.state.count("contact")
    assert "@odata.deltaLink" in whole
    for rid in fresh.sim.state.ids("contact"):
        fresh.sim.state.update("contact", rid, {"jobtitle": "p"})
    changes = load(get(fresh, whole["@odata.deltaLink"], "odata.maxpagesize=2"))
    assert len(changes["value"]) == fresh.sim.state.count("contact")
    counted = get(fresh, "contacts/$count?$deltatoken=" + httpx.URL(whole["@odata.deltaLink"]).params["$deltatoken"])
    assert counted.text == str(fresh.sim.state.count("contact"))


def test_the_historic_missing_delta_link_bug_is_a_switch(fresh: RunningSimulator) -> None:
    formatted = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
    assert "@odata.deltaLink" in load(get(fresh, "accounts?$select=name", f"{TRACK.format(500)},{formatted}"))
    fresh.sim.set_switches(formatted_values_drop_delta_link=True)
    body = load(get(fresh, "accounts?$select=name", f"{TRACK.format(500)},{formatted}"))
    assert "@odata.deltaLink" not in body
    assert "@odata.nextLink" not in body


def test_the_concurrency_limit_refuses_requests_beyond_it(fresh: RunningSimulator) -> None:
    fresh.sim.set_limits(concurrency_limit=1, latency_seconds=0.5)
    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses = sorted(pool.map(lambda _: get(fresh, "WhoAmI").status_code, range(3)))
    fresh.sim.set_limits()
    assert statuses[0] == 200
    assert 429 in statuses


def test_churn_makes_live_changes_until_stopped(fresh: RunningSimulator) -> None:
    version = fresh.sim.state.current_version
    httpx.post(f"{fresh.url}/_sim/churn", json={"per_second": 50, "seed": 1}).raise_for_status()
    deadline = time.monotonic() + 10
    while fresh.sim.state.current_version < version + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    httpx.post(f"{fresh.url}/_sim/churn", json={"per_second": 0}).raise_for_status()
    stopped_at = fresh.sim.state.current_version
    assert stopped_at >= version + 5
    time.sleep(0.2)
    assert fresh.sim.state.current_version == stopped_at
    assert fresh.sim.push.messages
