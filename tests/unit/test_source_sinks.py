"""Where the source's pages go: Service Bus (the existing publisher; here its in-memory sender, the
bodies the Service Bus trigger would receive) and then the Service Bus function's handler, or the
router directly; and which one the composition root picks from the settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from shared import config as S
from shared.config import DestinationConfig
from shared.destinations import Layout, open_destination
from shared.destinations.inspect import table_rows
from shared.handlers import handle_notifications
from shared.profiles.model import ProfileCreate
from shared.publisher import InMemorySender, NotificationPublisher
from shared.pull.queue import InMemoryWorkQueue
from shared.pull.sinks import DirectSink, LazyPublisher, ServiceBusSink
from shared.pull.work import Outcome, SourceWork
from shared.root import api_root, build_runtime, single_destination_root
from shared.source.dataverse.cursors import CursorStore
from shared.source.dataverse.settings import DataverseSettings
from shared.store.sql import SqlStore
from tests.support.dataverse_double import ORG_ID, ORG_URL, DataverseDouble

pytestmark = pytest.mark.unit


class NoReads:
    """The destination reads of a sink whose destination is not read in this test (nothing held)."""

    def held(self, entity: str, ids: Sequence[str]) -> dict[str, int]:
        return {}

    def existing(self, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        return []


def test_pages_published_to_service_bus_reach_the_destination_through_the_handler(tmp_path: Path) -> None:
    dv = DataverseDouble()
    ids = [dv.upsert("account", name=f"A{i}") for i in range(5)]
    rt = build_runtime(S.ProfilesConfig(store_dsn=f"sqlite:///{tmp_path / 'admin.db'}", allow_literal=True))
    assert isinstance(rt.store, SqlStore)
    sender = InMemorySender()
    publisher = LazyPublisher(lambda: NotificationPublisher(sender))
    dest_dsn = f"sqlite:///{tmp_path / 'dest.db'}"
    work = SourceWork(
        profiles=rt.service, cursors=CursorStore(rt.store), queue=InMemoryWorkQueue(),
        sink_for=lambda _p: ServiceBusSink(publisher, NoReads()),
        settings=DataverseSettings(token="t", page_size=2), secrets=rt.resolver, transport=dv.transport(),
    )  # fmt: skip
    rt.service.source = work
    p = rt.service.create(ProfileCreate.model_validate({
        "name": "sb", "organizationId": ORG_ID, "destination": dest_dsn, "entities": ["account"],
        "source": {"environmentUrl": ORG_URL, "auth": {"kind": "developmentToken"}},
    }))  # fmt: skip
    rt.service.activate(p.id, check=False)
    outcomes = []
    while got := work.queue.receive(1, 30):
        outcomes.append(work.handle_page(got[0].text))
        work.queue.delete(got[0])
    assert outcomes[-1] is Outcome.DONE
    assert sender.sends >= 4  # metadata and three pages, each accepted before its cursor advanced
    root = single_destination_root(DestinationConfig(destination_dsn=dest_dsn, rejects_dir=str(tmp_path / "r")))
    try:
        for body in sender.bodies:
            result = handle_notifications([body], root).final()
            assert result.conserved
    finally:
        root.close()
    dest = open_destination(dest_dsn, Layout())
    try:
        rows = {str(r["Id"]).lower(): r["name"] for r in table_rows(dest, "account")}
    finally:
        dest.close()
    assert rows == {rid: f"A{i}" for i, rid in enumerate(ids)}
    work.close()
    rt.close()


def test_the_root_picks_service_bus_when_configured_else_the_router(tmp_path: Path) -> None:
    base = {S.ADMIN_STORE: f"sqlite:///{tmp_path / 'admin.db'}", S.ALLOW_LITERAL_DESTINATIONS: "true"}
    profile = ProfileCreate.model_validate({
        "name": "x", "organizationId": ORG_ID, "destination": f"sqlite:///{tmp_path / 'd.db'}",
        "source": {"environmentUrl": ORG_URL, "auth": {"kind": "developmentToken"}},
    })  # fmt: skip
    with_sb = api_root(S.AppConfig.from_env({
        **base, S.SERVICE_BUS_QUEUE_NAME: "des", S.SERVICE_BUS_CONNECTION: "Endpoint=sb://x.servicebus.windows.net/;"
        "SharedAccessKeyName=k;SharedAccessKey=a2V5",
    }))  # fmt: skip
    try:
        assert with_sb.source is not None
        p = with_sb.runtime.service.create(profile)  # type: ignore[union-attr]
        assert isinstance(with_sb.source.sink_for(p), ServiceBusSink)  # nothing opened until a page is published
    finally:
        with_sb.close()
    local = api_root(S.AppConfig.from_env(base))
    try:
        assert local.source is not None
        assert isinstance(local.source.sink_for(local.runtime.service.get(p.id)), DirectSink)  # type: ignore[union-attr]
        assert isinstance(local.source.queue, InMemoryWorkQueue)
    finally:
        local.close()
