"""The Dataverse source end to end against the Web API test double, into real SQLite and PostgreSQL.

The same scenarios run against the simulator over HTTP in test_dataverse_sim.py.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.source.dataverse import runner as runner_module
from shared.source.dataverse.client import SourceUnavailable, Throttled
from shared.source.dataverse.cursors import CursorBusy, CursorLost, InitialSyncState, Phase, source_status
from shared.source.dataverse.runner import EntityFailed
from tests.support.dataverse_double import API, ORG_URL, DataverseDouble
from tests.support.dataverse_sync import PROFILE, CrashingSink, assert_converged, drive, rig

ACCOUNT_PLAIN = ("name", "revenue", "industrycode", "statecode")


def seed(dv: DataverseDouble, n: int = 7) -> list[str]:
    ids = [dv.upsert("account", name=f"Account {i}", revenue=Decimal(f"{1000 + i}.5000"), industrycode=1 + i % 2)
           for i in range(n)]  # fmt: skip
    dv.upsert("account", ids[1], parentaccountid=("account", ids[0]))
    return ids


def test_initial_sync_then_delta_passes_converge(tmp_path: Path, dsn: str) -> None:
    dv = DataverseDouble()
    ids = seed(dv)
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        runner = r.runner()
        units = drive(runner, "account")  # metadata, 3 pages of 3, reconcile
        assert units == 1 + 3 + 1
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN, lookups=["parentaccountid"])
        cursor = r.cursors.get(PROFILE, "account")
        assert cursor is not None
        assert cursor.phase is Phase.DELTA
        assert cursor.initial_sync_state is InitialSyncState.COMPLETED
        assert cursor.link is not None
        assert "$deltatoken=" in cursor.link
        # typed columns from the metadata: money exact
        assert Decimal(str(r.table("account")[ids[0]]["revenue"])) == Decimal("1000.5")

        dv.upsert("account", ids[2], name="renamed", revenue=Decimal("12345678901.1234"))
        dv.delete("account", ids[3])
        dv.upsert("account", ids[4], parentaccountid=("account", ids[2]))
        new = dv.upsert("account", name="new one")
        drive(runner, "account")
        truth = dv.truth("account")
        assert new in truth
        assert_converged(r, "account", truth, plain=ACCOUNT_PLAIN, lookups=["parentaccountid"])
        assert Decimal(str(r.table("account")[ids[2]]["revenue"])) == Decimal("12345678901.1234")

        # an empty pass changes nothing and still moves the poll times
        before = r.cursors.get(PROFILE, "account")
        drive(runner, "account")
        after = r.cursors.get(PROFILE, "account")
        assert before is not None
        assert after is not None
        assert after.pages == before.pages + 1
        assert after.rows_read == before.rows_read
        status = {s.entity: s for s in source_status(r.cursors, PROFILE, now=r.clock.now + timedelta(minutes=5))}
        assert status["account"].initial_sync_state == "Completed"
        assert status["account"].rows_read == after.rows_read
        assert status["account"].source_lag_seconds is not None
        assert status["account"].next_poll == r.clock.now + timedelta(seconds=60)


@pytest.mark.parametrize("verify", [True, False])
def test_delete_then_recreate_same_id_across_and_within_deltas(tmp_path: Path, dsn: str, verify: bool) -> None:
    dv = DataverseDouble()
    ids = seed(dv, 4)
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        runner = r.runner(verify_deletes=verify)
        drive(runner, "account")
        # across deltas: the delete in one pass, the re-creation (same id) in the next
        dv.delete("account", ids[0])
        drive(runner, "account")
        assert ids[0] not in r.table("account")
        dv.upsert("account", ids[0], name="back again")
        drive(runner, "account")
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)
        # within one delta: deleted and re-created between two polls
        dv.delete("account", ids[1])
        dv.upsert("account", ids[1], name="re-created before the poll")
        drive(runner, "account")
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)
        # within one pass: the delete entry is served, then the record comes back before the next page
        dv.delete("account", ids[2])
        for i in range(7):  # enough changes for the pass to have several pages
            dv.upsert("account", ids[3], name=f"busy {i}")
        recreated = False

        def recreate_after_delete_page() -> None:
            nonlocal recreated
            if not recreated and ids[2] not in dv.rows["account"]:
                dv.upsert("account", ids[2], name="back mid-pass")
                recreated = True

        drive(runner, "account", on_page=recreate_after_delete_page)
        drive(runner, "account")
        assert recreated
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)
        # the delete log has the deletes that took effect, with their (odd) versions
        log = list(r.dest.table_rows(r.dest.layout.delete_log_table))
        logged = {str(x["RecordId"]).lower() for x in log}
        assert {ids[0], ids[2]} <= logged
        assert ids[1] not in logged  # re-created before any poll saw the delete: one row change
        assert all(int(x["VersionNumber"]) % 2 == 1 for x in log)


def test_expired_token_resyncs_and_reconciles(tmp_path: Path, dsn: str) -> None:
    dv = DataverseDouble()
    ids = seed(dv, 8)
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        runner = r.runner()
        drive(runner, "account")
        dv.delete("account", ids[0])
        dv.delete("account", ids[5])
        dv.upsert("account", ids[6], name="changed while the token expired")
        dv.delete("account", ids[7])
        dv.upsert("account", ids[7], name="deleted and re-created while the token expired")
        dv.expire_tokens()
        results = []
        units = drive(runner, "account", on_page=lambda: results.append(r.cursors.get(PROFILE, "account")))
        phases = [c.phase for c in results if c is not None]
        assert Phase.RESYNC in phases
        assert Phase.RECONCILE in phases
        assert units == 1 + 2 + 1  # the expired delta, a full load of 6 rows in pages of 3, reconcile
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)
        log = {str(x["RecordId"]).lower() for x in r.dest.table_rows(r.dest.layout.delete_log_table)}
        assert {ids[0], ids[5]} <= log
        assert ids[7] not in log  # re-created: updated in place, not deleted
        # back to ordinary deltas
        dv.upsert("account", ids[1], name="after the re-sync")
        drive(runner, "account")
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)


def test_throttling_obeys_retry_after_and_gives_up_on_long_waits(tmp_path: Path, dsn: str) -> None:
    dv = DataverseDouble()
    seed(dv, 5)
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        runner = r.runner()
        dv.throttle_next, dv.retry_after = 2, "7"
        drive(runner, "account")
        assert r.sleeps[:2] == [7.0, 7.0]
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)
        dv.upsert("account", name="later")
        before = r.cursors.get(PROFILE, "account")
        dv.throttle_next, dv.retry_after = 1, "3600"  # longer than DES_DATAVERSE_MAX_RETRY_AFTER_SECONDS
        with pytest.raises(Throttled) as caught:
            runner.run_page("account")
        assert caught.value.retry_after == 3600
        assert r.cursors.get(PROFILE, "account") == before  # the cursor did not move
        drive(runner, "account")
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)


def test_server_errors_retry_with_backoff_then_keep_the_cursor(tmp_path: Path, dsn: str) -> None:
    dv = DataverseDouble()
    seed(dv, 5)
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        runner = r.runner()
        dv.fail_next = 3  # max_attempts is 4
        drive(runner, "account")
        assert len(r.sleeps) == 3
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)
        before = r.cursors.get(PROFILE, "account")
        dv.fail_next = 4
        with pytest.raises(SourceUnavailable):
            runner.run_page("account")
        assert r.cursors.get(PROFILE, "account") == before


@pytest.mark.parametrize("after", [True, False])
def test_crash_between_pages_resumes_from_the_last_page(tmp_path: Path, dsn: str, after: bool) -> None:
    dv = DataverseDouble()
    seed(dv, 8)
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        crashing = CrashingSink(r.sink, {3}, after=after)  # publish 1 = metadata, 2 = page 1, 3 = page 2
        first = r.runner(owner="instance-1", sink=crashing)
        first.run_page("account")  # metadata
        first.run_page("account")  # page 1
        with pytest.raises(RuntimeError, match="crash"):
            first.run_page("account")  # page 2
        cursor = r.cursors.get(PROFILE, "account")
        assert cursor is not None
        assert cursor.pages == 1  # page 2 was not committed to the cursor
        # another instance resumes from page 2 (the crashed one released its lease on the way out)
        second = r.runner(owner="instance-2")
        units = drive(second, "account")
        assert units == 3  # pages 2 and 3, reconcile
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)
        final = r.cursors.get(PROFILE, "account")
        assert final is not None
        assert final.pages == 3


def test_two_instances_never_hold_one_cursor(tmp_path: Path, dsn: str) -> None:
    dv = DataverseDouble()
    seed(dv, 4)
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        r.cursors.ensure(PROFILE, "account")
        held = r.cursors.claim(PROFILE, "account", "instance-1", 60)
        with pytest.raises(CursorBusy):
            r.runner(owner="instance-2").run_page("account")
        # instance-1 stalls past its lease; instance-2 takes over and advances
        r.clock.now += timedelta(seconds=61)
        drive(r.runner(owner="instance-2"), "account")
        # instance-1's late advance loses the compare-and-set
        with pytest.raises(CursorLost):
            r.cursors.advance(held, held)
        assert_converged(r, "account", dv.truth("account"), plain=ACCOUNT_PLAIN)


def test_entity_without_change_tracking_fails_with_the_reason(tmp_path: Path, dsn: str) -> None:
    dv = DataverseDouble()
    dv.entities["contact"].change_tracking = False
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        with pytest.raises(EntityFailed, match="change tracking is off"):
            r.runner().run_page("contact")
        (status,) = source_status(r.cursors, PROFILE)
        assert status.initial_sync_state == "Failed"
        assert status.reason is not None
        assert "Track changes" in status.reason
        assert r.store.metrics(PROFILE).entities[0].initial_sync_state == "Failed"


def test_lookups_activities_and_intersect_without_change_tracking(tmp_path: Path, dsn: str) -> None:
    dv = DataverseDouble()
    a = dv.upsert("account", name="A")
    c = dv.upsert("contact", fullname="C", parentcustomerid=("account", a), creditlimit=Decimal("5.0000"))
    c2 = dv.upsert("contact", fullname="D", parentcustomerid=("contact", c), donotemail=True)
    e = dv.upsert("email", subject="hello", regardingobjectid=("contact", c2))
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        runner = r.runner()
        for entity in ("contact", "email"):
            drive(runner, entity)
        assert_converged(r, "contact", dv.truth("contact"), lookups=["parentcustomerid"],
                         plain=("fullname", "creditlimit"))  # fmt: skip
        assert_converged(r, "email", dv.truth("email"), lookups=["regardingobjectid"], plain=("subject",))
        assert e in r.table("email")  # keyed on activityid
    assert any("$select=" in str(q.url) and "_parentcustomerid_value" in str(q.url) for q in dv.requests)
    first = next(q for q in dv.requests if str(q.url).startswith(API + "contacts?"))
    assert first.headers["Prefer"].startswith("odata.track-changes,odata.maxpagesize=3,")
    assert "lookuplogicalname" in first.headers["Prefer"]
    assert first.headers["OData-Version"] == "4.0"


@pytest.mark.parametrize("store_kind", ["sqlite", "postgresql"])
def test_cursor_store_lease_and_compare_and_set(tmp_path: Path, store_kind: str) -> None:
    from dataclasses import replace

    from shared.source.dataverse.cursors import CursorStore
    from shared.store import open_store
    from tests.support.dataverse_sync import Clock
    from tests.support.postgres import fresh_database

    def check(dsn: str) -> None:
        store = open_store(dsn)
        clock = Clock()
        try:
            cursors = CursorStore(store, clock=clock)
            cursors.ensure(PROFILE, "account")
            cursors.ensure(PROFILE, "account")  # idempotent
            a = cursors.claim(PROFILE, "account", "a", 30)
            assert a.phase is Phase.METADATA
            with pytest.raises(CursorBusy):
                cursors.claim(PROFILE, "account", "b", 30)
            a2 = cursors.advance(a, replace(a, phase=Phase.INITIAL, high_water=7), seen=["x", "y"], clear_seen=True)
            a3 = cursors.advance(a2, replace(a2, link="next"), seen=["y", "z"])
            assert cursors.seen(PROFILE, "account") == {"x", "y", "z"}
            clock.now += timedelta(seconds=31)
            b = cursors.claim(PROFILE, "account", "b", 30)
            assert (b.link, b.high_water, b.revision) == ("next", 7, a3.revision)
            with pytest.raises(CursorLost):
                cursors.advance(a3, replace(a3, link="stale"))
            cursors.advance(b, replace(b, phase=Phase.DELTA, link="delta"), clear_seen=True)
            assert cursors.seen(PROFILE, "account") == set()
            got = cursors.get(PROFILE, "account")
            assert got is not None
            assert (got.phase, got.link) == (Phase.DELTA, "delta")
            cursors.release(b)
            assert cursors.claim(PROFILE, "account", "c", 30).lease_owner == "c"
        finally:
            store.close()

    if store_kind == "sqlite":
        check(f"sqlite:///{tmp_path / 'admin.db'}")
    else:
        with fresh_database() as pg:
            check(pg)


class ChunkWatch:
    """Wraps the real sink and records how many destination ids each reconcile read returned."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.chunks: list[int] = []

    def publish(self, entity: str, bodies: Any) -> Any:
        return self.inner.publish(entity, bodies)

    def held(self, entity: str, ids: Any) -> dict[str, int]:
        return dict(self.inner.held(entity, ids))

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        got = list(self.inner.existing(entity, after, limit))
        self.chunks.append(len(got))
        return got


