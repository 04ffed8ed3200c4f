"""Turn Service Bus message bodies into validated notifications or unprocessable entries.

A body that fails the contract never raises: it becomes an :class:`Unprocessable` with a reason,
so the caller can keep it. Valid elements of a batch envelope are kept even when a sibling fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, TypeAdapter, ValidationError

# Numbers a double cannot hold: one rule for the body and every parked copy of it.
from shared.contract.exactjson import dumps, has_long_number, loads

# Entity metadata notifications ("changeType": "metadata"): tried only when a body fails the record
# contract, so record notifications keep their fast path (shared/contract/metadata.py).
from shared.contract.metadata import METADATA_CHANGE_TYPE, MetadataNotification, validate_metadata
from shared.contract.models import (
    INT64_MAX,
    MAX_REASON,
    NAME_RE,
    ChangeType,
    Lookup,
    MessageBody,
    Notification,
    unicode_problem,
    validation_reason,
)

# Attribute names our destination layout owns (compared lower case: SQL Server is case-insensitive).
RESERVED_ATTRIBUTES = frozenset({"id", "sinkcreatedon", "sinkmodifiedon"})
# Dataverse sends versionnumber as an attribute too; the top-level ``version`` is authoritative.
IGNORED_ATTRIBUTES = frozenset({"versionnumber"})

_BODY: TypeAdapter[Notification | list[Notification]] = TypeAdapter(MessageBody)
_ONE = TypeAdapter(Notification)


@dataclass(frozen=True, slots=True)
class Unprocessable:
    """A message body (or envelope element) that fails the contract, kept verbatim with its reason.

    Every string in it is valid Unicode (:func:`unprocessable` escapes what is not), so every
    reject writer (CSV, JSONL, blob) can write it as UTF-8."""

    body: str
    reason: str
    entity: str | None = None
    record_id: str | None = None


def _writable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udxxx`` escapes (nothing else changes)."""
    if unicode_problem(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unprocessable(body: str, reason: str, entity: str | None = None, record_id: str | None = None) -> Unprocessable:
    return Unprocessable(
        _writable(body),
        _writable(reason),
        None if entity is None else _writable(entity),
        None if record_id is None else _writable(record_id),
    )


@dataclass(slots=True)
class ParsedBatch:
    notifications: list[Notification] = field(default_factory=list)
    unprocessable: list[Unprocessable] = field(default_factory=list)
    received: int = 0  # notifications seen: valid + unprocessable (+ metadata)
    metadata: list[MetadataNotification] = field(default_factory=list)  # valid metadata notifications
    referred: int = 0  # bodies the fast path handed to the pydantic reference parser


_reason = validation_reason


def _semantic_error(n: Notification) -> str | None:
    attrs = n.attributes
    if n.changeType is ChangeType.DELETE:
        if attrs is not None or "attributes" in n.model_fields_set:
            return "delete notifications carry no attributes (leave the field out)"
        if n.payloadRef is not None:
            return "delete notifications carry no payloadRef"
        return None
    if attrs is None:
        if n.payloadRef is not None and "attributes" not in n.model_fields_set:
            return None  # a claim check: resolved (download + decrypt) before it is applied
        return f"{n.changeType.value} notifications need attributes (the full record state)"
    if n.payloadRef is not None:
        return "a notification carries attributes or a payloadRef, not both"
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


BOM = "\ufeff"
BOM_BYTES = BOM.encode("utf-8")


def _text(body: bytes | str) -> str:
    """The body as text for keeping: invalid UTF-8 escaped (``\\xff``), never replaced."""
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="backslashreplace")
    return body


def _without_bom(body: bytes | str) -> bytes | str:
    """A leading UTF-8 byte-order mark is tolerated (Windows editors write one); one, at the start only."""
    if isinstance(body, bytes):
        return body[3:] if body.startswith(BOM_BYTES) else body
    return body[1:] if body.startswith(BOM) else body


def _accept(out: ParsedBatch, n: Notification, raw: bytes | str | None) -> None:
    problem = _semantic_error(n)
    if problem is None:
        out.notifications.append(n)
    else:
        body = _text(raw) if raw is not None else n.model_dump_json()
        out.unprocessable.append(unprocessable(body, problem, n.entity, n.recordId))


