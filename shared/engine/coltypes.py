"""Logical column types, inferred from JSON values, and the lossless widening lattice."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from shared.contract.models import Lookup

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_EXACT_INT = 2**53  # every integer up to this magnitude is exact in a double


class Kind(str, Enum):
    BOOLEAN = "boolean"
    INTEGER = "integer"  # 64-bit
    FLOAT = "float"  # IEEE double
    DECIMAL = "decimal"  # exact numeric; holds every 64-bit integer and every finite double
    TEXT = "text"
    GUID = "guid"
    DATETIME = "datetime"


@dataclass(frozen=True, slots=True)
class ColumnType:
    kind: Kind
    length: int | None = None  # characters, for bounded text
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.length is not None:
            return f"{self.kind.value}({self.length})"
        if self.precision is not None:
            return f"{self.kind.value}({self.precision},{self.scale or 0})"
        return self.kind.value


BOOLEAN = ColumnType(Kind.BOOLEAN)
INTEGER = ColumnType(Kind.INTEGER)
FLOAT = ColumnType(Kind.FLOAT)
DECIMAL = ColumnType(Kind.DECIMAL)
TEXT = ColumnType(Kind.TEXT)
GUID = ColumnType(Kind.GUID)
DATETIME = ColumnType(Kind.DATETIME)

_BY_PYTYPE: dict[type, ColumnType] = {bool: BOOLEAN, float: FLOAT, str: TEXT, Lookup: GUID}


def value_type_of(pytype: type) -> ColumnType:
    """The type a non-null JSON value of this Python type shows (int: assuming 64-bit range)."""
    return INTEGER if pytype is int else _BY_PYTYPE[pytype]


def value_type(value: object) -> ColumnType:
    """The type a non-null JSON value shows."""
    t = type(value)
    if t is int:
        assert isinstance(value, int)
        return INTEGER if INT64_MIN <= value <= INT64_MAX else DECIMAL
    return _BY_PYTYPE[t]


_NUMERIC = {Kind.INTEGER, Kind.FLOAT, Kind.DECIMAL}


def join(a: ColumnType, b: ColumnType) -> ColumnType | None:
    """The narrowest type that holds both losslessly, or None when there is none."""
    if a == b:
        return a
    if a.kind in _NUMERIC and b.kind in _NUMERIC:
        return DECIMAL
    if a.kind is Kind.TEXT and b.kind is Kind.TEXT:
        if a.length is None or b.length is None:
            return TEXT
        return ColumnType(Kind.TEXT, max(a.length, b.length))
    return None


def coerce(column: ColumnType, value: object) -> tuple[bool, object]:
    """Whether a non-null value fits a column as it is, and the value to bind.

    Integral floats fit integer columns and exact integers fit float columns: the number is the
    same (JSON does not tell 42 from 42.0). Anything else must match the column's kind.
    """
    t = type(value)
    kind = column.kind
    if kind is Kind.DECIMAL:
        return (t is int or t is float), value
    if kind is Kind.INTEGER:
        if t is int:
            return INT64_MIN <= value <= INT64_MAX, value  # type: ignore[operator]
        if t is float:
            f = float(value)  # type: ignore[arg-type]
            if f.is_integer() and INT64_MIN <= f <= INT64_MAX:
                return True, int(f)
        return False, value
    if kind is Kind.FLOAT:
        if t is float:
            return True, value
        if t is int:
            i = int(value)  # type: ignore[call-overload]
            return -FLOAT_EXACT_INT <= i <= FLOAT_EXACT_INT, float(i)
        return False, value
    if kind is Kind.TEXT:
        if t is str:
            return column.length is None or len(value) <= column.length, value  # type: ignore[arg-type]
        return False, value
    if kind is Kind.BOOLEAN:
        return t is bool, value
    if kind is Kind.GUID:
        if t is Lookup:
            return True, value.id.lower()  # type: ignore[attr-defined]
        return False, value
    return False, value


def describe(value: object) -> str:
    t = type(value)
    if t is Lookup:
        return "lookup"
    if t is str:
        return f"text of {len(value)} characters"  # type: ignore[arg-type]
    return {bool: "boolean", int: "integer", float: "number"}.get(t, t.__name__)
