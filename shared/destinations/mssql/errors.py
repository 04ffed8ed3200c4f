"""Which SQL Server / Azure SQL errors are worth retrying.

pyodbc raises ``pyodbc.Error`` subclasses whose ``args`` are ``(sqlstate, message)``; the message
ends with the native SQL Server error number and the ODBC function, as in
``"[40001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction (Process ID 53) was
deadlocked ... (1205) (SQLExecDirectW)"``. Both the SQLSTATE and the native numbers decide.

The list follows Microsoft.Data.SqlClient's baseline transient errors (deadlock, lock timeout,
Azure SQL throttling, failover and reconfiguration, dropped connections) plus the ODBC SQLSTATEs
for timeouts and communication link failures, and FreeTDS's own connection errors.
"""

from __future__ import annotations

import re

from shared.engine.ports import TransientDestinationError

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


def is_transient(exc: BaseException) -> bool:
    """Whether a SQL Server error is worth retrying (connection, deadlock, throttling, timeout)."""
    if isinstance(exc, TransientDestinationError):
        return True
    if not _is_driver_error(exc):
        return False
    state, codes = error_parts(exc)
    if state in TRANSIENT_SQLSTATES:
        return True
    return any(code in TRANSIENT_NATIVE_ERRORS for code in codes)


def _is_driver_error(exc: BaseException) -> bool:
    try:
        import pyodbc  # type: ignore[import-not-found]
    except ImportError:  # no driver manager: nothing can have come from pyodbc
        return False
    return isinstance(exc, pyodbc.Error)
