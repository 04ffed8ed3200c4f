"""The column type lattice: ``join`` is a commutative, associative least upper bound, and every
value a column type accepts (``coerce``) is bound without loss.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contract.models import Lookup
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind

pytestmark = pytest.mark.unit

INT64 = st.integers(coltypes.INT64_MIN, coltypes.INT64_MAX)
HUGE = st.integers(-(2**200), 2**200)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
LOOKUPS = st.builds(Lookup, id=st.uuids().map(lambda u: str(u).upper()), logicalName=st.just("contact"))
VALUES = st.one_of(st.booleans(), INT64, HUGE, FLOATS, st.text(max_size=5), LOOKUPS)
TYPES = st.one_of(
    st.sampled_from(
        [coltypes.BOOLEAN, coltypes.INTEGER, coltypes.FLOAT, coltypes.DECIMAL, coltypes.TEXT, coltypes.GUID]
    ),
    st.integers(1, 500).map(lambda n: ColumnType(Kind.TEXT, n)),
)


def same_value(bound: object, value: object) -> bool:
    """Numerically (or textually) the same value; Python compares int with float exactly."""
    if type(value) is Lookup:
        return bound == value.id.lower()
    if type(bound) is bool or type(value) is bool:
        return type(bound) is type(value) and bound == value
    if bound != value:
        return False
    if isinstance(value, float) and isinstance(bound, float):
        return math.copysign(1, bound) == math.copysign(1, value)  # -0.0 stays -0.0 in a double
    return True


@given(a=TYPES, b=TYPES)
def test_join_is_commutative_and_idempotent(a: ColumnType, b: ColumnType) -> None:
    assert coltypes.join(a, b) == coltypes.join(b, a)
    assert coltypes.join(a, a) == a


@given(a=TYPES, b=TYPES, c=TYPES)
def test_join_is_associative_where_defined(a: ColumnType, b: ColumnType, c: ColumnType) -> None:
    ab, bc = coltypes.join(a, b), coltypes.join(b, c)
    if ab is not None and bc is not None:
        left, right = coltypes.join(ab, c), coltypes.join(a, bc)
        assert left == right


@given(a=TYPES, b=TYPES)
def test_join_is_an_upper_bound_of_both(a: ColumnType, b: ColumnType) -> None:
    j = coltypes.join(a, b)
    if j is not None:
        assert coltypes.join(a, j) == j
        assert coltypes.join(b, j) == j


@given(value=VALUES)
def test_a_value_fits_the_type_it_shows(value: object) -> None:
    t = coltypes.value_type(value)
    ok, bound = coltypes.coerce(t, value)
    assert ok
    assert same_value(bound, value)


@settings(max_examples=300)
@given(x=VALUES, y=VALUES)
def test_both_values_fit_their_join_losslessly(x: object, y: object) -> None:
    j = coltypes.join(coltypes.value_type(x), coltypes.value_type(y))
    if j is None:
        # No type holds both: then each is a misfit in the other's column.
        assert not coltypes.coerce(coltypes.value_type(x), y)[0]
        assert not coltypes.coerce(coltypes.value_type(y), x)[0]
        return
    for v in (x, y):
        ok, bound = coltypes.coerce(j, v)
        assert ok, (j, v)
        assert same_value(bound, v)


@settings(max_examples=300)
@given(t=TYPES, value=VALUES)
def test_coerce_never_loses_anything(t: ColumnType, value: object) -> None:
    ok, bound = coltypes.coerce(t, value)
    if not ok:
        return
    assert same_value(bound, value), (t, value, bound)


def test_the_edges_of_exactness() -> None:
    big = 2**53 + 1
    assert coltypes.coerce(coltypes.FLOAT, 2**53) == (True, float(2**53))
    assert coltypes.coerce(coltypes.FLOAT, big)[0] is False  # would round to 2**53
    assert coltypes.coerce(coltypes.INTEGER, 4.0) == (True, 4)
    assert coltypes.coerce(coltypes.INTEGER, 4.5)[0] is False
    assert coltypes.coerce(coltypes.INTEGER, 2.0**63)[0] is False  # one past int64
    assert coltypes.coerce(coltypes.INTEGER, 2**63)[0] is False
    assert coltypes.coerce(coltypes.INTEGER, True)[0] is False  # a boolean is not a number
    assert coltypes.coerce(coltypes.BOOLEAN, 1)[0] is False
    assert coltypes.coerce(coltypes.DECIMAL, 2**200) == (True, 2**200)
    assert coltypes.coerce(coltypes.TEXT, 5)[0] is False
    assert coltypes.coerce(ColumnType(Kind.TEXT, 3), "abcd")[0] is False
    assert coltypes.value_type(2**63) == coltypes.DECIMAL
    assert coltypes.value_type(-(2**63)) == coltypes.INTEGER
    assert coltypes.join(coltypes.INTEGER, coltypes.FLOAT) == coltypes.DECIMAL
    assert coltypes.join(coltypes.TEXT, coltypes.INTEGER) is None
    assert coltypes.join(coltypes.BOOLEAN, coltypes.INTEGER) is None
    assert coltypes.join(ColumnType(Kind.TEXT, 10), ColumnType(Kind.TEXT, 20)) == ColumnType(Kind.TEXT, 20)
    assert coltypes.join(ColumnType(Kind.TEXT, 10), coltypes.TEXT) == coltypes.TEXT
    assert str(ColumnType(Kind.TEXT, 10)) == "text(10)"
    assert coltypes.describe("abc") == "text of 3 characters"
    assert coltypes.describe(True) == "boolean"
