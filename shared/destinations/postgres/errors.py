"""How PostgreSQL errors are classified (record / entity / transient / environmental), by SQLSTATE.

https://www.postgresql.org/docs/15/errcodes-appendix.html. Class 54 (program limit exceeded) is
never transient: ``54011`` (more than 1,600 columns) is about the table, ``54000`` (a row or index
entry too big) about one record. The table is repeated in docs/sqlserver.md ("Error taxonomy") and
each row is tested with a real PostgreSQL error in tests/integration/test_error_taxonomy.py.
"""

from __future__ import annotations

import psycopg

from shared.engine.ports import ErrorClass, classify_own

TRANSIENT: frozenset[str] = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "53300",  # too_many_connections
        "08000",  # connection_exception
        "08003",  # connection_does_not_exist
        "08006",  # connection_failure
        "08001",  # sqlclient_unable_to_establish_sqlconnection
        "08004",  # sqlserver_rejected_establishment_of_sqlconnection
    }
)
ENVIRONMENTAL: frozenset[str] = frozenset(
    {
        "53000",  # insufficient_resources
        "53100",  # disk_full
        "53200",  # out_of_memory
        "53400",  # configuration_limit_exceeded
        "25006",  # read_only_sql_transaction (a standby, default_transaction_read_only)
        "57014",  # query_canceled (a cancel request or statement_timeout)
        "57P04",  # database_dropped
        "58000",  # system_error
        "58030",  # io_error
        "42501",  # insufficient_privilege
        "3D000",  # invalid_catalog_name
        "28000",  # invalid_authorization_specification
        "28P01",  # invalid_password
    }
)
ENTITY: frozenset[str] = frozenset(
    {
        "54011",  # too_many_columns (1,600)
        "54001",  # statement_too_complex
        "54023",  # too_many_arguments
        "42P07",  # duplicate_table
        "42P01",  # undefined_table (dropped underneath us)
        "42703",  # undefined_column (dropped underneath us)
        "42809",  # wrong_object_type (the name is a view, ...)
        "42P16",  # invalid_table_definition
        "42939",  # reserved_name
        "0A000",  # feature_not_supported (ALTER TYPE of a column a view uses)
        "2BP01",  # dependent_objects_still_exist
        "55006",  # object_in_use
    }
)
# Everything else is about a record: class 22 (data exception: out of range, invalid text, value
# too long), class 23 (integrity: NOT NULL, CHECK, foreign key, unique), 54000 (row too big).


def sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    if state is None:
        state = getattr(getattr(exc, "diag", None), "sqlstate", None)
    return state if isinstance(state, str) else None


def classify(exc: BaseException, *, connection_closed: bool = False) -> ErrorClass:
    own = classify_own(exc)
    if own is not None:
        return own
    if not isinstance(exc, psycopg.Error):
        return ErrorClass.RECORD
    state = sqlstate(exc)
    if state in TRANSIENT:
        return ErrorClass.TRANSIENT
    if state in ENVIRONMENTAL:
        return ErrorClass.ENVIRONMENTAL
    if state in ENTITY:
        return ErrorClass.ENTITY
    if state is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return ErrorClass.TRANSIENT  # no server answer: the connection went away
    if connection_closed:
        return ErrorClass.TRANSIENT
    return ErrorClass.RECORD
