"""Logical column types, inferred from JSON values, and the lossless widening lattice."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum

from shared.contract.models import GUID_PATTERN, Lookup

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

# Decimal: a JSON number a double cannot hold (shared.contract.exactjson.exact_number), kept exact.
_BY_PYTYPE: dict[type, ColumnType] = {bool: BOOLEAN, float: FLOAT, str: TEXT, Lookup: GUID, Decimal: DECIMAL}


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
        number = t is int or t is float or t is Decimal
        if column.precision is None or not number:
            return number, value
        return fits_decimal(value, column.precision, column.scale or 0), value  # type: ignore[arg-type]
    if kind is Kind.INTEGER:
        if t is int:
            return INT64_MIN <= value <= INT64_MAX, value  # type: ignore[operator]
        if t is float:
            f = float(value)  # type: ignore[arg-type]
            if f.is_integer() and INT64_MIN <= f <= INT64_MAX:
                return True, int(f)
        if t is Decimal:
            d: Decimal = value  # type: ignore[assignment]
            if d == d.to_integral_value() and INT64_MIN <= d <= INT64_MAX:
                return True, int(d)
        return False, value
    if kind is Kind.FLOAT:
        if t is float:
            return True, value
        if t is int:
            i = int(value)  # type: ignore[call-overload]
            return -FLOAT_EXACT_INT <= i <= FLOAT_EXACT_INT, float(i)
        if t is Decimal:  # a double column holds the nearest double, as Dataverse's Double does
            return True, float(value)  # type: ignore[arg-type]
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
        if isinstance(value, str) and _GUID_RE.fullmatch(value):
            return True, value.lower()
        return False, value
    if kind is Kind.DATETIME:
        if isinstance(value, str):
            parsed = to_datetime(value)
            return parsed is not None, value if parsed is None else parsed
        if isinstance(value, datetime):
            return True, value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return False, value
    return False, value


# Metadata-declared types (shared/engine/metadata.py): GUIDs as text, ISO 8601 date-times, DECIMAL(p, s).
_GUID_RE = re.compile(GUID_PATTERN)
_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.(\d+))?)?(?:Z|z|[+-]\d{2}:\d{2})?)?$"
)


def to_datetime(text: str) -> datetime | None:
    """An ISO 8601 / RFC 3339 date or date-time as an aware UTC datetime (no offset: UTC), or None.

    Only the extended form (``2026-11-21``, ``2026-11-21T10:00:00Z``, ``...10:00:00.5+02:00``);
    fractions beyond microseconds must be zeros (.NET writes seven digits), never rounded away.
    """
    m = _ISO_DATETIME.fullmatch(text)
    if m is None:
        return None
    fraction = m.group(1)
    if fraction is not None and len(fraction) > 6:
        if fraction[6:].strip("0"):
            return None
        text = text[: m.start(1) + 6] + text[m.end(1) :]
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def decimal_digits(value: int | float | Decimal) -> tuple[int, int]:
    """(digits before the point, decimal places) of a JSON number (a float by its shortest repr)."""
    return decimal_digits_of(Decimal(repr(value)) if type(value) is float else Decimal(value))


def decimal_digits_of(d: Decimal) -> tuple[int, int]:
    """(digits before the point, decimal places) of a finite Decimal, trailing zeros ignored."""
    _sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    n = len(digits)
    while n > 1 and exponent < 0 and digits[n - 1] == 0:
        n -= 1
        exponent += 1
    if n == 1 and digits[0] == 0:
        return 0, 0
    return max(0, n + exponent), max(0, -exponent)


def fits_decimal(value: int | float | Decimal, precision: int, scale: int) -> bool:
    """Whether DECIMAL(precision, scale) holds the number exactly (no rounding, no overflow)."""
    before, places = decimal_digits(value)
    return places <= scale and before <= precision - scale


def describe(value: object) -> str:
    t = type(value)
    if t is Lookup:
        return "lookup"
    if t is str:
        return f"text of {len(value)} characters"  # type: ignore[arg-type]
    return {bool: "boolean", int: "integer", float: "number", Decimal: "number"}.get(t, t.__name__)