# ------------------------------------------------------------------------------------ fast path
class _FastLookup(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    logicalName: str


_FastValue = bool | int | float | str | _FastLookup | None


class _FastNote(msgspec.Struct, forbid_unknown_fields=True):
    """The shape of a record notification, for msgspec; the rules are those of models.Notification."""

    # Checked in C while decoding: the schema version, the change type (decoded to the enum by
    # value), the version's range and the date-time's offset.
    schemaVersion: Literal[1]
    organizationId: str
    entity: str
    recordId: str
    changeType: ChangeType
    version: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    changedOn: Annotated[datetime, msgspec.Meta(tz=True)]
    attributes: dict[str, _FastValue] | msgspec.UnsetType | None = msgspec.UNSET
    # A claim check is rare: any payloadRef key sends the body to the reference parser.
    payloadRef: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_DECODER = msgspec.json.Decoder(_FastNote | list[_FastNote])
_DELETE = ChangeType.DELETE
_UNSET = msgspec.UNSET
_CACHE_LIMIT = 100_000  # names seen valid, per process (a hostile stream cannot grow it beyond this)
_valid_names: set[str] = set()
# Valid names that are neither reserved nor ignored (_semantic_error): a record whose attribute
# names are all here needs no semantic check beyond its change type.
_plain_names: set[str] = set()
_valid_orgs: set[str] = set()
# Lookup models by id (as sent), reused by :func:`_lookups`; at most this many (~1.5 MiB).
_LOOKUP_MODELS_LIMIT = 4096
_lookup_models: dict[str, Lookup] = {}
# The fields a sender set, shared by every model the fast path builds: the models are frozen, and
# pydantic copies the set before it adds to it (model_copy).
_WITHOUT_ATTRIBUTES = set(Notification.model_fields) - {"attributes", "payloadRef"}
_WITH_ATTRIBUTES = _WITHOUT_ATTRIBUTES | {"attributes"}
_LOOKUP_FIELDS = {"id", "logicalName"}
_new = object.__new__
# BaseModel's slots, set through their descriptors (what object.__setattr__ finds, without the lookup)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


# Byte classes for the GUID check: a hex digit becomes "x", the dash stays, any other byte becomes NUL
# (never in the form); a GUID's bytes mapped through it are _GUID_FORM.
_GUID_SHAPE = bytes(
    ord("x") if chr(i) in "0123456789abcdefABCDEF" else ord("-") if chr(i) == "-" else 0 for i in range(256)
)
_GUID_FORM = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"


def _is_guid(text: str) -> bool:
    """Whether ``text`` is a GUID in 8-4-4-4-12 hex form (GUID_PATTERN, matched in full), without a
    regex: its ASCII bytes, each mapped to its class, are the form's (~110 ns against ~220 for a
    compiled regex's fullmatch)."""
    try:
        return text.encode("ascii").translate(_GUID_SHAPE) == _GUID_FORM
    except UnicodeEncodeError:  # not ASCII: not a GUID
        return False


def _name_ok(name: str) -> bool:
    if name in _valid_names:
        return True
    if NAME_RE.fullmatch(name) is None:
        return False
    if len(_valid_names) < _CACHE_LIMIT:
        _valid_names.add(name)
        if name not in RESERVED_ATTRIBUTES and name not in IGNORED_ATTRIBUTES:  # names are lower case
            _plain_names.add(name)
    return True


def _model(cls: type[Any], values: dict[str, Any], fields_set: set[str]) -> Any:
    """A pydantic model instance from values already validated to its rules (what
    ``model_construct`` does, without its per-field Python loop)."""
    obj = _new(cls)
    _set_dict(obj, values)
    _set_fields(obj, fields_set)
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def _lookups(attrs: dict[str, Any]) -> bool:
    """Replace the lookups msgspec decoded with :class:`Lookup` models; False when one breaks a rule.

    Lookups repeat (owners, currencies, parent records): a model made for an id is kept
    (:data:`_lookup_models`) and shared by the next lookup with the same id and logical name; the
    models are frozen, and equal to the one made anew."""
    for key, value in attrs.items():
        if type(value) is _FastLookup:
            rid, name = value.id, value.logicalName
            kept = _lookup_models.get(rid)
            if kept is not None and kept.logicalName == name:
                attrs[key] = kept
                continue
            if not _is_guid(rid) or (name not in _valid_names and not _name_ok(name)):
                return False
            model = attrs[key] = _model(Lookup, {"id": rid, "logicalName": name}, _LOOKUP_FIELDS)
            if len(_lookup_models) >= _LOOKUP_MODELS_LIMIT:
                _lookup_models.clear()  # a stream of ever new ids: start over rather than grow
            _lookup_models[rid] = model
    return True


def _add(n: _FastNote, out: ParsedBatch, raw: bytes | str | None) -> bool:
    """Add the Notification ``n`` is to ``out`` when it passes every rule of the contract (a semantic
    refusal becomes its unprocessable entry, as in :func:`_accept`); False, with ``out`` untouched,
    sends the body to the reference parser (which then gives the reason)."""
    change = n.changeType
    when = n.changedOn
    entity = n.entity
    if (
        n.payloadRef is not _UNSET
        or (entity not in _valid_names and not _name_ok(entity))
        or not _is_guid(n.recordId)
    ):
        return False
    org = n.organizationId
    if org not in _valid_orgs:
        if not _is_guid(org):
            return False
        if len(_valid_orgs) < _CACHE_LIMIT:
            _valid_orgs.add(org)
    if when.year in (1, 9999):
        try:
            when.astimezone(UTC)
        except OverflowError:
            return False
    attrs = n.attributes
    if attrs is _UNSET:
        attrs = None
        fields = _WITHOUT_ATTRIBUTES
        plain = change is _DELETE
    else:
        fields = _WITH_ATTRIBUTES
        if attrs is None:
            plain = False
        else:
            if _plain_names.issuperset(attrs):
                plain = change is not _DELETE
            elif all(map(_name_ok, attrs)):
                plain = False  # a reserved or ignored name: the semantic check decides
            else:
                return False
            if not _lookups(attrs):  # most records have lookups: no pre-check
                return False
    values = {
        "schemaVersion": 1,
        "organizationId": org,
        "entity": entity,
        "recordId": n.recordId,
        "changeType": change,
        "version": n.version,
        "changedOn": when,
        "attributes": attrs,
        "payloadRef": None,
    }
    note: Notification = _model(Notification, values, fields)
    out.received += 1
    if plain:
        out.notifications.append(note)
    else:
        _accept(out, note, raw)
    return True


def parse_body(body: bytes | str, out: ParsedBatch, *, exact: bool = True) -> None:
    """Parse one message body into ``out``; never raises on bad input.

    The fast path: msgspec decodes into typed structures in C (valid UTF-8, no lone surrogates,
    JSON integers, RFC 3339 date-times), then names are checked against a per-process cache and
    GUIDs once each. Whatever it does not accept outright goes to the pydantic reference
    (:func:`parse_body_reference`), which decides and gives the reason; both reach the same
    outcome for every body (tests/unit/test_decode_differential.py). ``exact=False`` skips the
    check for numbers a double cannot hold: only for a body the caller has checked already
    (:func:`has_long_number` of a batch joined with newlines is False).
    """
    if (exact and has_long_number(body)) or not _fast(body, out):
        parse_body_reference(body, out)  # the reference decides, and gives the reason


def _fast(body: bytes | str, out: ParsedBatch) -> bool:
    """Add what the fast path makes of ``body`` to ``out``; False, with ``out`` as it was, when it
    does not accept the whole body (msgspec refuses it, or one notification breaks a rule)."""
    try:
        notes = _DECODER.decode(body)
    except Exception:  # anything msgspec refuses (or a str it cannot encode)
        return False
    if not isinstance(notes, list):
        return _add(notes, out, body)
    marks = (len(out.notifications), len(out.unprocessable), out.received)
    raw = body if len(notes) == 1 else None
    for n in notes:
        if not _add(n, out, raw):  # one element fails: none of the body's notifications is kept
            del out.notifications[marks[0] :]
            del out.unprocessable[marks[1] :]
            out.received = marks[2]
            return False
    return True


def parse_accepted(bodies: Sequence[bytes | str], out: ParsedBatch) -> bool:
    """Parse the bodies into ``out`` with the fast path alone, for bodies already known to hold no
    number a double cannot hold (:func:`has_long_number`): True when it accepted every one (``out``
    then holds what :func:`parse_body` gives for each); False at the first body it does not accept
    (``out`` is then incomplete: the caller discards it and takes its general route)."""
    return all(_fast(body, out) for body in bodies)


def parse_body_reference(body: bytes | str, out: ParsedBatch) -> None:
    """Parse one message body into ``out`` with the pydantic models alone; never raises on bad input.

    The reference the fast path (:func:`parse_body`) is tested against, and its fallback."""
    out.referred += 1
    body = _without_bom(body)
    if has_long_number(body):  # decoded with exact numbers, then validated element by element
        _parse_slow(body, out)
        return
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
    if isinstance(body, bytes):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.received += 1
            reason = f"the body is not valid UTF-8: {exc.reason} at byte {exc.start}"
            out.unprocessable.append(unprocessable(text, reason))
            return
    try:
        doc = loads(text)
    except (ValueError, RecursionError) as exc:
        out.received += 1
        out.unprocessable.append(unprocessable(text, f"malformed JSON: {exc}"[:MAX_REASON]))
        return
    elements = doc if isinstance(doc, list) else [doc]
    if not elements:
        return
    for element in elements:
        out.received += 1
        raw = text if element is doc else dumps(element)
        if not isinstance(element, dict):
            reason = f"a notification must be a JSON object, got {type(element).__name__}"
            out.unprocessable.append(unprocessable(raw, reason))
            continue
        if element.get("schemaVersion") != 1:
            entity, rid = _identity(element)
            reason = f"unsupported schemaVersion {element.get('schemaVersion')!r}; this service reads 1"
            out.unprocessable.append(unprocessable(raw, reason, entity, rid))
            continue
        if element.get("changeType") == METADATA_CHANGE_TYPE:
            _accept_metadata(out, element, raw)
            continue
        try:
            n = _ONE.validate_python(element)
        except ValidationError as exc:
            entity, rid = _identity(element)
            out.unprocessable.append(unprocessable(raw, _reason(exc), entity, rid))
            continue
        _accept(out, n, raw)


def _accept_metadata(out: ParsedBatch, element: dict[str, Any], raw: str) -> None:
    m = validate_metadata(element)
    if isinstance(m, str):
        entity, _ = _identity(element)
        out.unprocessable.append(unprocessable(raw, m, entity))
    else:
        out.metadata.append(m)


def parse_bodies(bodies: Iterable[bytes | str]) -> ParsedBatch:
    out = ParsedBatch()
    for body in bodies:
        parse_body(body, out)
    return out


def parse_bodies_reference(bodies: Iterable[bytes | str]) -> ParsedBatch:
    out = ParsedBatch()
    for body in bodies:
        parse_body_reference(body, out)
    return out


def resolve_reference(ref: Notification, payload: bytes | str) -> Notification | Unprocessable:
    """The notification a claim check (``payloadRef``) points to, checked against the reference.

    ``payload`` is the decrypted blob. It must be one complete notification with the reference's
    organizationId, entity, recordId, changeType and version; anything else is unprocessable.
    """
    assert ref.payloadRef is not None
    where = f"payload blob data/{ref.payloadRef.blob}"
    body = ref.model_dump_json(exclude_unset=True)
    try:
        exact = has_long_number(payload)
        n = _ONE.validate_python(loads(payload)) if exact else _ONE.validate_json(payload)
    except ValidationError as exc:
        return unprocessable(body, f"{where}: {_reason(exc)}"[:MAX_REASON], ref.entity, ref.recordId)
    except (ValueError, RecursionError) as exc:
        return unprocessable(body, f"{where}: malformed JSON: {exc}"[:MAX_REASON], ref.entity, ref.recordId)
    same = (n.organizationId.lower(), n.entity, n.recordId.lower(), n.changeType, n.version) == (
        ref.organizationId.lower(), ref.entity, ref.recordId.lower(), ref.changeType, ref.version,
    )
    if not same or n.payloadRef is not None:
        reason = f"{where} does not hold the notification its reference names (entity, recordId, version)"
        return unprocessable(body, reason, ref.entity, ref.recordId)
    problem = _semantic_error(n)
    if problem is not None:
        return unprocessable(body, f"{where}: {problem}", ref.entity, ref.recordId)
    return n
