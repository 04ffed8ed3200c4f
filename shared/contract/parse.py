"""Turn Service Bus message bodies into validated notifications or unprocessable entries.

A body that fails the contract never raises: it becomes an :class:`Unprocessable` with a reason,
so the caller can keep it. Valid elements of a batch envelope are kept even when a sibling fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.contract.models import ChangeType, MessageBody, Notification

# Attribute names our destination layout owns (compared lower case: SQL Server is case-insensitive).
RESERVED_ATTRIBUTES = frozenset({"id", "sinkcreatedon", "sinkmodifiedon"})
# Dataverse sends versionnumber as an attribute too; the top-level ``version`` is authoritative.
IGNORED_ATTRIBUTES = frozenset({"versionnumber"})
MAX_REASON = 1000

_BODY: TypeAdapter[Notification | list[Notification]] = TypeAdapter(MessageBody)
_ONE = TypeAdapter(Notification)


@dataclass(frozen=True, slots=True)
class Unprocessable:
    """A message body (or envelope element) that fails the contract, kept verbatim with its reason."""

    body: str
    reason: str
    entity: str | None = None
    record_id: str | None = None


@dataclass(slots=True)
class ParsedBatch:
    notifications: list[Notification] = field(default_factory=list)
    unprocessable: list[Unprocessable] = field(default_factory=list)
    received: int = 0  # notifications seen: valid + unprocessable


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    text = "; ".join(parts)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _semantic_error(n: Notification) -> str | None:
    attrs = n.attributes
    if n.changeType is ChangeType.DELETE:
        if attrs is not None or "attributes" in n.model_fields_set:
            return "delete notifications carry no attributes (leave the field out)"
        return None
    if attrs is None:
        return f"{n.changeType.value} notifications need attributes (the full record state)"
    if not RESERVED_ATTRIBUTES.isdisjoint(attrs):
        reserved = sorted(RESERVED_ATTRIBUTES.intersection(attrs))
        return f"attribute name(s) {reserved} are reserved by the destination layout"
    if not IGNORED_ATTRIBUTES.isdisjoint(attrs):
        for name in IGNORED_ATTRIBUTES:
            attrs.pop(name, None)
    return None


def _identity(obj: Any) -> tuple[str | None, str | None]:
    if isinstance(obj, dict):
        entity, rid = obj.get("entity"), obj.get("recordId")
        return (entity if isinstance(entity, str) else None, rid if isinstance(rid, str) else None)
    return (None, None)


def _text(body: bytes | str) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body


def _accept(out: ParsedBatch, n: Notification, raw: bytes | str | None) -> None:
    problem = _semantic_error(n)
    if problem is None:
        out.notifications.append(n)
    else:
        body = _text(raw) if raw is not None else n.model_dump_json()
        out.unprocessable.append(Unprocessable(body, problem, n.entity, n.recordId))


def parse_body(body: bytes | str, out: ParsedBatch) -> None:
    """Parse one message body into ``out``; never raises on bad input."""
    try:
        parsed = _BODY.validate_json(body)
    except ValidationError:
        _parse_slow(body, out)
        return
    if isinstance(parsed, list):
        out.received += len(parsed)
        for n in parsed:
            _accept(out, n, body if len(parsed) == 1 else None)
    else:
        out.received += 1
        _accept(out, parsed, body)


def _parse_slow(body: bytes | str, out: ParsedBatch) -> None:
    """The body failed validation as a whole: find out which parts are bad, keep the good ones."""
    text = _text(body)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        out.received += 1
        out.unprocessable.append(Unprocessable(text, f"malformed JSON: {exc}"[:MAX_REASON]))
        return
    elements = doc if isinstance(doc, list) else [doc]
    if not elements:
        return
    for element in elements:
        out.received += 1
        raw = text if element is doc else json.dumps(element, ensure_ascii=False)
        if not isinstance(element, dict):
            reason = f"a notification must be a JSON object, got {type(element).__name__}"
            out.unprocessable.append(Unprocessable(raw, reason))
            continue
        if element.get("schemaVersion") != 1:
            entity, rid = _identity(element)
            reason = f"unsupported schemaVersion {element.get('schemaVersion')!r}; this service reads 1"
            out.unprocessable.append(Unprocessable(raw, reason, entity, rid))
            continue
        try:
            n = _ONE.validate_python(element)
        except ValidationError as exc:
            entity, rid = _identity(element)
            out.unprocessable.append(Unprocessable(raw, _reason(exc), entity, rid))
            continue
        _accept(out, n, raw)


def parse_bodies(bodies: Iterable[bytes | str]) -> ParsedBatch:
    out = ParsedBatch()
    for body in bodies:
        parse_body(body, out)
    return out
