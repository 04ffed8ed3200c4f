"""The failure log on Azurite: DES's CSV columns in failurelog/<profile>/<yyyy>/<mm>/<dd>/<hh>/, append
blobs with a header, the blob reject sink, and the 30-day retention cleanup."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from shared.contract.models import Notification
from shared.contract.parse import Unprocessable
from shared.engine.failure_schema import LOGGED_COLUMNS
from shared.engine.outcomes import RecordFailure
from shared.storage.account import Storage
from shared.storage.blobs import FAILED, FAILURELOG, UNPROCESSABLE
from shared.storage.failurelog import FailureLog, blob_hour, cleanup_retention
from shared.tools.azurite import Azurite
from tests.support.metrics import note

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 21, 14, 37, 5, tzinfo=UTC)


def failure(i: int, reason: str) -> RecordFailure:
    return RecordFailure(Notification.model_validate(note(i, 40 + i, "update", name=f"n{i}")), reason)


class Clock:
    """A settable clock for the stores (the hour folders depend on it)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_failure_log_lines_are_des_csv_by_profile_and_hour(storage: Storage, azurite: Azurite) -> None:
    log = FailureLog(storage.stores, clock=lambda: T0, writer="w1")
    name = log.append("profile-a", [failure(1, 'value "x"; does not fit, really'), failure(2, "second")])
    assert name == "profile-a/2026/11/21/14/w1.csv"
    log.append("profile-a", [failure(3, "third")])  # same hour, same writer: appended
    plain = BlobServiceClient.from_connection_string(azurite.connection_string)
    blob = plain.get_blob_client(FAILURELOG, name)
    assert blob.get_blob_properties().blob_type == "AppendBlob"
    text = blob.download_blob().readall().decode()
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == list(LOGGED_COLUMNS)
    assert lines[0][:5] == ["Entity", "RecordId", "NotificationTime", "ChangeType", "Version"]
    assert "FailureReason" in lines[0]
    rows = list(log.rows("profile-a"))
    assert [r["RecordId"][-1] for r in rows] == ["1", "2", "3"]
    assert rows[0]["FailureReason"] == 'value "x"; does not fit, really'
    assert rows[0]["Entity"] == "account"
    assert rows[0]["NotificationTime"] == "2026-11-21T10:00:00Z"
    assert rows[0]["ChangeType"] == "update"
    assert rows[0]["LoggedAt"].startswith("2026-11-21T14:37:05")
    # Another writer (another process) gets its own blob: appends never interleave.
    other = FailureLog(storage.stores, clock=lambda: T0, writer="w2")
    assert other.append("profile-a", [failure(4, "x")]) == "profile-a/2026/11/21/14/w2.csv"
    assert len(list(log.rows("profile-a"))) == 4
    assert list(log.rows("profile-b")) == []
    assert list(log.rows("profile-a", since=T0 + timedelta(hours=1))) == []
    assert len(list(log.rows("profile-a", since=T0, until=T0))) == 4


def test_blob_rejects_write_log_parked_and_unprocessable(storage: Storage) -> None:
    sink = storage.rejects("profile-c")
    sink.failures([failure(5, "rejected by the destination")])
    sink.unprocessable([Unprocessable("{broken", "malformed JSON: Expecting value", None, None)])
    sink.failures([])
    sink.unprocessable([])
    rows = list(storage.failure_log.rows("profile-c"))
    assert [r["FailureReason"] for r in rows] == ["rejected by the destination"]
    parked = list(storage.parked.entries("profile-c"))
    assert parked[0]["notification"]["recordId"] == rows[0]["RecordId"]
    assert parked[0]["notification"]["attributes"] == {"name": "n5"}
    kept = list(storage.unprocessable.entries("profile-c"))
    assert [(k["reason"], k["body"]) for k in kept] == [("malformed JSON: Expecting value", "{broken")]
    with pytest.raises(ValueError, match="cannot name a blob folder"):
        storage.rejects("../other").failures([failure(6, "x")])


def test_retention_deletes_what_is_older_than_30_days(storage: Storage) -> None:
    clock = Clock(T0 - timedelta(days=31))
    old = Storage(storage.stores, clock)
    old.rejects("p").failures([failure(7, "old")])
    old.rejects("p").unprocessable([Unprocessable("{", "old", None, None)])
    clock.now = T0 - timedelta(days=29)
    old.rejects("p").failures([failure(8, "recent")])
    before = {c: sorted(storage.stores.names(c)) for c in (FAILURELOG, FAILED, UNPROCESSABLE)}
    assert all(len(v) >= 1 for v in before.values())
    deleted = cleanup_retention(storage.stores, now=T0)
    assert deleted == 3  # the 31-day-old log, parked failure and unprocessable
    assert [r["FailureReason"] for r in storage.failure_log.rows("p")] == ["recent"]
    assert len(list(storage.stores.names(FAILED))) == 1
    assert list(storage.stores.names(UNPROCESSABLE)) == []
    assert cleanup_retention(storage.stores, now=T0) == 0


def test_blob_hour_reads_the_folder_names() -> None:
    assert blob_hour("p/2026/11/21/14/w.csv") == datetime(2026, 11, 21, 14, tzinfo=UTC)
    assert blob_hour("p/2026/13/21/14/w.csv") is None
    assert blob_hour("p/w.csv") is None
