"""PostgreSQL statement helpers that need no database (the statements themselves run against the
real PostgreSQL in tests/integration)."""

from __future__ import annotations

import uuid

import pytest

from shared.destinations.postgres.sqltext import array


def test_array_literal_of_ids_and_integers() -> None:
    ids = [str(uuid.UUID(int=i, version=4)) for i in (1, 2)]
    assert array(ids) == '{"' + ids[0] + '","' + ids[1] + '"}'
    assert array([3, -4]) == '{"3","-4"}'
    assert array([]) == "{}"
    assert array([""]) == '{""}'  # one empty element (the uuid cast refuses it), not an empty array


@pytest.mark.parametrize("bad", ['a"b', "a\\b"])
def test_array_literal_refuses_what_would_need_escaping(bad: str) -> None:
    with pytest.raises(ValueError, match="quote or backslash"):
        array(["x", bad])