def test_reconcile_reads_the_destination_in_bounded_chunks(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By construction: the reconcile never holds more than RECONCILE_CHUNK destination ids (keyset
    chunks in the destination's key order, uuid order on PostgreSQL), asks the admin store only about
    those, and never reads the whole seen set; what the full load missed is deleted, chunk boundaries
    included."""
    monkeypatch.setattr(runner_module, "RECONCILE_CHUNK", 4)
    dv = DataverseDouble()
    ids = [dv.upsert("account", name=f"A{i}") for i in range(23)]
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        watch = ChunkWatch(r.sink)
        runner = r.runner(sink=watch, page_size=50)
        drive(runner, "account")
        gone = sorted(ids)[::3]  # spread over the key order: first, middle, last chunks
        for rid in gone:
            dv.delete("account", rid)
        dv.expire_tokens()

        def whole_set(*_a: Any) -> set[str]:
            raise AssertionError("the reconcile read every seen id at once")

        monkeypatch.setattr(r.cursors, "seen", whole_set)
        watch.chunks.clear()
        drive(runner, "account")
        assert watch.chunks
        assert max(watch.chunks) <= 4
        assert sum(watch.chunks) == 23  # every destination row looked at once
        assert_converged(r, "account", dv.truth("account"), plain=("name",))
        log = {str(x["RecordId"]).lower() for x in r.dest.table_rows(r.dest.layout.delete_log_table)}
        assert set(gone) <= log


def test_reconcile_of_a_large_table_in_bounded_memory(tmp_path: Path) -> None:
    """60,000 destination rows, all but five returned by the full load: the reconcile's peak Python
    memory stays far below what holding the ids would take (two sets of 60,000 ids: over 10 MB)."""
    import tracemalloc
    from dataclasses import replace as dc_replace
    from datetime import UTC, datetime

    from shared.engine.engine import SyncEngine
    from shared.source.dataverse import mapping as m

    dv = DataverseDouble()
    first = dv.upsert("account", name="the one the source still has")
    with rig(tmp_path, f"sqlite:///{tmp_path / 'dest.db'}", dv.transport(), base_url=ORG_URL) as r:
        runner = r.runner(page_size=50)
        drive(runner, "account")
        state = r.cursors.get(PROFILE, "account")
        assert state is not None
        assert state.info is not None
        org = state.organization_id or ""
        now = datetime(2026, 11, 30, tzinfo=UTC)
        extra = [str(uuid.UUID(int=i + 1)) for i in range(60_000)]
        engine = SyncEngine(r.dest)
        for at in range(0, len(extra), 5000):
            bodies = [m.encode(m.row_notification(state.info, org, {"accountid": rid, "name": "n", "versionnumber": 1},
                                                  change_type="create", read_at=now))
                      for rid in extra[at : at + 5000]]  # fmt: skip
            assert engine.apply_bodies(bodies).applied == len(bodies)
        missing = set(extra[::12_000])  # five ids the "full load" did not return
        claimed = r.cursors.claim(PROFILE, "account", "test-a", 60)
        r.cursors.advance(claimed, dc_replace(claimed, phase=Phase.RECONCILE),
                          seen=[first, *(i for i in extra if i not in missing)])  # fmt: skip
        r.cursors.release(r.cursors.get(PROFILE, "account"))  # type: ignore[arg-type]
        tracemalloc.start()
        try:
            result = runner.run_page("account")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.deletes == len(missing)
        assert peak < 4_000_000, f"reconcile peak {peak / 1e6:.1f} MB"
        assert set(r.table("account")) == {first, *extra} - missing


def test_money_of_twenty_digits_arrives_exactly(tmp_path: Path, dsn: str) -> None:
    """Money and decimals are exact end to end from the Web API's JSON: 20 significant digits (more
    than a double holds) in the initial sync and in a delta, stored exactly (PostgreSQL numeric; SQLite
    keeps the exact text in its DECIMAL(38,4) column, whose name gives it no affinity); ordinary values
    stay numbers."""
    big, bigger = Decimal("1234567890123456.7891"), Decimal("-9999999999999999.9999")
    dv = DataverseDouble()
    a = dv.upsert("account", name="big", revenue=big)
    b = dv.upsert("account", name="ordinary", revenue=Decimal("20000.0000"))
    with rig(tmp_path, dsn, dv.transport(), base_url=ORG_URL) as r:
        runner = r.runner()
        drive(runner, "account")
        rows = r.table("account")
        assert Decimal(str(rows[a]["revenue"])) == big
        assert float(rows[b]["revenue"]) == 20000.0  # type: ignore[arg-type]
        dv.upsert("account", b, revenue=bigger)
        drive(runner, "account")
        assert Decimal(str(r.table("account")[b]["revenue"])) == bigger
        assert Decimal(str(r.table("account")[a]["revenue"])) == big
