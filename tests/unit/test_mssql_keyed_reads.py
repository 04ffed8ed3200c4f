"""SQL Server's keyed reads for the push re-read (issue 13), without a server: the T-SQL they send
parses with sqlglot (dialect ``tsql``), names are bracket-quoted, every id and GUID is a ``?``
parameter (never SQL text), id lists are chunked under SQL Server's 2,100-parameter limit, and a
table or column that does not exist is answered without a query. The statements are captured by
the recording test double of tests/unit/test_mssql_dialect.py (which executes nothing); the
behaviour on a real server is tests/gated/test_mssql_live.py's."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from shared.destinations import Layout
from shared.destinations.mssql.dialect import HELD_CHUNK, TSql
from shared.engine.coltypes import GUID, TEXT
from tests.unit.test_mssql_dialect import recording_destination, verify

pytestmark = pytest.mark.unit

HOSTILE = "x' OR '1'='1"
IDS = [f"00000000-0000-0000-0000-{i:012d}" for i in range(HELD_CHUNK + 3)]


def _selects(sent: list[str]) -> list[str]:
    return [s for s in sent if s.startswith("SELECT [Id], [versionnumber]")]


def test_held_versions_and_rows_with_send_parameterised_tsql() -> None:
    layout = Layout("sales", "p1")
    dest, state = recording_destination(layout)
    table, rel = layout.entity_table("account"), layout.entity_table("des_account_contact")
    assert dest.held_versions(table, IDS[:2]) == {}  # no such table: the catalog says so, no SELECT
    assert dest.rows_with(rel, {"accountid": IDS[0]}) == []
    assert _selects([s.sql for s in state.sent]) == []
    dest.ensure_table(table, {"name": TEXT})
    dest.ensure_table(rel, {"accountid": GUID, "contactid": TEXT})
    state.sent.clear()
    dest.held_versions(table, [i.upper() for i in IDS])
    dest.rows_with(rel, {"accountid": IDS[1].upper(), "contactid": HOSTILE})
    assert dest.rows_with(rel, {"accountid": IDS[1], "nosuchcolumn": IDS[2]}) == []
    selects = [s for s in state.sent if s.sql.startswith("SELECT [Id], [versionnumber]")]
    assert len(selects) == 3  # two chunks of ids, one pair
    names = {"sales", table, rel, "accountid", "contactid", "Id", "versionnumber"}
    for s in selects:
        verify(s, names)
        assert not [v for v in (HOSTILE, IDS[1], IDS[1].upper()) if v in s.sql]
        tree = sqlglot.parse_one(s.sql, read="tsql")
        assert isinstance(tree, exp.Select)
        [source] = list(tree.find_all(exp.Table))
        assert (source.db, source.name) == ("sales", s.sql.split("].[")[1].split("]")[0])
    first, second, pair = selects
    assert [len(first.params), len(second.params)] == [HELD_CHUNK, 3]
    assert list(first.params) + list(second.params) == IDS  # lower case, every id once
    assert pair.params == (IDS[1], HOSTILE.lower())
    assert pair.sql == TSql("sales", layout).rows_with(rel, ["accountid", "contactid"])
    assert "LOWER(CONVERT(NVARCHAR(36), [accountid])) = ?" in pair.sql
