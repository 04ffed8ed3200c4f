"""How SQL Server / Azure SQL errors are classified: record / entity / transient / environmental.

pyodbc raises ``pyodbc.Error`` subclasses whose ``args`` are ``(sqlstate, message)``; the message
ends with the native SQL Server error number and the ODBC function, as in
``"[40001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction (Process ID 53) was
deadlocked ... (1205) (SQLExecDirectW)"``. Both the SQLSTATE and the native numbers decide.

The list follows Microsoft.Data.SqlClient's baseline transient errors (deadlock, lock timeout,
Azure SQL throttling, failover and reconfiguration, dropped connections) plus the ODBC SQLSTATEs
for timeouts and communication link failures, and FreeTDS's own connection errors. Environmental
errors (the database cannot write at all: log full, quota, read-only, cancelled, out of memory,
permission) park the batch without failure-logging; entity-level errors (too many columns, DDL
refused) fail one entity's records. The table is in docs/sqlserver.md ("Error taxonomy"); each row
is tested in tests/unit/test_mssql_dialect.py through the recording double.
"""

from __future__ import annotations

import re

from shared.engine.ports import ErrorClass, TransientDestinationError, classify_own

TRANSIENT_NATIVE_ERRORS: frozenset[int] = frozenset(
    {
        1204,  # cannot obtain a LOCK resource at this time
        1205,  # deadlock victim
        1222,  # lock request time out period exceeded (SET LOCK_TIMEOUT)
        233,  # connection established, then an error during login / no process on the other end
        997,  # overlapped I/O in progress during login
        64,  # the specified network name is no longer available
        4060,  # cannot open database requested by the login (Azure SQL: database moving)
        4221,  # login to read-secondary failed: long wait on HADR_DATABASE_WAIT_FOR_TRANSITION_TO_VERSIONING
        10053,  # transport-level error: connection aborted by the software in the host
        10054,  # transport-level error: existing connection forcibly closed by the remote host
        10060,  # network-related error: connection attempt timed out
        10928,  # resource limit reached (Azure SQL)
        10929,  # minimum guarantee / maximum limit reached (Azure SQL)
        40143,  # the service has encountered an error processing your request
        40197,  # the service has encountered an error processing your request (failover, upgrade)
        40501,  # the service is currently busy (throttling)
        40540,  # the service has encountered an error processing your request
        40613,  # database not currently available (reconfiguration, failover)
        42108,  # cannot connect to the SQL pool since it is paused
        42109,  # the SQL pool is warming up
        49918,  # not enough resources to process the request
        49919,  # too many create or update operations in progress
        49920,  # too many operations in progress
        # FreeTDS client-side errors (local use): timeout, read/write failed, cannot connect, dead link
        20003,
        20004,
        20006,
        20009,
        20047,
    }
)
TRANSIENT_SQLSTATES: frozenset[str] = frozenset(
    {
        "HYT00",  # timeout expired (query timeout)
        "HYT01",  # connection timeout expired
        "08S01",  # communication link failure
        "08001",  # client unable to establish connection
        "08003",  # connection does not exist (dropped underneath us)
        "08007",  # connection failure during transaction
        "40001",  # serialization failure (SQL Server reports deadlocks with it)
    }
)

