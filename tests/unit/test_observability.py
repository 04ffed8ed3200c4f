"""Invocation ids reach fan-out threads; Azure SDK request logs stay at WARNING (issue 10)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from shared.observability import current_invocation_id, invocation, propagating, quiet_azure_sdk_logs

pytestmark = pytest.mark.unit


@dataclass
class FakeContext:
    """A fake of azure.functions.Context: an invocation id and the worker's thread-local storage,
    which the Python worker reads (``invocation_id``) to attribute a log record to an invocation."""

    invocation_id: str
    thread_local_storage: threading.local = field(default_factory=threading.local)


def _seen_in_thread(ctx: FakeContext) -> tuple[str | None, str | None]:
    return getattr(ctx.thread_local_storage, "invocation_id", None), current_invocation_id()


def test_pool_threads_carry_the_invocation_id_with_propagating() -> None:
    ctx = FakeContext("inv-1")
    with invocation(ctx), ThreadPoolExecutor(max_workers=3) as pool:
        seen = list(pool.map(propagating(lambda _: _seen_in_thread(ctx)), range(6)))
    assert seen == [("inv-1", "inv-1")] * 6


def test_without_propagating_a_pool_thread_has_no_invocation_id() -> None:
    ctx = FakeContext("inv-2")
    with invocation(ctx), ThreadPoolExecutor(max_workers=1) as pool:
        seen = pool.submit(_seen_in_thread, ctx).result()
    assert seen == (None, None)  # the defect propagating() fixes


def test_the_thread_is_left_clean_for_the_next_invocation() -> None:
    ctx = FakeContext("inv-3")
    with ThreadPoolExecutor(max_workers=1) as pool:
        with invocation(ctx):
            pool.submit(propagating(lambda: None)).result()
        assert pool.submit(_seen_in_thread, ctx).result() == (None, None)


def test_two_invocations_in_parallel_keep_their_own_ids() -> None:
    a, b = FakeContext("inv-a"), FakeContext("inv-b")
    barrier = threading.Barrier(2)
    results: dict[str, list[tuple[str | None, str | None]]] = {}

    def run(ctx: FakeContext) -> None:
        with invocation(ctx), ThreadPoolExecutor(max_workers=2) as pool:
            barrier.wait()
            results[ctx.invocation_id] = list(pool.map(propagating(lambda _: _seen_in_thread(ctx)), range(4)))

    threads = [threading.Thread(target=run, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"inv-a": [("inv-a", "inv-a")] * 4, "inv-b": [("inv-b", "inv-b")] * 4}


def test_outside_an_invocation_propagating_changes_nothing() -> None:
    def fn(x: int) -> int:
        return x + 1

    assert propagating(fn) is fn
    with invocation(None):
        assert current_invocation_id() is None


def test_azure_sdk_request_logs_are_quieted(caplog: pytest.LogCaptureFixture) -> None:
    http_log = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    before = (logging.getLogger("azure").level, http_log.level)
    try:
        quiet_azure_sdk_logs()
        with caplog.at_level(logging.DEBUG, logger="shared"):
            http_log.info("Request URL: 'https://st.blob.core.windows.net/retry?restype=container'")
            logging.getLogger("azure.storage.blob").warning("throttled")
            logging.getLogger("shared.test").info("ours")
        messages = [r.getMessage() for r in caplog.records]
        assert "throttled" in messages
        assert "ours" in messages
        assert not any("Request URL" in m for m in messages)
    finally:
        logging.getLogger("azure").setLevel(before[0])
        http_log.setLevel(before[1])


# ------------------------------------------------------------------ Application Insights settings
def test_telemetry_settings_parse_the_entra_authentication_string() -> None:
    from shared.config import SettingsError, TelemetryConfig

    assert TelemetryConfig.from_env({}) == TelemetryConfig(None, False, None)
    on = TelemetryConfig.from_env({
        "APPLICATIONINSIGHTS_CONNECTION_STRING": " InstrumentationKey=k;IngestionEndpoint=https://x/ ",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc;Authorization=AAD",
    })  # fmt: skip
    assert on == TelemetryConfig("InstrumentationKey=k;IngestionEndpoint=https://x/", True, "abc")
    system = TelemetryConfig.from_env({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=aad"})
    assert (system.entra, system.client_id) == (True, None)  # the system-assigned identity
    with pytest.raises(SettingsError, match="the only value is AAD"):
        TelemetryConfig.from_env({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Key"})


def test_without_a_connection_string_telemetry_stays_off() -> None:
    from shared.config import TelemetryConfig
    from shared.observability import configure_telemetry

    assert configure_telemetry(TelemetryConfig()) is False


def test_the_invocation_filter_tags_records_inside_an_invocation_only() -> None:
    from shared.observability import INVOCATION_ATTRIBUTE, InvocationIdFilter

    f = InvocationIdFilter()
    record = logging.LogRecord("shared.x", logging.INFO, __file__, 1, "m", None, None)
    assert f.filter(record)
    assert not hasattr(record, INVOCATION_ATTRIBUTE)
    with invocation(FakeContext("inv-9")):
        inside = logging.LogRecord("shared.x", logging.INFO, __file__, 1, "m", None, None)
        assert f.filter(inside)
    assert getattr(inside, INVOCATION_ATTRIBUTE) == "inv-9"


# ------------------------------------------------------------------ the per-entity line the KQL parses
# docs/deploy.md's KQL: parse Message with "entity outcome: profile=" Profile " entity=" Entity
# " received=" Received:long " applied=" Applied:long " stale=" Stale:long " failed=" Failed:long
# " unprocessable=" Unprocessable:long " skipped=" Skipped:long " pending_retry=" PendingRetry:long
# " lag_s=" LagSeconds:real
KQL_SHAPE = (
    r"^entity outcome: profile=(?P<profile>\S+) entity=(?P<entity>\S+) received=(\d+) applied=(\d+) stale=(\d+) "
    r"failed=(?P<failed>\d+) unprocessable=(\d+) skipped=(\d+) pending_retry=(\d+) lag_s=(?P<lag>[\d.]*)$"
)


def test_each_batch_logs_one_line_per_profile_and_entity(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re
    from datetime import UTC, datetime, timedelta

    from shared.destinations import redaction
    from shared.routing import log_entity_outcomes
    from shared.store.base import EntityDelta, MetricsEntry

    # About the line's shape, not the redaction: secrets other tests of this worker process made the
    # redaction remember (it masks them by value in every log line) must not mask an entity name here.
    monkeypatch.setattr(redaction, "_SORTED", ())

    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    entries = [
        MetricsEntry("p1", {
            "account": EntityDelta(received=5, applied=3, failed=2, last_changed_on=now - timedelta(seconds=42.5)),
            "contact": EntityDelta(received=1, stale=1),
            "": EntityDelta(pending_retry=3),  # the profile's own row: not an entity
        }),
        MetricsEntry("", {"lead": EntityDelta(received=2, skipped=2)}),
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="shared.routing"):
        log_entity_outcomes(entries, now)
    lines = [r.getMessage() for r in caplog.records]
    parsed = [re.match(KQL_SHAPE, line) for line in lines]
    assert all(parsed), lines
    got = {(m["profile"], m["entity"]): (m["failed"], m["lag"]) for m in parsed if m}
    assert got == {("p1", "account"): ("2", "42.5"), ("p1", "contact"): ("0", ""), ("unrouted", "lead"): ("0", "")}
