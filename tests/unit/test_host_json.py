"""host.json (issue 10): Service Bus settings that keep every message's lock safe, against the queue
the Bicep deploys."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from tests.support.infra import ROOT, one

pytestmark = pytest.mark.unit


def _hms(text: str) -> timedelta:
    h, m, s = text.split(":")
    return timedelta(hours=int(h), minutes=int(m), seconds=float(s))


def _iso(text: str) -> timedelta:
    found = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", text)
    assert found, text
    h, m, s = (int(x or 0) for x in found.groups())
    return timedelta(hours=h, minutes=m, seconds=s)


HOST = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
SERVICE_BUS = HOST["extensions"]["serviceBus"]


def test_no_prefetch_so_no_message_waits_with_an_unrenewed_lock() -> None:
    # Prefetched messages sit in the client's buffer while their lock runs; the host renews the locks
    # of the batch being processed only. With prefetch off every message is received when needed.
    assert SERVICE_BUS.get("prefetchCount", 0) == 0


def test_lock_renewal_covers_the_function_timeout() -> None:
    assert _hms(SERVICE_BUS["maxAutoLockRenewalDuration"]) >= _hms(HOST["functionTimeout"])


def test_a_batch_wait_fits_well_inside_the_queue_lock() -> None:
    queue = one("Microsoft.ServiceBus/namespaces/queues")
    lock = _iso(queue.prop("properties", "lockDuration"))
    assert lock == timedelta(minutes=5)
    assert _hms(SERVICE_BUS["maxBatchWaitTime"]) * 10 <= lock
