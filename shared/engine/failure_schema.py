"""The failure log's columns (DES's failure log), defined once: the local CSV (replay CLI), the
blob failure log, the admin API's CSV and :meth:`RecordFailure.log_row` all use these."""

from __future__ import annotations

ENTITY = "Entity"
RECORD_ID = "RecordId"
NOTIFICATION_TIME = "NotificationTime"
CHANGE_TYPE = "ChangeType"
VERSION = "Version"
FAILURE_REASON = "FailureReason"
LOGGED_AT = "LoggedAt"  # when the line was written (blob failure log and API only)

# A failed record's line (local files: the file's own time says when).
COLUMNS: tuple[str, ...] = (ENTITY, RECORD_ID, NOTIFICATION_TIME, CHANGE_TYPE, VERSION, FAILURE_REASON)
# The blob failure log's and the admin API's lines.
LOGGED_COLUMNS: tuple[str, ...] = (*COLUMNS, LOGGED_AT)
