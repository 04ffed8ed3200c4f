"""How SQLite errors are classified (record / entity / transient / environmental).

``sqlite3`` errors carry the extended result code (``sqlite_errorcode``); its low byte is the
primary code (https://www.sqlite.org/rescode.html). ``SQLITE_ERROR`` (1) is generic: for it the
message decides, and only the schema messages listed here make it entity-level. The table is
repeated in docs/sqlserver.md ("Error taxonomy") and each row is tested in
tests/integration/test_error_taxonomy.py with a real SQLite error.
"""

from __future__ import annotations

import sqlite3

from shared.engine.ports import ErrorClass, TransientDestinationError, classify_own

SQLITE_ERROR = 1


class TransactionLost(TransientDestinationError):
    """SQLite rolled the whole transaction back after an error; the batch must be redone."""


# Primary result code -> class.
CODES: dict[int, ErrorClass] = {
    3: ErrorClass.ENVIRONMENTAL,  # SQLITE_PERM: access permission denied
    5: ErrorClass.TRANSIENT,  # SQLITE_BUSY: another connection holds the write lock (busy timeout ran out)
    6: ErrorClass.TRANSIENT,  # SQLITE_LOCKED: a conflict within this connection's shared cache
    7: ErrorClass.ENVIRONMENTAL,  # SQLITE_NOMEM
    8: ErrorClass.ENVIRONMENTAL,  # SQLITE_READONLY: the file or directory is read-only
    9: ErrorClass.ENVIRONMENTAL,  # SQLITE_INTERRUPT: cancelled
    10: ErrorClass.ENVIRONMENTAL,  # SQLITE_IOERR: disk I/O error
    11: ErrorClass.ENVIRONMENTAL,  # SQLITE_CORRUPT
    13: ErrorClass.ENVIRONMENTAL,  # SQLITE_FULL: disk full
    14: ErrorClass.ENVIRONMENTAL,  # SQLITE_CANTOPEN
    26: ErrorClass.ENVIRONMENTAL,  # SQLITE_NOTADB
    18: ErrorClass.RECORD,  # SQLITE_TOOBIG: a string, blob or row larger than SQLITE_MAX_LENGTH
    19: ErrorClass.RECORD,  # SQLITE_CONSTRAINT (NOT NULL, CHECK, UNIQUE of someone else's index)
    20: ErrorClass.RECORD,  # SQLITE_MISMATCH: datatype mismatch (a STRICT table)
    25: ErrorClass.RECORD,  # SQLITE_RANGE
}
# SQLITE_ERROR messages that are about the table, not about a record.
ENTITY_MESSAGES = (
    "too many columns",  # SQLITE_MAX_COLUMN (2000 by default)
    "reserved for internal use",  # sqlite_* names
    "already exists",  # a table of that name
    "there is already",  # an index of that name
    "too many sql variables",  # a statement wider than SQLITE_MAX_VARIABLE_NUMBER
    "no such table",  # dropped underneath us
    "has no column named",  # a column dropped underneath us
    "is a view",  # the name is a view
)


def classify(exc: BaseException) -> ErrorClass:
    own = classify_own(exc)
    if own is not None:
        return own
    if not isinstance(exc, sqlite3.Error):
        return ErrorClass.RECORD
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary in CODES:
            return CODES[primary]
    text = str(exc).lower()
    if code is None or code & 0xFF == SQLITE_ERROR:
        if any(m in text for m in ENTITY_MESSAGES):
            return ErrorClass.ENTITY
        if "locked" in text or "busy" in text:
            return ErrorClass.TRANSIENT
        if "disk i/o" in text or "unable to open" in text or "readonly" in text:
            return ErrorClass.ENVIRONMENTAL
    return ErrorClass.RECORD
