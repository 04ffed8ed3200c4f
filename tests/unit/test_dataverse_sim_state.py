"""The Dataverse simulator's state machine (no HTTP): generation, versions, paging, delta windows,
tombstones, token expiry, writes and cascades. The reference is shared/reference/dataverse.md."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.tools.dataverse_sim.generate import populate
from shared.tools.dataverse_sim.schema import ACCOUNT_CONTACT, AttributeDef
from shared.tools.dataverse_sim.state import EXPIRED_CODE, DataverseState, SteppingClock
from shared.tools.dataverse_sim.switches import Switches
from shared.tools.dataverse_sim.values import Ref, SimError

pytestmark = pytest.mark.unit
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REL = ACCOUNT_CONTACT.schema_name


def make_state(records: int = 10, seed: int = 1, **switches: Any) -> DataverseState:
    state = DataverseState(seed=seed, switches=Switches(**switches), clock=SteppingClock(START))
    populate(state, records)
    return state


def all_pages(state: DataverseState, entity: str, limit: int) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        rows, more = state.page(entity, after, limit)
        ids += [r[state.entities[entity].primary_id] for r in rows]
        if not more:
            return ids
        after = ids[-1]


def test_the_generated_organization_is_deterministic_per_seed() -> None:
    a, b, c = make_state(seed=7), make_state(seed=7), make_state(seed=8)
    for entity in ("account", "contact", "opportunity", REL):
        assert a.truth(entity) == b.truth(entity)
    assert a.truth("account") != c.truth("account")
    assert a.organization == b.organization
    assert a.organization.organization_id != c.organization.organization_id


def test_the_generated_organization_has_every_kind_of_value() -> None:
    state = make_state(records=30)
    accounts = list(state.truth("account").values())
    contacts = list(state.truth("contact").values())
    assert len(accounts) == 30
    assert len(contacts) == 60
    assert state.count("opportunity") == 30
    assert state.links(REL)
    values = [v for row in accounts + contacts for v in row.values()]
    assert any(v is None for v in values)
    assert any(isinstance(v, Decimal) for v in values)
    assert any(isinstance(v, bool) for v in values)
    assert any(isinstance(v, tuple) for v in values)  # multi-select
    assert any(isinstance(v, date) and not isinstance(v, datetime) for v in values)  # DateOnly
    assert any(isinstance(v, str) and not v.isascii() for v in values)
    owners = {row["ownerid"].entity for row in accounts + contacts}
    assert owners == {"systemuser", "team"}
    parents = {row["parentcustomerid"].entity for row in contacts if row["parentcustomerid"] is not None}
    assert parents == {"account", "contact"}  # polymorphic customer lookup
    assert any(row["parentaccountid"] is not None for row in accounts)
    assert {row["statecode"] for row in state.truth("opportunity").values()} >= {0, 1}


def test_every_write_takes_the_next_version_and_the_clock_as_modifiedon() -> None:
    state = make_state()
    rid = state.ids("account")[0]
    before = state.get("account", rid)
    assert before is not None
    version = state.current_version
    state.update("account", rid, {"name": "Renamed ✨"})
    after = state.get("account", rid)
    assert after is not None
    assert after["versionnumber"] == version + 1 == state.current_version
    assert after["modifiedon"] > before["modifiedon"]
    assert after["createdon"] == before["createdon"]
    new_id = state.create("contact", {"lastname": "Neu"})
    created = state.get("contact", new_id)
    assert created is not None
    assert created["versionnumber"] == version + 2
    assert created["statecode"] == 0
    assert created["statuscode"] == 1
    assert created["ownerid"] == Ref(state.organization.user_id, "systemuser")


def test_paging_returns_every_row_once_in_primary_key_order() -> None:
    state = make_state(records=23)
    ids = all_pages(state, "account", 5)
    assert ids == sorted(state.truth("account"))


def test_a_delta_returns_changed_rows_by_version_then_deletes() -> None:
    state = make_state()
    since = state.current_version
    a, b, c = state.ids("account")[:3]
    state.update("account", b, {"telephone1": "1"})
    state.delete("account", a)
    state.update("account", c, {"telephone1": "2"})
    new = state.create("account", {"name": "New"})
    items, more = state.delta("account", since, state.current_version, None, None)
    assert not more
    upserts = [i.record_id for i in items if i.row is not None]
    deletes = [i.record_id for i in items if i.row is None]
    assert upserts[-3:] == [b, c, new]  # (cascaded updates of rows pointing at a may come first)
    assert deletes == [a]
    assert items[-1].row is None  # deletes after upserts (the documented order)


def test_delete_then_recreate_in_one_window_follows_the_switch() -> None:
    state = make_state()
    since = state.current_version
    rid = state.ids("account")[0]
    state.delete("account", rid)
    state.create("account", {"name": "Back again"}, rid)
    items, _ = state.delta("account", since, state.current_version, None, None)
    mine = [(i.key[0], i.row is None) for i in items if i.record_id == rid]
    assert mine == [(0, False), (1, True)]  # the row, then a tombstone (row_and_tombstone)
    state.switches.recreated_in_delta = "row_only"
    items, _ = state.delta("account", since, state.current_version, None, None)
    assert [(i.row is None) for i in items if i.record_id == rid] == [False]
    state.switches.delta_order = "by_version"
    state.switches.recreated_in_delta = "row_and_tombstone"
    items, _ = state.delta("account", since, state.current_version, None, None)
    mine_in_order = [i.row is None for i in items if i.record_id == rid]
    assert mine_in_order == [True, False]  # the delete, then the re-created row


def test_delta_pages_cut_on_a_keyset_so_a_change_during_paging_is_not_lost() -> None:
    state = make_state(records=12)
    since = state.current_version
    ids = state.ids("contact")
    for rid in ids:
        state.update("contact", rid, {"jobtitle": "x"})
    snapshot = state.current_version
    first, more = state.delta("contact", since, snapshot, None, 5)
    assert more
    assert len(first) == 5
    later = [i.record_id for i in state.delta("contact", since, snapshot, first[-1].key, None)[0]]
    moved = later[0]
    state.update("contact", moved, {"jobtitle": "changed while paging"})  # leaves the window (version > snapshot)
    rest, _ = state.delta("contact", since, snapshot, first[-1].key, None)
    seen = {i.record_id for i in first} | {i.record_id for i in rest}
    assert moved not in seen
    assert seen | {moved} == set(ids)
    nxt, _ = state.delta("contact", snapshot, state.current_version, None, None)
    assert moved in {i.record_id for i in nxt}  # it comes in the next delta


def test_expired_unknown_and_too_old_delta_tokens_are_refused() -> None:
    state = make_state()
    token = state.issue_token("account", state.current_version)
    assert state.check_token("account", token) == state.current_version
    with pytest.raises(SimError) as unknown:
        state.check_token("account", "123!01/01/2020 00:00:00")
    assert unknown.value.code == EXPIRED_CODE
    with pytest.raises(SimError):
        state.check_token("contact", token)  # issued for another table
    state.expire_delta_tokens("account")
    with pytest.raises(SimError) as expired:
        state.check_token("account", token)
    assert expired.value.code == "0x80044352"
    assert expired.value.status == 400
    assert "Please perform a full sync" in expired.value.message
    fresh = state.issue_token("contact", state.current_version)
    clock = state.clock
    assert isinstance(clock, SteppingClock)
    clock.now += timedelta(days=state.switches.expire_change_tracking_in_days, seconds=1)
    with pytest.raises(SimError):
        state.check_token("contact", fresh)


def test_expiry_purges_tombstones_and_a_schema_change_expires_tokens() -> None:
    state = make_state()
    state.delete("account", state.ids("account")[0])
    assert state.tombstones("account")
    token = state.issue_token("account", state.current_version)
    state.expire_delta_tokens()
    assert state.tombstones("account") == []
    token = state.issue_token("account", state.current_version)
    state.add_attribute("account", AttributeDef("des_newcolumn", "String", max_length=20))
    with pytest.raises(SimError):
        state.check_token("account", token)
    rid = state.ids("account")[0]
    assert state.get("account", rid)["des_newcolumn"] is None  # type: ignore[index]
    state.update("account", rid, {"des_newcolumn": "set"})
    assert state.get("account", rid)["des_newcolumn"] == "set"  # type: ignore[index]


def test_deleting_a_record_clears_lookups_to_it_and_removes_its_links() -> None:
    state = make_state(records=15)
    account = next(a for a, c in state.links(REL)
                   if any(isinstance(r["parentcustomerid"], Ref) and r["parentcustomerid"].id == a
                          for r in state.truth("contact").values()))
    children = [rid for rid, r in state.truth("contact").items()
                if isinstance(r["parentcustomerid"], Ref) and r["parentcustomerid"].id == account]
    since = state.current_version
    state.delete("account", account)
    for child in children:
        row = state.get("contact", child)
        assert row is not None
        assert row["parentcustomerid"] is None
        assert row["versionnumber"] > since
    assert all(a != account for a, _ in state.links(REL))
    link_deletes = [i for i in state.delta(REL, since, state.current_version, None, None)[0] if i.row is None]
    assert link_deletes


@pytest.mark.parametrize(("entity", "values", "status"), [
    ("account", {"industrycode": 999}, 400),
    ("account", {"name": "x" * 161}, 400),
    ("account", {"nosuchcolumn": 1}, 400),
    ("account", {"revenue": "lots"}, 400),
    ("account", {"versionnumber": 5}, 400),
    ("account", {"description": "no name"}, 400),  # name is required
    ("contact", {"lastname": "L", "parentcustomerid": Ref("00000000-0000-0000-0000-000000000001", "account")}, 404),
    ("contact", {"lastname": "L", "parentcustomerid": Ref("00000000-0000-0000-0000-000000000001", "team")}, 400),
    ("opportunity", {"name": "o", "statecode": 1, "statuscode": 1}, 400),  # status of another state
])
def test_writes_are_validated(entity: str, values: dict[str, Any], status: int) -> None:
    state = make_state(records=2)
    version = state.current_version
    with pytest.raises(SimError) as err:
        state.create(entity, values)
    assert err.value.status == status
    assert state.current_version == version


def test_values_are_coerced_to_their_column_types() -> None:
    state = make_state(records=2)
    rid = state.create("account", {"name": "T", "revenue": Decimal("12.5"), "des_channels": "100000003,100000000",
                                   "des_founded": "2001-02-03", "lastusedincampaign": "2026-01-02T03:04:05.678Z"})
    row = state.get("account", rid)
    assert row is not None
    assert row["revenue"] == Decimal("12.5000")
    assert str(row["revenue"]) == "12.5000"
    assert row["revenue_base"] == Decimal("12.5000")  # base currency: rate 1
    assert row["des_channels"] == (100000000, 100000003)
    assert row["des_founded"] == date(2001, 2, 3)
    assert row["lastusedincampaign"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    state.update("account", rid, {"statecode": 1})
    row = state.get("account", rid)
    assert row is not None
    assert (row["statecode"], row["statuscode"]) == (1, 2)


def test_associating_twice_is_refused_and_links_are_change_tracked() -> None:
    state = make_state(records=3)
    account, contact = state.ids("account")[0], state.ids("contact")[0]
    if (account, contact) in state.links(REL):
        state.disassociate(REL, account, contact)
    since = state.current_version
    link = state.associate(REL, account, contact)
    with pytest.raises(SimError) as dup:
        state.associate(REL, account, contact)
    assert dup.value.status == 412
    items, _ = state.delta(REL, since, state.current_version, None, None)
    assert [(i.record_id, i.row is None) for i in items] == [(link, False)]
    state.disassociate(REL, account, contact)
    items, _ = state.delta(REL, since, state.current_version, None, None)
    assert (link, True) in [(i.record_id, i.row is None) for i in items]


# ------------------------------------------------------------------------------ property test
OPS = st.lists(st.tuples(st.sampled_from(["update", "create", "delete", "recreate", "poll", "link", "unlink"]),
                         st.integers(0, 10**6)), min_size=1, max_size=40)


def _apply_delta(replica: dict[str, dict[str, Any]], items: list[Any], pk: str) -> None:
    for item in items:
        if item.row is None:
            replica.pop(item.record_id, None)
        else:
            replica[item.record_id] = item.row


def _poll(state: DataverseState, entity: str, since: int | None, replica: dict[str, dict[str, Any]],
          page: int) -> int:
    snapshot = state.current_version
    pk = state.entities[entity].primary_id
    if since is None:
        after = None
        while True:
            rows, more = state.page(entity, after, page)
            for row in rows:
                replica[row[pk]] = row
            if not more:
                return snapshot
            after = rows[-1][pk]
    key = None
    while True:
        items, more = state.delta(entity, since, snapshot, key, page)
        _apply_delta(replica, items, pk)
        if not more:
            return snapshot
        key = items[-1].key


@settings(max_examples=40)
@given(ops=OPS, page=st.integers(1, 6), order=st.sampled_from(["by_version", "row_only"]))
def test_a_client_following_the_deltas_converges_to_the_truth(ops: list[tuple[str, int]], page: int,
                                                              order: str) -> None:
    """With deltas in version order (or re-created rows sent without their old tombstone), a replica
    that pages the initial load and then applies each delta in order equals the simulator's data."""
    switches: dict[str, Any] = (
        {"delta_order": "by_version"} if order == "by_version" else {"recreated_in_delta": "row_only"})
    state = make_state(records=4, **switches)
    entities = ["account", "contact", REL]
    replicas: dict[str, dict[str, dict[str, Any]]] = {e: {} for e in entities}
    cursors: dict[str, int | None] = dict.fromkeys(entities)
    deleted: list[str] = []
    for op, n in ops:
        accounts = state.ids("account")
        if op == "update" and accounts:
            state.update("account", accounts[n % len(accounts)], {"telephone1": str(n)})
        elif op == "create":
            state.create("account", {"name": f"n{n}"})
        elif op == "delete" and accounts:
            rid = accounts[n % len(accounts)]
            state.delete("account", rid)
            deleted.append(rid)
        elif op == "recreate" and deleted:
            rid = deleted.pop(n % len(deleted))
            state.create("account", {"name": "again"}, rid)
        elif op == "link" and accounts:
            contacts = state.ids("contact")
            a, c = accounts[n % len(accounts)], contacts[n % len(contacts)]
            if (a, c) not in state.links(REL):
                state.associate(REL, a, c)
        elif op == "unlink" and state.links(REL):
            links = state.links(REL)
            state.disassociate(REL, *links[n % len(links)])
        elif op == "poll":
            for entity in entities:
                cursors[entity] = _poll(state, entity, cursors[entity], replicas[entity], page)
    for entity in entities:
        _poll(state, entity, cursors[entity], replicas[entity], page)
        assert replicas[entity] == state.truth(entity), entity


def test_delta_tokens_of_two_tables_at_the_same_version_stay_valid_each() -> None:
    from shared.tools.dataverse_sim.generate import populate
    from shared.tools.dataverse_sim.state import DataverseState

    s = DataverseState(seed=1)
    populate(s, 3)
    a, c = s.issue_token("account", 100), s.issue_token("contact", 100)
    assert a == c  # the same text: version!timestamp
    assert s.check_token("account", a) == 100
    assert s.check_token("contact", c) == 100
