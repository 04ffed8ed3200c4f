"""Column values: the simulator's Python representation, coercion from requests, Web API encoding.

Inside the simulator a row is ``{logical_name: value}`` with: ``str`` (String, Memo, Uniqueidentifier),
``int`` (Integer, BigInt, option sets), ``Decimal`` (Money at 4 places, Decimal at its precision),
``float`` (Double), ``bool``, ``datetime`` (UTC, whole seconds), ``date`` (DateOnly columns),
``tuple[int, ...]`` (multi-select, sorted), :class:`Ref` (lookups) or ``None``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.tools.dataverse_sim.schema import AttributeDef

MONEY_PLACES = Decimal("0.0001")


@dataclass(frozen=True, order=True)
class Ref:
    """A lookup value: the target's id and logical name."""

    id: str
    entity: str


class SimError(Exception):
    """An error the simulator answers with the Web API error envelope."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = "0x80048d19") -> SimError:
    return SimError(400, code, message)


def new_guid(rng: Any) -> str:
    """A version-4 GUID from ``rng`` (same text as ``str(uuid.UUID(int=..., version=4))``, faster)."""
    n = rng.getrandbits(128)
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
    n = (n & ~(0xF000 << 64)) | (4 << 76)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize_guid(text: str) -> str:
    if _GUID.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text.strip("{}")))
    except ValueError as exc:
        raise bad_request(f"Invalid GUID {text!r}", code="0x80040203") from exc


def utc_seconds(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def format_datetime(moment: datetime) -> str:
    if moment.tzinfo is not UTC or moment.microsecond:
        moment = utc_seconds(moment)
    return moment.isoformat().replace("+00:00", "Z")


def _parse_datetime(text: str) -> datetime:
    try:
        return utc_seconds(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise bad_request(f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'.") from exc


def coerce(attr: AttributeDef, value: Any) -> Any:
    """A request's value for ``attr`` in the simulator's representation; SimError(400) when it does not fit."""
    if value is None:
        return None
    t = attr.type
    where = f"attribute '{attr.logical_name}' of type {t}"
    if t in {"String", "Memo", "Uniqueidentifier"}:
        if not isinstance(value, str):
            raise bad_request(f"A value of type {type(value).__name__} is not valid for {where}.")
        if t == "Uniqueidentifier":
            return normalize_guid(value)
        if attr.max_length is not None and len(value) > attr.max_length:
            raise bad_request(f"A validation error occurred. The length of the '{attr.logical_name}' attribute "
                              f"of the '{attr.entity}' entity exceeded the maximum allowed length of "
                              f"'{attr.max_length}'.", code="0x80044331")
        return value
    if t in {"Integer", "BigInt", "Picklist", "State", "Status"}:
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)) or int(value) != value:
            raise bad_request(f"A value {value!r} is not valid for {where}.")
        whole = int(value)
        if attr.option_set is not None and whole not in attr.option_set.values():
            raise bad_request(f"A validation error occurred. The value {whole} of '{attr.logical_name}' on "
                              f"record of type '{attr.entity}' is outside the valid range.", code="0x8004431a")
        return whole
    if t in {"Money", "Decimal"}:
        if isinstance(value, bool):
            raise bad_request(f"A value {value!r} is not valid for {where}.")
        try:
            number = value if isinstance(value, Decimal) else Decimal(str(value))
        except InvalidOperation as exc:
            raise bad_request(f"A value {value!r} is not valid for {where}.") from exc
        if not number.is_finite():
            raise bad_request(f"A value {value!r} is not valid for {where}.")
        places = MONEY_PLACES if t == "Money" else Decimal(1).scaleb(-(attr.precision or 2))
        return number.quantize(places)
    if t == "Double":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise bad_request(f"A value {value!r} is not valid for {where}.")
        return float(value)
    if t == "Boolean":
        if not isinstance(value, bool):
            raise bad_request(f"A value {value!r} is not valid for {where}.")
        return value
    if t == "DateTime":
        if attr.date_only:
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            if isinstance(value, str):
                try:
                    return date.fromisoformat(value[:10])
                except ValueError as exc:
                    raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Date'.") from exc
            raise bad_request(f"A value {value!r} is not valid for {where}.")
        if isinstance(value, datetime):
            return utc_seconds(value)
        if isinstance(value, str):
            return _parse_datetime(value)
        raise bad_request(f"A value {value!r} is not valid for {where}.")
    if t == "Virtual":
        items: list[Any]
        numbers: list[int]
        if isinstance(value, str):
            items = [p for p in value.split(",") if p.strip()]
            try:
                numbers = [int(p) for p in items]
            except ValueError as exc:
                raise bad_request(f"A value {value!r} is not valid for {where}.") from exc
        elif isinstance(value, (list, tuple)):
            numbers = []
            for item in value:
                if isinstance(item, bool) or not isinstance(item, int):
                    raise bad_request(f"A value {value!r} is not valid for {where}.")
                numbers.append(item)
        else:
            raise bad_request(f"A value {value!r} is not valid for {where}.")
        allowed = attr.option_set.values() if attr.option_set else frozenset()
        for option in numbers:
            if option not in allowed:
                raise bad_request(f"The value {option} is not a valid option of '{attr.logical_name}'.",
                                  code="0x8004431a")
        return tuple(sorted(set(numbers))) or None
    if attr.is_lookup:
        if not isinstance(value, Ref):
            raise bad_request(f"Lookup {attr.logical_name!r} takes a reference (use {attr.logical_name}@odata.bind).")
        if value.entity not in attr.targets:
            raise bad_request(f"'{value.entity}' is not a valid target of lookup '{attr.logical_name}' "
                              f"(targets: {', '.join(attr.targets)}).", code="0x80040203")
        return Ref(normalize_guid(value.id), value.entity)
    raise bad_request(f"Unsupported attribute type {t}")


# ------------------------------------------------------------------------------ JSON with exact decimals
_MARK = f"@@dec-{uuid.uuid4().hex}:"
_MARK_RE = re.compile(re.escape(f'"{_MARK}') + r'(-?[0-9.E+\-]+)"')


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{_MARK}{value}"
    if isinstance(value, Ref):
        return value.id
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(obj: Any, *, escape_slashes: bool = False) -> str:
    """JSON text with ``Decimal`` written as exact JSON numbers (``20000.0000``), not floats."""
    text = json.dumps(obj, default=_default, ensure_ascii=False, separators=(",", ":"))
    text = _MARK_RE.sub(lambda m: m.group(1), text)
    if escape_slashes:
        text = text.replace("/", "\\/")
    return text


def loads(text: str | bytes) -> Any:
    """Request bodies: numbers with a fraction become ``Decimal`` (money stays exact)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig")
    return json.loads(text, parse_float=Decimal)
