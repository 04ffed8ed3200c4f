"""OData pieces of the Web API: Prefer headers, $select, annotations, row JSON, paging cookies."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote

from shared.tools.dataverse_sim.schema import AttributeDef, EntityDef
from shared.tools.dataverse_sim.state import DataverseState, Values
from shared.tools.dataverse_sim.values import Ref, SimError, format_datetime

LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
ASSOCIATED_NAV = "Microsoft.Dynamics.CRM.associatednavigationproperty"
FORMATTED = "OData.Community.Display.V1.FormattedValue"
MAX_PAGE_SIZE = 5000


@dataclass
class Prefer:
    track_changes: bool = False
    max_page_size: int | None = None
    annotations: list[str] = field(default_factory=list)
    return_representation: bool = False

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        prefer = cls()
        if not header:
            return prefer
        for item in _split_outside_quotes(header):
            name, _, value = item.strip().partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "odata.track-changes":
                prefer.track_changes = True
            elif name == "odata.maxpagesize":
                try:
                    prefer.max_page_size = max(1, int(value))
                except ValueError:
                    raise SimError(400, "0x0", f"Invalid odata.maxpagesize value '{value}'.") from None
            elif name == "odata.include-annotations":
                prefer.annotations = [p.strip() for p in value.split(",") if p.strip()]
            elif name == "return" and value == "representation":
                prefer.return_representation = True
        return prefer

    def wants(self, annotation: str) -> bool:
        included = False
        for pattern in self.annotations:
            negative = pattern.startswith("-")
            pattern = pattern.lstrip("-")
            if pattern in {"*", annotation} or (
                pattern.endswith(".*") and annotation.startswith(pattern[:-1])):
                if negative:
                    return False
                included = True
        return included

    def page_size(self) -> int:
        return min(self.max_page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)

    def applied(self, *, tracked: bool, page_size: bool) -> str:
        parts: list[str] = []
        if tracked:
            parts.append("odata.track-changes")
        if page_size and self.max_page_size is not None:
            parts.append(f"odata.maxpagesize={self.page_size()}")
        if self.annotations:
            parts.append(f'odata.include-annotations="{",".join(self.annotations)}"')
        return ",".join(parts)


def _split_outside_quotes(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def select_attributes(entity: EntityDef, select: str | None) -> list[AttributeDef]:
    """The columns ``$select`` names (Web API names: ``_x_value`` for lookups), plus the primary key;
    every column when absent. Selecting a money column adds ``_transactioncurrencyid_value``."""
    if not select:
        return list(entity.attributes)
    by_web = entity.by_web_name()
    chosen: list[AttributeDef] = []
    for name in (n.strip() for n in select.split(",")):
        attr = by_web.get(name)
        if attr is None:
            raise SimError(400, "0x0", f"Could not find a property named '{name}' on type "
                                       f"'Microsoft.Dynamics.CRM.{entity.logical_name}'.")
        if attr not in chosen:
            chosen.append(attr)
    if any(a.type == "Money" for a in chosen):
        currency = entity.attribute("transactioncurrencyid")
        if currency is not None and currency not in chosen:
            chosen.append(currency)
    primary = entity.attribute(entity.primary_id)
    if primary is not None and primary not in chosen:
        chosen.append(primary)
    return chosen


def encode_value(state: DataverseState, attr: AttributeDef, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Ref):
        return value.id
    if attr.is_multiselect:
        numbers = list(value)
        return ",".join(str(n) for n in numbers) if state.switches.multiselect_format == "csv" else numbers
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat() if state.switches.date_only_format == "date" else f"{value.isoformat()}T00:00:00Z"
    return value


def formatted_value(state: DataverseState, entity: EntityDef, attr: AttributeDef, row: Values) -> str | None:
    value = row.get(attr.logical_name)
    if value is None:
        return None
    if isinstance(value, Ref):
        return state.primary_name_of(value)
    if attr.option_set is not None:
        if attr.is_multiselect:
            return "; ".join(attr.option_set.label(v) or str(v) for v in value)
        if isinstance(value, bool):
            return attr.option_set.label(int(value))
        return attr.option_set.label(int(value))
    if attr.type == "Money" and isinstance(value, Decimal):
        symbol = "$"
        currency = row.get("transactioncurrencyid")
        if isinstance(currency, Ref):
            cur = state.get("transactioncurrency", currency.id)
            symbol = str(cur.get("currencysymbol") or "") if cur else symbol
        return f"{symbol}{value.quantize(Decimal('0.01')):,}"
    if isinstance(value, datetime):
        return f"{value.month}/{value.day}/{value.year} {value.strftime('%I:%M %p').lstrip('0')}"
    if isinstance(value, date):
        return f"{value.month}/{value.day}/{value.year}"
    if attr.type in {"Integer", "BigInt"}:
        return f"{value:,}"
    return None


class RowWriter:
    """Writes rows of one table with one ``$select`` and one ``Prefer``: the per-column work (names,
    which annotations, how to encode) is decided once, not per row."""

    def __init__(self, state: DataverseState, entity: EntityDef, attrs: list[AttributeDef], prefer: Prefer) -> None:
        self.state = state
        self.entity = entity
        self.want_lookup = prefer.wants(LOOKUP_LOGICAL_NAME)
        self.want_nav = prefer.wants(ASSOCIATED_NAV)
        self.want_formatted = prefer.wants(FORMATTED)
        self.columns = [(a, a.logical_name, a.web_name, a.is_lookup,
                         a.is_multiselect or a.date_only or a.type == "DateTime") for a in attrs]

    def row(self, row: Values) -> dict[str, Any]:
        state = self.state
        out: dict[str, Any] = {"@odata.etag": f'W/"{state.etag(self.entity.logical_name, row)}"'}
        for attr, logical, name, is_lookup, special in self.columns:
            value = row.get(logical)
            if self.want_formatted:
                text = formatted_value(state, self.entity, attr, row)
                if text is not None:
                    out[f"{name}@{FORMATTED}"] = text
            if is_lookup:
                if isinstance(value, Ref):
                    if self.want_nav:
                        out[f"{name}@{ASSOCIATED_NAV}"] = attr.navigation_property(value.entity)
                    if self.want_lookup:
                        out[f"{name}@{LOOKUP_LOGICAL_NAME}"] = value.entity
                    value = value.id
                out[name] = value
            elif special and value is not None:
                out[name] = encode_value(state, attr, value)
            else:
                out[name] = value
        return out


def row_json(state: DataverseState, entity: EntityDef, row: Values, attrs: list[AttributeDef],
             prefer: Prefer) -> dict[str, Any]:
    """One row as the Web API returns it: ``@odata.etag``, the selected columns, annotations when asked."""
    return RowWriter(state, entity, attrs, prefer).row(row)


# ------------------------------------------------------------------------------ paging cookies
_COOKIE = re.compile(r'pagenumber="(\d+)"\s+pagingcookie="([^"]*)"\s+istracking="(True|False)"')
_INNER = re.compile(r'<cookie page="(\d+)"(?: tv="(\d+)")?(?: dv="([^"]*)")?><(\w+) last="\{([0-9a-fA-F-]+)\}"')


@dataclass(frozen=True)
class PageCookie:
    page: int  # the page number this cookie asks for
    last_id: str  # the primary key of the last row served
    snapshot: int  # the version counter when the first page was served (the deltaLink's token)
    delta: tuple[int, int, str] | None = None  # delta pages: the keyset of the last change served
    tracking: bool = True

    def encode(self, primary_id: str, first_id: str, istracking: bool) -> str:
        dv = "" if self.delta is None else f' dv="{self.delta[0]}:{self.delta[1]}:{self.delta[2]}"'
        inner = (f'<cookie page="{self.page - 1}" tv="{self.snapshot}"{dv}><{primary_id} last="{{{self.last_id}}}" '
                 f'first="{{{first_id}}}" /></cookie>')
        outer = (f'<cookie pagenumber="{self.page}" pagingcookie="{quote(quote(inner, safe=""), safe="")}" '
                 f'istracking="{"True" if istracking else "False"}" />')
        return quote(outer, safe="")

    @classmethod
    def decode(cls, skiptoken: str) -> PageCookie:
        text = unquote(skiptoken) if skiptoken.startswith("%") else skiptoken
        outer = _COOKIE.search(html.unescape(text))
        if outer is None:
            raise SimError(400, "0x80040203", "The $skiptoken is not a valid paging cookie.")
        inner_text = unquote(unquote(outer.group(2)))
        inner = _INNER.search(inner_text)
        if inner is None or inner.group(2) is None:
            raise SimError(400, "0x80040203", "The $skiptoken is not a valid paging cookie.")
        delta = None
        if inner.group(3):
            phase, version, rid = inner.group(3).split(":", 2)
            delta = (int(phase), int(version), rid)
        return cls(int(outer.group(1)), inner.group(5).lower(), int(inner.group(2)), delta, outer.group(3) == "True")