ENVIRONMENTAL_NATIVE_ERRORS: frozenset[int] = frozenset(
    {
        9002,  # the transaction log is full
        40552,  # the session was terminated because of excessive transaction log space usage
        40544,  # the database has reached its size quota
        1105,  # could not allocate space: the filegroup is full
        1101,  # could not allocate a new page: the filegroup is full
        8645,  # a timeout occurred while waiting for memory resources (memory grant)
        701,  # there is insufficient system memory
        3906,  # failed to update the database because it is read-only (after a failover)
        229,  # permission denied on an object
        230,  # permission denied on a column
        262,  # permission denied in database (CREATE TABLE)
        3701,  # cannot drop/alter: it does not exist or you do not have permission
    }
)
ENVIRONMENTAL_SQLSTATES: frozenset[str] = frozenset({"HY008"})  # operation cancelled
ENTITY_NATIVE_ERRORS: frozenset[int] = frozenset(
    {
        1702,  # CREATE TABLE failed: more than 1,024 columns
        1701,  # creating or altering the table failed: the minimum row size would exceed 8,060 bytes
        334,  # OUTPUT without INTO on a table with an enabled trigger
        4922,  # ALTER COLUMN failed: objects (an index, a constraint) access the column
        5074,  # an object is dependent on the column
        2714,  # there is already an object of that name (a view, ...)
        2705,  # column names in each table must be unique
        271,  # the column cannot be modified: computed
        273,  # cannot insert an explicit value into a timestamp (rowversion) column
        544,  # cannot insert an explicit value into an identity column
        8102,  # cannot update an identity column
        207,  # invalid column name (dropped underneath us)
        208,  # invalid object name (dropped underneath us)
        1913,  # an index of that name already exists
        4901,  # ALTER TABLE may only add columns that can hold NULL
    }
)

# The native error number of a diagnostic record: "(1205) (SQLExecDirectW)" at the end of the
# first record, or "(10054)" before the "; [08S01] ..." of the next one, or at the very end.
_NATIVE_RE = re.compile(r"\((-?\d+)\)(?=\s*\([A-Za-z]\w*\)\s*(?:;|$)|\s*;\s*\[[0-9A-Z]{5}\]|\s*$)")
_SQLSTATE_RE = re.compile(r"^[0-9A-Z]{5}$")


class LockTimeout(TransientDestinationError):
    """sp_getapplock did not get its lock in time (or the session was chosen as a deadlock victim)."""


class TransactionLost(TransientDestinationError):
    """The server rolled the whole transaction back after an error; the batch must be redone."""


def error_parts(exc: BaseException) -> tuple[str | None, list[int]]:
    """(SQLSTATE, native error numbers) of a pyodbc-style error, or (None, []) for other errors."""
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    state = args[0] if args and isinstance(args[0], str) and _SQLSTATE_RE.match(args[0]) else None
    message = args[1] if len(args) > 1 and isinstance(args[1], str) else (str(args[0]) if args else "")
    codes = [int(m) for m in _NATIVE_RE.findall(message)]
    return state, codes


def classify(exc: BaseException) -> ErrorClass:
    """The class of a SQL Server error: the native numbers decide, then the SQLSTATE; RECORD otherwise
    (constraint 547, NULL 515, truncation 2628/8152, conversion 245/8114, overflow 8115/220, ...)."""
    own = classify_own(exc)
    if own is not None:
        return own
    if not _is_driver_error(exc):
        return ErrorClass.RECORD
    state, codes = error_parts(exc)
    if any(code in ENVIRONMENTAL_NATIVE_ERRORS for code in codes) or state in ENVIRONMENTAL_SQLSTATES:
        return ErrorClass.ENVIRONMENTAL
    if state in TRANSIENT_SQLSTATES or any(code in TRANSIENT_NATIVE_ERRORS for code in codes):
        return ErrorClass.TRANSIENT
    if any(code in ENTITY_NATIVE_ERRORS for code in codes):
        return ErrorClass.ENTITY
    return ErrorClass.RECORD


def is_transient(exc: BaseException) -> bool:
    """Whether a SQL Server error is worth retrying (connection, deadlock, throttling, timeout)."""
    if isinstance(exc, TransientDestinationError):
        return True
    return classify(exc) is ErrorClass.TRANSIENT


def _is_driver_error(exc: BaseException) -> bool:
    try:
        import pyodbc  # type: ignore[import-not-found]
    except ImportError:  # no driver manager: nothing can have come from pyodbc
        return False
    return isinstance(exc, pyodbc.Error)
