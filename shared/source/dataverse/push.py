"""Dataverse's own Service Bus messages -> contract v1 notifications (issue 13). Core: no I/O.

Dataverse posts a serialized ``RemoteExecutionContext`` (message format Json) for every step
registered on a service endpoint (reference ``../shared/reference/dataverse.md`` section C):
``{key, value}`` arrays, ``__type`` hints, ``/Date(ms)/`` dates, application properties under
``http://schemas.microsoft.com/xrm/2011/Claims/``. This module recognises such a message by its
application properties or its shape, decodes it, and translates it into contract v1 notification
bodies with the change-tracking source's versions (:mod:`.mapping`: a row is ``2 * versionnumber``,
a delete ``2 * v + 1``), so push and pull feed the same rows and the engine's version guard keeps
the newest. The rules (docs/dataverse-push.md):

* **Full state.** A Create/Update whose post-image (with the Target) holds ``versionnumber`` and
  every column the source exports is a full-state upsert. Otherwise (an Update carries only the
  changed columns, no post-image, a truncated message, no ``versionnumber``) the record is re-read
  by id through :class:`Reread` and the row read is applied; without a re-read source the message
  is unprocessable with a reason that says how to register the post-image.
* **Delete.** The Target is an EntityReference. With a pre-image holding ``versionnumber`` ``v`` the
  delete's version is ``2v + 1``: newer than every version of the record (``v`` was its last), older
  than a later re-creation of the same id (a new write gets a larger versionnumber). Without one,
  :meth:`Reread.deleted` verifies the record is gone at the source and gives a delete version.
* **N:N.** Associate/Disassociate name the relationship and the two records, not the intersect
  row: the intersect row is read through :meth:`Reread.link` (an upsert of the row the change-tracking
  source reads too). A Disassociate's row is gone at the source and its id is not in the message:
  it is deleted by :meth:`Reread.unlinked` where the re-read source can name it, otherwise skipped
  with the reason (the change-tracking pass of the intersect entity deletes it).
* **Phantoms.** A record the source does not have (a synchronous step rolled back after posting,
  or deleted since) is skipped, or deleted at ``2v + 1`` when the message carried its version ``v``
  (so a row a phantom's post-image created goes away, and a real later re-creation stays newer).

Nothing here raises on bad input: every problem is an :class:`Unprocessable` with a precise reason.
Re-read errors are the port's: a transient one propagates (the batch is retried), a permanent one
(:class:`RereadRefused`) makes the message unprocessable with its reason.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from shared.contract.exactjson import has_long_number
from shared.contract.metadata import MetadataNotification
from shared.contract.models import GUID_PATTERN, INT64_MAX, MAX_REASON, NAME_PATTERN, ChangeType, Notification
from shared.contract.parse import ParsedBatch, Unprocessable, parse_accepted, parse_body
from shared.source.dataverse import mapping as m

log = logging.getLogger(__name__)

CLAIMS = "http://schemas.microsoft.com/xrm/2011/Claims/"
CLAIM_ENTITY = CLAIMS + "EntityLogicalName"
CLAIM_REQUEST = CLAIMS + "RequestName"
CLAIM_ORGANIZATION = CLAIMS + "Organization"
TRUNCATION_FLAG = "MessageMaxSizeExceeded"  # exact casing UNVERIFIED: compared case-insensitively
CONTRACTS_SUFFIX = ":http://schemas.microsoft.com/xrm/2011/Contracts"
BOM = b"\xef\xbb\xbf"
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
MODE_SYNCHRONOUS = 0  # IExecutionContext.Mode: 0 synchronous, 1 asynchronous
AUTOMATIC_IMAGE = "AsynchronousStepPrimaryName"  # an async step's automatic post-image (name + id only)
MAX_BODY_BYTES = 16 * 1024 * 1024  # Service Bus Premium's largest message is far below this

UPSERT_MESSAGES = frozenset({"Create", "Update", "Upsert"})
# Messages that change a record without an Entity Target: the record is re-read.
CHANGE_MESSAGES = frozenset({"Assign", "SetState", "SetStateDynamicEntity", "GrantAccess", "ModifyAccess"})
LINK_MESSAGES = frozenset({"Associate", "Disassociate"})
KNOWN_MESSAGES = UPSERT_MESSAGES | CHANGE_MESSAGES | LINK_MESSAGES | {"Delete"}

_GUID = re.compile(GUID_PATTERN)
_NAME = re.compile(NAME_PATTERN)
# /Date(ms)/ or /Date(ms+hhmm)/: ms since the Unix epoch, UTC; the offset is display-only.
_DATE = re.compile(r"^/Date\((-?\d{1,15})([+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MS = int((datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds() * 1000)
MAX_MS = int((datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH).total_seconds() * 1000)
MAX_DIGITS = 38  # decimal(38, s) is the widest exact column any destination has


# ------------------------------------------------------------------------------------ results
@dataclass(frozen=True, slots=True)
class Skipped:
    """A Dataverse message with nothing to apply (the change is superseded at the source), with why."""

    reason: str
    entity: str | None = None
    record_id: str | None = None


@dataclass(slots=True)
class Translation:
    """What one Dataverse message became: contract v1 bodies (one notification each), or why not."""

    bodies: list[bytes] = field(default_factory=list)
    unprocessable: list[Unprocessable] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    raw: str = ""  # what an unprocessable keeps: the message (with its application properties)
    label: str = "Dataverse message"
    # (entity, record id, contract version) of each notification whose version the message itself
    # carried (post-image, pre-image): assigned at the source before the batch was received.
    carried: list[tuple[str, str, int]] = field(default_factory=list)
    verified_delete: bool = False  # the body is a delete verified at the source during this parse


@dataclass(slots=True)
class PushParsedBatch(ParsedBatch):
    """A :class:`ParsedBatch` (what the engine applies) plus the Dataverse messages skipped."""

    skipped: list[Skipped] = field(default_factory=list)
    dataverse_messages: int = 0


class BadMessage(ValueError):
    """Internal: the message does not decode; the text is the reason."""


# ------------------------------------------------------------------------------------ the port
@dataclass(frozen=True, slots=True)
class EntityRef:
    id: str
    logical_name: str


class RereadRefused(RuntimeError):
    """The source cannot answer for a reason retrying will not fix (entity not exported, no privilege...)."""


class Reread(Protocol):
    """Reads the current state at the source (the change-tracking source's Web API client).

    Every notification returned is a contract v1 notification as a ``dict`` (full state, with the
    change-tracking source's versions). A transient failure raises the client's transient error;
    a permanent one raises :class:`RereadRefused`.
    """

    def columns(self, entity: str) -> frozenset[str] | None:
        """The attribute names the source exports for ``entity`` (contract names: lookups without
        ``_x_value``), or None when the source does not read ``entity``."""

    def record(self, entity: str, record_id: str) -> dict[str, Any] | None:
        """The record's current full state, or None when it does not exist."""

    def deleted(self, entity: str, record_id: str) -> dict[str, Any]:
        """After a Delete without a version: a delete notification once the record is verified
        gone (version newer than every version read before the check), or the record's current
        row when it exists again (re-created)."""

    def link(self, relationship: str, one: EntityRef, other: EntityRef) -> dict[str, Any] | None:
        """The intersect row linking ``one`` and ``other`` in ``relationship`` (schema name), or None."""

    def unlinked(self, relationship: str, one: EntityRef, other: EntityRef) -> list[dict[str, Any]]:
        """After a Disassociate: delete notifications for the intersect rows of the pair the source
        can name (verified unlinked), or the current row when the pair is linked again; [] when the
        ids are unknown."""

    def links_of(self, record: EntityRef) -> list[dict[str, Any]]:
        """A truncated Associate/Disassociate names only the record: the current intersect rows of
        every exported N:N relationship of ``record``, plus deletes for the rows held that are gone."""


class StoreDown:
    """The re-read source of an organization while the admin store cannot be reached: a message with
    a full post-image is taken as it is (held with its batch); one that needs reading at the source
    is refused with the reason (kept as unprocessable: ``des replay --dataverse`` applies it later,
    and the profile's change-tracking pass brings the same change)."""

    def __init__(self, organization_id: str, error: str) -> None:
        self.reason = (
            f"the admin store is unavailable, so the Dataverse source of organization {organization_id} cannot be "
            f"found ({error}); replay this message with `des replay --dataverse` or let change tracking bring it"
        )

    def columns(self, entity: str) -> frozenset[str] | None:
        return None  # unknown: a full post-image is taken as full state

    def record(self, entity: str, record_id: str) -> dict[str, Any] | None:
        raise RereadRefused(self.reason)

    def deleted(self, entity: str, record_id: str) -> dict[str, Any]:
        raise RereadRefused(self.reason)

    def link(self, relationship: str, one: EntityRef, other: EntityRef) -> dict[str, Any] | None:
        raise RereadRefused(self.reason)

    def unlinked(self, relationship: str, one: EntityRef, other: EntityRef) -> list[dict[str, Any]]:
        raise RereadRefused(self.reason)

    def links_of(self, record: EntityRef) -> list[dict[str, Any]]:
        raise RereadRefused(self.reason)


# organization id (lower case) -> the re-read source answering for that organization, or None when
# no Dataverse source is configured for it (the function app: the profiles' sources; shared/pull/reread.py)
RereadFor = Callable[[str], Reread | None]


# ------------------------------------------------------------------------------------ recognising
def _claims(props: Mapping[str, object] | None) -> dict[str, object]:
    if not props:
        return {}
    return {k: v for k, v in props.items() if isinstance(k, str) and k.startswith(CLAIMS)}


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return isinstance(value, int) and value != 0


def truncated_flag(props: Mapping[str, object] | None, doc: Mapping[str, Any] | None) -> bool:
    for source in (props or {}), (doc or {}):
        for key, value in source.items():
            if isinstance(key, str) and key.lower() == TRUNCATION_FLAG.lower() and _flag(value):
                return True
    return False


def is_dataverse_properties(props: Mapping[str, object] | None) -> bool:
    """Application properties Dataverse sets on every message it posts (reference C4)."""
    if not props:
        return False
    return bool(_claims(props)) or any(isinstance(k, str) and k.lower() == TRUNCATION_FLAG.lower() for k in props)


def _strip(body: bytes | str) -> bytes:
    raw = body.encode("utf-8", errors="surrogatepass") if isinstance(body, str) else body
    return raw[len(BOM) :] if raw.startswith(BOM) else raw


_DATAVERSE_NAME = b'"MessageName"'  # what looks_like_dataverse looks for first


def looks_like_dataverse(body: bytes | str) -> bool:
    """Cheap test before any JSON decoding (contract bodies keep their fast path): a
    RemoteExecutionContext names its message, a contract body its schema version."""
    if isinstance(body, str):
        return '"MessageName"' in body and '"schemaVersion"' not in body
    return body.find(_DATAVERSE_NAME) >= 0 and body.find(b'"schemaVersion"') < 0  # find: see has_long_number


def is_dataverse_context(doc: object) -> bool:
    return isinstance(doc, dict) and "schemaVersion" not in doc and "MessageName" in doc


# ------------------------------------------------------------------------------------ JSON
def _no_constant(name: str) -> Any:
    raise BadMessage(f"malformed JSON: {name} is not a JSON number")


def loads(body: bytes | str) -> Any:
    """Decode a message body: BOM stripped, numbers with a fraction exact (Decimal), NaN refused."""
    raw = _strip(body)
    if len(raw) > MAX_BODY_BYTES:
        raise BadMessage(f"message body of {len(raw)} bytes is larger than {MAX_BODY_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage(f"not UTF-8: {exc}") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except BadMessage:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadMessage(f"malformed JSON: {exc}") from None


def _pairs(value: object, where: str) -> dict[str, Any]:
    """A serialized .NET dictionary: ``[{"key": k, "value": v}, ...]`` (null: empty)."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise BadMessage(f"{where}: expected an array of {{key, value}} pairs, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "value" not in item:
            raise BadMessage(f"{where}[{i}]: expected {{\"key\": <string>, \"value\": ...}}")
        key = item["key"]
        if key in out:
            raise BadMessage(f"{where}: key {_show(key)} appears twice")
        out[key] = item["value"]
    return out


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(obj: Mapping[str, Any]) -> str | None:
    t = obj.get("__type")
    if not isinstance(t, str):
        return None
    return t.split(":", 1)[0]


def _guid(value: object, where: str) -> str:
    if not isinstance(value, str) or not _GUID.match(value):
        raise BadMessage(f"{where}: not a GUID: {_show(value)}")
    return value.lower()


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise BadMessage(f"{where}: not a logical name: {_show(value)}")
    return value


def parse_date(value: str) -> datetime | None:
    """``/Date(ms)/`` or ``/Date(ms+hhmm)/`` (after JSON decoding ``\\/`` is ``/``) -> UTC; None if not one."""
    mt = _DATE.match(value)
    if mt is None:
        return None
    ms = int(mt.group(1))
    if not MIN_MS <= ms <= MAX_MS:
        raise BadMessage(f"date {_show(value)} lies outside years 1 to 9999")
    return _EPOCH + timedelta(milliseconds=ms)


def iso(moment: datetime) -> str:
    u = moment.astimezone(UTC)
    text = f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def _number(value: Decimal | int, where: str) -> Decimal | int:
    if isinstance(value, int):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise BadMessage(f"{where}: integer {_show(value)} does not fit in 64 bits")
        return value
    try:
        finite = value.is_finite()
        digits = len(value.as_tuple().digits)
        exponent = int(value.as_tuple().exponent)
    except (InvalidOperation, TypeError, ValueError):
        finite = False
        digits = exponent = 0
    if not finite or value.adjusted() >= MAX_DIGITS or exponent < -MAX_DIGITS or digits > 2 * MAX_DIGITS:
        raise BadMessage(f"{where}: number {_show(value)} is out of range for an exact decimal(38, s)")
    return value


def decode_value(value: object, where: str) -> Any:
    """One attribute value of the RemoteExecutionContext encoding (reference C5) as a contract value."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return _number(value, where)
    if isinstance(value, str):
        moment = parse_date(value)
        return iso(moment) if moment is not None else value
    if isinstance(value, list):  # multi-select choice: an array of OptionSetValue
        return _multi_select(value, where)
    if isinstance(value, dict):
        kind = _kind(value)
        if kind == "EntityReference" or (kind is None and "Id" in value and "LogicalName" in value):
            return {"id": _guid(value.get("Id"), f"{where}.Id"), "logicalName": _name(value.get("LogicalName"),
                                                                                      f"{where}.LogicalName")}
        if kind == "OptionSetValue":
            return _option(value.get("Value"), f"{where}.Value")
        if kind == "Money":
            money = value.get("Value")
            if not isinstance(money, int | Decimal) or isinstance(money, bool):
                raise BadMessage(f"{where}: Money without a numeric Value: {_show(money)}")
            return _number(money, f"{where}.Value")
        if kind == "OptionSetValueCollection":
            items = value.get("Items", value.get("Values"))
            return _multi_select(items if isinstance(items, list) else [], where)
        raise BadMessage(f"{where}: unsupported value type {_show(value.get('__type', 'object without __type'))}")
    raise BadMessage(f"{where}: unsupported value {_show(value)}")


def _option(value: object, where: str) -> int:
    if type(value) is not int or not -(2**31) <= value < 2**31:
        raise BadMessage(f"{where}: an option value must be a 32-bit integer, got {_show(value)}")
    return value


def _multi_select(items: list[Any], where: str) -> str | None:
    """As DES stored a multi-select choice: the option values as text, comma-separated (``"1,3"``)."""
    values: list[int] = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and _kind(item) in ("OptionSetValue", None) and "Value" in item:
            values.append(_option(item["Value"], f"{where}[{i}].Value"))
        elif type(item) is int:
            values.append(_option(item, f"{where}[{i}]"))
        else:
            raise BadMessage(f"{where}[{i}]: a multi-select item must be an OptionSetValue, got {_show(item)}")
    return ",".join(str(v) for v in values) if values else None


def _attributes(entity: object, where: str) -> dict[str, Any]:
    if not isinstance(entity, dict):
        raise BadMessage(f"{where}: expected an Entity object, got {type(entity).__name__}")
    out: dict[str, Any] = {}
    for name, value in _pairs(entity.get("Attributes"), f"{where}.Attributes").items():
        out[name] = decode_value(value, f"{where}.Attributes[{_show(name, 40)}]")
    return out


# ------------------------------------------------------------------------------------ decoding
@dataclass(slots=True)
class DataverseMessage:
    """A decoded RemoteExecutionContext, what the translation needs of it."""

    message: str
    entity: str
    record_id: str | None
    organization_id: str
    operation_time: datetime | None
    truncated: bool
    mode: int | None
    target: dict[str, Any] | None = None  # Entity Target's attributes (Create/Update)
    target_ref: EntityRef | None = None  # EntityReference Target (Delete, Associate)
    post_image: dict[str, Any] | None = None  # every post-image merged (automatic one excluded)
    pre_image: dict[str, Any] | None = None
    relationship: str | None = None
    related: list[EntityRef] = field(default_factory=list)

    def label(self) -> str:
        rid = f" {self.record_id}" if self.record_id else ""
        return f"Dataverse {self.message} of {self.entity}{rid}"


def _ref(value: object, where: str) -> EntityRef:
    if not isinstance(value, dict) or _kind(value) not in ("EntityReference", None):
        raise BadMessage(f"{where}: expected an EntityReference, got {_show(value)}")
    return EntityRef(_guid(value.get("Id"), f"{where}.Id"), _name(value.get("LogicalName"), f"{where}.LogicalName"))


def _images(value: object, where: str) -> dict[str, Any] | None:
    images = _pairs(value, where)
    merged: dict[str, Any] | None = None
    for name, image in images.items():
        if image is None:
            continue
        attrs = _attributes(image, f"{where}[{_show(name, 40)}]")
        if name == AUTOMATIC_IMAGE:
            continue  # primary name + id only: never full state
        merged = {**(merged or {}), **attrs}
    return merged


def decode(doc: Mapping[str, Any], props: Mapping[str, object] | None) -> DataverseMessage:
    """The RemoteExecutionContext (reference C5) of one message; :class:`BadMessage` with the reason."""
    claims = _claims(props)
    message = doc.get("MessageName", claims.get(CLAIM_REQUEST))
    if not isinstance(message, str) or not message:
        raise BadMessage(f"MessageName: expected the message name, got {_show(message)}")
    entity_raw = doc.get("PrimaryEntityName", claims.get(CLAIM_ENTITY))
    entity = _name(entity_raw, "PrimaryEntityName")
    organization_id = _guid(doc.get("OrganizationId"), "OrganizationId")
    rid_raw = doc.get("PrimaryEntityId")
    record_id = _guid(rid_raw, "PrimaryEntityId") if rid_raw not in (None, EMPTY_GUID) else None
    when_raw = doc.get("OperationCreatedOn")
    when = parse_date(when_raw) if isinstance(when_raw, str) else None
    if when_raw is not None and when is None:
        raise BadMessage(f"OperationCreatedOn: not a /Date(ms)/ value: {_show(when_raw)}")
    mode = doc.get("Mode")
    out = DataverseMessage(
        message=message, entity=entity, record_id=record_id, organization_id=organization_id,
        # the flag, or the members Dataverse drops from an oversized message (reference C3)
        operation_time=when, truncated=truncated_flag(props, doc) or "InputParameters" not in doc,
        mode=mode if type(mode) is int else None,
    )  # fmt: skip
    if message not in KNOWN_MESSAGES:
        return out
    inputs = _pairs(doc.get("InputParameters"), "InputParameters")
    target = inputs.get("Target")
    if isinstance(target, dict) and (_kind(target) == "Entity" or "Attributes" in target):
        out.target = _attributes(target, "InputParameters.Target")
        tid = target.get("Id")
        if tid is not None and tid != EMPTY_GUID:
            out.record_id = out.record_id or _guid(tid, "InputParameters.Target.Id")
    elif target is not None:
        out.target_ref = _ref(target, "InputParameters.Target")
        out.record_id = out.record_id or out.target_ref.id
    if "Relationship" in inputs:
        rel = inputs["Relationship"]
        if not isinstance(rel, dict):
            raise BadMessage(f"InputParameters.Relationship: expected a Relationship, got {_show(rel)}")
        out.relationship = _name((rel.get("SchemaName") or "").lower() if isinstance(rel.get("SchemaName"), str)
                                 else rel.get("SchemaName"), "InputParameters.Relationship.SchemaName")
        related = inputs.get("RelatedEntities")
        if isinstance(related, dict):  # an EntityReferenceCollection object (shape UNVERIFIED)
            related = next((v for v in related.values() if isinstance(v, list)), [])
        if not isinstance(related, list):
            raise BadMessage(f"InputParameters.RelatedEntities: expected EntityReferences, got {_show(related)}")
        out.related = [_ref(r, f"InputParameters.RelatedEntities[{i}]") for i, r in enumerate(related)]
    out.post_image = _images(doc.get("PostEntityImages"), "PostEntityImages")
    out.pre_image = _images(doc.get("PreEntityImages"), "PreEntityImages")
    return out


# ------------------------------------------------------------------------------------ translating
REGISTER_HINT = (
    "register a post-image on the step holding versionnumber, modifiedon and every exported column "
    "(docs/dataverse-push.md), or give this consumer the profile's Dataverse source so the record is re-read"
)


def _version_of(attrs: Mapping[str, Any] | None) -> int | None:
    vn = (attrs or {}).get(m.VERSION_COLUMN)
    if type(vn) is int and 0 <= vn <= m.MAX_VERSIONNUMBER:
        return vn
    if isinstance(vn, str) and vn.isdigit() and len(vn) < 20 and int(vn) <= m.MAX_VERSIONNUMBER:
        return int(vn)
    return None


def _changed_on(attrs: Mapping[str, Any], msg: DataverseMessage) -> str | None:
    modified = attrs.get(m.MODIFIED_COLUMN)
    if isinstance(modified, str) and modified.endswith("Z") and modified[:4].isdigit():
        return modified
    return iso(msg.operation_time) if msg.operation_time is not None else None


class _Out:
    def __init__(self, msg: DataverseMessage, raw: str) -> None:
        self.msg = msg
        self.raw = raw
        self.t = Translation(raw=raw, label=msg.label())

    def bad(self, reason: str, *, record_id: str | None = None) -> Translation:
        text = f"{self.msg.label()}: {reason}"
        self.t.unprocessable.append(
            Unprocessable(self.raw, text[:MAX_REASON], self.msg.entity, record_id or self.msg.record_id)
        )
        return self.t

    def skip(self, reason: str, *, entity: str | None = None, record_id: str | None = None) -> Translation:
        text = f"{self.msg.label()}: {reason}"
        self.t.skipped.append(Skipped(text[:MAX_REASON], entity or self.msg.entity, record_id or self.msg.record_id))
        log.info("%s", text)
        return self.t

    def emit(self, notification: Mapping[str, Any], *, carried: bool = True) -> Translation:
        try:
            self.t.bodies.append(m.encode(notification))
        except (ValueError, UnicodeEncodeError) as exc:
            return self.bad(f"cannot be written as a notification: {exc}")
        if carried:
            entity, rid, version = notification["entity"], notification["recordId"], notification["version"]
            self.t.carried.append((str(entity), str(rid).lower(), int(version)))
        return self.t

    def emit_read(self, notification: Mapping[str, Any], change_type: str | None = None) -> Translation:
        """A notification the re-read source returned, checked against the message's organization."""
        org = notification.get("organizationId")
        if isinstance(org, str) and org.lower() != self.msg.organization_id:
            return self.bad(
                f"the message comes from organization {self.msg.organization_id} but the Dataverse source "
                f"reads organization {org.lower()}: this queue receives another environment's messages"
            )
        if change_type is not None and notification.get("changeType") in ("create", "update"):
            notification = {**notification, "changeType": change_type}
        return self.emit(notification, carried=False)


def _notification(msg: DataverseMessage, record_id: str, change_type: str, version: int, changed_on: str,
                  attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    n: dict[str, Any] = {
        "schemaVersion": 1, "organizationId": msg.organization_id, "entity": msg.entity, "recordId": record_id,
        "changeType": change_type, "version": version, "changedOn": changed_on,
    }  # fmt: skip
    if attributes is not None:
        n["attributes"] = dict(attributes)
    return n


def _columns(reread: Reread | None, entity: str) -> frozenset[str] | None:
    return reread.columns(entity) if reread is not None else None


def _upsert(out: _Out, reread: Reread | None) -> Translation:
    msg = out.msg
    change_type = "create" if msg.message == "Create" else "update"
    record_id = msg.record_id
    if record_id is None:
        return out.bad("no record id (PrimaryEntityId or InputParameters.Target.Id)")
    state = {**(msg.target or {}), **(msg.post_image or {})}
    vn = _version_of(state)
    exported = _columns(reread, msg.entity)
    why: str | None = None
    if msg.truncated:
        why = "the message was truncated (MessageMaxSizeExceeded: over 192 KB)"
    elif msg.message not in UPSERT_MESSAGES:
        why = f"a {msg.message} message carries no record state"
    elif msg.post_image is None:
        why = "no post-image (an Update's Target holds only the changed columns)"
    elif vn is None:
        why = "the post-image has no versionnumber"
    elif exported is not None and not exported.issubset(state):
        missing = sorted(exported.difference(state))
        why = f"the post-image lacks exported column(s) {_show(missing, 200)}"
    elif msg.mode == MODE_SYNCHRONOUS and reread is not None:
        why = "a synchronous step's message (Mode 0) may be a phantom of a rolled-back transaction"
    if why is None:
        assert vn is not None
        changed_on = _changed_on(state, msg)
        if changed_on is None:
            return out.bad("no modifiedon in the post-image and no OperationCreatedOn")
        attrs = {k: v for k, v in state.items() if k != m.VERSION_COLUMN and (exported is None or k in exported)}
        return out.emit(_notification(msg, record_id, change_type, m.row_version(vn), changed_on, attrs))
    if reread is None:
        return out.bad(f"cannot be applied as full state: {why}; {REGISTER_HINT}")
    try:
        row = reread.record(msg.entity, record_id)
    except RereadRefused as exc:
        return out.bad(f"{why}, and re-reading it failed: {exc}")
    if row is not None:
        return out.emit_read(row, change_type)
    if vn is not None:
        # Gone at the source: a rolled-back synchronous step (phantom) or deleted since. A row this
        # version created goes; a later re-creation has a larger versionnumber and stays.
        changed_on = _changed_on(state, msg) or iso(datetime.now(UTC))
        return out.emit(_notification(msg, record_id, "delete", m.delete_version(vn), changed_on, None))
    return out.skip("the record does not exist at the source (deleted since, or a rolled-back synchronous step)")


def _delete(out: _Out, reread: Reread | None) -> Translation:
    msg = out.msg
    record_id = msg.record_id
    if record_id is None:
        return out.bad("no record id (PrimaryEntityId or the EntityReference Target)")
    if msg.target_ref is not None and (msg.target_ref.id, msg.target_ref.logical_name) != (record_id, msg.entity):
        return out.bad(f"the Target {msg.target_ref.logical_name} {msg.target_ref.id} is not the primary entity")
    vn = _version_of(msg.pre_image)
    if vn is not None:
        changed_on = iso(msg.operation_time) if msg.operation_time is not None else None
        if changed_on is None:
            return out.bad("no OperationCreatedOn")
        return out.emit(_notification(msg, record_id, "delete", m.delete_version(vn), changed_on, None))
    if reread is None:
        return out.bad(
            "a Delete carries no versionnumber: register a pre-image holding versionnumber on the Delete step "
            "(docs/dataverse-push.md), or give this consumer the profile's Dataverse source"
        )
    try:
        n = reread.deleted(msg.entity, record_id)
    except RereadRefused as exc:
        return out.bad(f"no versionnumber in the message, and verifying the delete at the source failed: {exc}")
    out.t.verified_delete = n.get("changeType") == "delete"
    return out.emit_read(n)


def _link(out: _Out, reread: Reread | None) -> Translation:
    msg = out.msg
    if msg.relationship is None or msg.target_ref is None:
        if not msg.truncated:
            return out.bad("an N:N message needs InputParameters Target, Relationship and RelatedEntities")
        if reread is None or msg.record_id is None:
            return out.bad("the message was truncated (MessageMaxSizeExceeded) and names no relationship; "
                           "give this consumer the profile's Dataverse source, or leave N:N to the "
                           "change-tracking pass of the intersect entity")
        try:
            links = reread.links_of(EntityRef(msg.record_id, msg.entity))
        except RereadRefused as exc:
            return out.bad(f"the message was truncated, and re-reading the record's N:N rows failed: {exc}")
        for n in links:
            out.emit_read(n)
        if not links:
            out.skip("truncated; the record has no N:N rows to write here")
        return out.t
    if not msg.related:
        return out.bad("RelatedEntities is empty")
    if reread is None:
        return out.bad(
            f"{msg.message} names the records, not the intersect row (its id and versionnumber): give this "
            "consumer the profile's Dataverse source so the row is read, or leave N:N to the change-tracking pass"
        )
    for other in msg.related:
        try:
            if msg.message == "Associate":
                row = reread.link(msg.relationship, msg.target_ref, other)
                if row is None:
                    out.skip(f"{msg.relationship}: {msg.target_ref.id} and {other.id} are not linked at the "
                             "source any more (disassociated since)", entity=None, record_id=other.id)
                else:
                    out.emit_read(row, "update")
            else:
                rows = reread.unlinked(msg.relationship, msg.target_ref, other)
                if not rows:
                    out.skip(f"{msg.relationship}: the intersect row of {msg.target_ref.id} and {other.id} is "
                             "unknown here; the change-tracking pass of the intersect entity deletes it",
                             entity=None, record_id=other.id)
                for row in rows:
                    out.emit_read(row)
        except RereadRefused as exc:
            out.bad(f"reading the intersect row of {msg.relationship} failed: {exc}", record_id=other.id)
    return out.t


def translate(
    doc: Mapping[str, Any],
    props: Mapping[str, object] | None,
    reread: Reread | None,
    *,
    raw: str,
    reread_for: RereadFor | None = None,
) -> Translation:
    """One decoded message body (``doc``) -> notifications; ``raw`` is what an unprocessable keeps.
    With ``reread_for`` the re-read source is the one answering for the message's organization."""
    try:
        msg = decode(doc, props)
    except BadMessage as exc:
        entity = doc.get("PrimaryEntityName")
        rid = doc.get("PrimaryEntityId")
        name = doc.get("MessageName")
        label = f"Dataverse {name if isinstance(name, str) else 'message'}"
        reason = f"{label}: {exc}"[:MAX_REASON]
        return Translation(unprocessable=[Unprocessable(
            raw, reason, entity if isinstance(entity, str) and _NAME.match(entity) else None,
            rid.lower() if isinstance(rid, str) and _GUID.match(rid) else None,
        )], raw=raw, label=label)  # fmt: skip
    out = _Out(msg, raw)
    if reread_for is not None:
        reread = reread_for(msg.organization_id)
    if msg.message in UPSERT_MESSAGES or msg.message in CHANGE_MESSAGES:
        return _upsert(out, reread)
    if msg.message == "Delete":
        return _delete(out, reread)
    if msg.message in LINK_MESSAGES:
        return _link(out, reread)
    return out.bad(
        f"message {_show(msg.message)} is not one this service translates (Create, Update, Delete, Associate, "
        f"Disassociate, {', '.join(sorted(CHANGE_MESSAGES))}): remove that step from the service endpoint"
    )


# ------------------------------------------------------------------------------------ entry points
def _kept_text(body: bytes | str, props: Mapping[str, object] | None, *, is_json: bool) -> str:
    """What an unprocessable keeps: the body, or (with application properties) a replayable message line."""
    text = _strip(body).decode("utf-8", errors="replace")
    if not props:
        return text
    try:
        head = json.dumps({"applicationProperties": dict(props)}, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return text
    if not is_json:
        return head[:-1] + ',"bodyText":' + json.dumps(text, ensure_ascii=False) + "}"
    return head[:-1] + ',"body":' + text + "}"


def _text_properties(props: Mapping[Any, object]) -> dict[str, object]:
    """Application properties as text: an AMQP client (azure-servicebus) may give keys and string
    values as bytes; the Functions binding gives text."""
    out: dict[str, object] = {}
    for key, value in props.items():
        name = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        out[str(name)] = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return out


def translate_body(
    body: bytes | str,
    application_properties: Mapping[str, object] | None,
    reread: Reread | None,
    *,
    reread_for: RereadFor | None = None,
) -> Translation | None:
    """A Dataverse message -> its translation; None when ``body`` is not one (a contract v1 body).

    A message is Dataverse's when its application properties carry the ``Claims/*`` keys (or the
    truncation flag), or when its body is a JSON object with ``MessageName`` and no ``schemaVersion``.
    """
    props = _text_properties(application_properties) if application_properties else None
    by_properties = is_dataverse_properties(props)
    if not by_properties and not looks_like_dataverse(body):
        return None
    try:
        doc = loads(body)
    except BadMessage as exc:
        if not by_properties:
            return None  # not recognisably Dataverse's: the contract parser gives its reason
        raw = _kept_text(body, props, is_json=False)
        return Translation(unprocessable=[Unprocessable(raw, f"Dataverse message: {exc}"[:MAX_REASON])], raw=raw)
    raw = _kept_text(body, props, is_json=True)
    if not is_dataverse_context(doc):
        if not by_properties:
            return None
        kind = type(doc).__name__ if not isinstance(doc, dict) else "an object without MessageName"
        return Translation(unprocessable=[Unprocessable(
            raw, f"Dataverse message: the body is not a RemoteExecutionContext (JSON message format): got {kind}; "
                 "choose Message Format 'Json' on the service endpoint",
        )])  # fmt: skip
    return translate(doc, props, reread, raw=raw, reread_for=reread_for)


Message = bytes | str | tuple[bytes | str, Mapping[str, object] | None]


def _ascii_json(value: Any) -> bytes:
    """JSON with numbers exactly as read (Decimal) and every non-ASCII character escaped, so even a
    lone surrogate survives to the decoder that reports it."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, Decimal):
            out.append(str(v))
        elif isinstance(v, dict):
            out.append("{")
            for i, (k, item) in enumerate(v.items()):
                out.append("," if i else "")
                out.append(json.dumps(k))
                out.append(":")
                walk(item)
            out.append("}")
        elif isinstance(v, list):
            out.append("[")
            for i, item in enumerate(v):
                out.append("," if i else "")
                walk(item)
            out.append("]")
        else:
            out.append(json.dumps(v))

    walk(value)
    return "".join(out).encode("ascii")


_MESSAGE_LINE = b'"applicationProperties"'


def split_line(line: bytes | str) -> tuple[bytes | str, Mapping[str, object] | None]:
    """A replay line: a message body, or ``{"applicationProperties": {...}, "body": <object>}`` (the
    simulator's ``line_format="message"``, and what an unprocessable Dataverse message keeps)."""
    if not _is_message_line(line):
        return line, None
    raw = _strip(line)
    try:
        doc = json.loads(raw.decode("utf-8"), parse_float=Decimal)
    except (ValueError, RecursionError):
        return line, None
    if not isinstance(doc, dict) or "schemaVersion" in doc or not isinstance(doc.get("applicationProperties"), dict):
        return line, None
    props = doc["applicationProperties"]
    if "body" in doc:
        return doc["body"] if isinstance(doc["body"], str) else _ascii_json(doc["body"]), props
    if isinstance(doc.get("bodyText"), str):
        return doc["bodyText"], props
    return line, None


class _BatchReread:
    """One batch's view of the source: each record and column list is read once per batch (several
    partial Updates of one record in a batch cost one re-read; all see the same current state)."""

    def __init__(self, inner: Reread) -> None:
        self.inner = inner
        self._columns: dict[str, frozenset[str] | None] = {}
        self._records: dict[tuple[str, str], dict[str, Any] | None] = {}

    def columns(self, entity: str) -> frozenset[str] | None:
        if entity not in self._columns:
            self._columns[entity] = self.inner.columns(entity)
        return self._columns[entity]

    def record(self, entity: str, record_id: str) -> dict[str, Any] | None:
        key = (entity, record_id)
        if key not in self._records:
            self._records[key] = self.inner.record(entity, record_id)
        row = self._records[key]
        return dict(row) if row is not None else None

    def deleted(self, entity: str, record_id: str) -> dict[str, Any]:
        self._records.pop((entity, record_id), None)
        return self.inner.deleted(entity, record_id)

    def link(self, relationship: str, one: EntityRef, other: EntityRef) -> dict[str, Any] | None:
        return self.inner.link(relationship, one, other)

    def unlinked(self, relationship: str, one: EntityRef, other: EntityRef) -> list[dict[str, Any]]:
        return self.inner.unlinked(relationship, one, other)

    def links_of(self, record: EntityRef) -> list[dict[str, Any]]:
        return self.inner.links_of(record)


def _parse_translated(b: bytes, t: Translation, out: PushParsedBatch) -> None:
    """A translated body through the contract checks; what fails them keeps the original message."""
    before = len(out.unprocessable)
    parse_body(b, out)
    for i in range(before, len(out.unprocessable)):
        u = out.unprocessable[i]
        reason = f"{t.label}: the translated notification fails the contract: {u.reason}"
        out.unprocessable[i] = Unprocessable(t.raw or u.body, reason[:MAX_REASON], u.entity, u.record_id)


class _BatchRereadFor:
    """One batch's re-read sources, by organization (each looked up and wrapped once per batch)."""

    def __init__(self, inner: RereadFor) -> None:
        self.inner = inner
        self._by_org: dict[str, _BatchReread | None] = {}

    def __call__(self, organization_id: str) -> Reread | None:
        if organization_id not in self._by_org:
            found = self.inner(organization_id)
            self._by_org[organization_id] = _BatchReread(found) if found is not None else None
        return self._by_org[organization_id]


def parse_messages(
    messages: Iterable[Message], reread: Reread | None = None, *, reread_for: RereadFor | None = None
) -> PushParsedBatch:
    """Contract v1 bodies and Dataverse messages on the same queue -> what the engine applies.

    Each item is a body, or ``(body, application_properties)``. Contract bodies go through the
    contract parser unchanged (their fast path untouched); Dataverse messages are translated and
    their notifications then pass the same contract checks. The re-read source is ``reread`` for
    every message, or ``reread_for(<the message's organization>)`` (None: no source for it).
    """
    out = PushParsedBatch()
    reread = _BatchReread(reread) if reread is not None else None
    per_org = _BatchRereadFor(reread_for) if reread_for is not None else None
    verified: list[int] = []  # indexes in out.notifications of deletes verified at the source
    carried: dict[tuple[str, str], int] = {}  # (entity, record id) -> highest version a message carried
    for item in messages:
        body, props = item if isinstance(item, tuple) else (item, None)
        if not props and not looks_like_dataverse(body):
            parse_body(body, out)  # a contract v1 body: its fast path, nothing else
            continue
        t = translate_body(body, props, reread, reread_for=per_org)
        if t is None:
            parse_body(body, out)
            continue
        out.dataverse_messages += 1
        start = len(out.notifications)
        for b in t.bodies:
            _parse_translated(b, t, out)
        if t.verified_delete:
            verified.extend(range(start, len(out.notifications)))
        for entity, rid, version in t.carried:
            key = (entity, rid)
            carried[key] = max(version, carried.get(key, version))
        out.received += len(t.unprocessable)
        out.unprocessable.extend(t.unprocessable)
        out.skipped.extend(t.skipped)
    _fold_carried(out, verified, carried)
    return out


def _fold_carried(out: PushParsedBatch, verified: list[int], carried: Mapping[tuple[str, str], int]) -> None:
    """A delete verified at the source during this parse gets a version above every version of its
    record that a message of this batch carried: those were assigned before the batch was received,
    so before the verifying read (docs/dataverse.md, "Versions"; a re-creation after that read has a
    larger versionnumber still). Without this an Update of the same batch, older than the delete but
    carrying a version the source's delete mark has not seen, would win and bring the record back."""
    for i in verified:
        n = out.notifications[i]
        if n.changeType is not ChangeType.DELETE:
            continue
        top = carried.get((n.entity, n.recordId.lower()))
        if top is None:
            continue
        floor = top + 1 if top % 2 == 0 else top  # above a row version 2v; a carried delete's own version
        if n.version < floor:
            out.notifications[i] = n.model_copy(update={"version": floor})


def parse_lines(
    lines: Iterable[bytes | str], reread: Reread | None = None, *, reread_for: RereadFor | None = None
) -> PushParsedBatch:
    """``des replay``'s lines: bodies, or message lines with application properties (:func:`split_line`).

    Shortcuts for a batch of byte lines, checked on the lines joined by newlines (a newline ends any
    run of digits, so the joined lines hold a long number only if a line does):
    1. without long numbers, the contract's fast path alone (:func:`parse_accepted`): when it
       accepts every line, no line is a message line or a Dataverse message (neither decodes as a
       contract body, and a body that does is parsed as one by the route below too);
    2. none of the lines can be a message line or a Dataverse message: the contract parser, line by
       line (its check for long numbers only when the joined lines have one)."""
    if isinstance(lines, list):
        try:
            joined = b"\n".join(lines)  # type: ignore[arg-type]
        except TypeError:  # some lines are str
            joined = b""
        if joined:
            exact = has_long_number(joined)
            if not exact:
                del joined  # a batch's size: not kept while the batch is parsed
                out = PushParsedBatch()
                if parse_accepted(lines, out):
                    return out
                del out
                joined = b"\n".join(lines)  # type: ignore[arg-type]
            plain = joined.find(_MESSAGE_LINE) < 0 and joined.find(_DATAVERSE_NAME) < 0
            del joined
            if plain:
                out = PushParsedBatch()
                for line in lines:
                    parse_body(line, out, exact=exact)
                return out
    messages = [split_line(line) if _is_message_line(line) else line for line in lines]
    return parse_messages(messages, reread, reread_for=reread_for)


def _is_message_line(line: bytes | str) -> bool:
    if isinstance(line, bytes):
        return line.find(_MESSAGE_LINE, 0, 4096) >= 0
    return line.find('"applicationProperties"', 0, 4096) >= 0


def translate_to_notifications(
    body: bytes | str, application_properties: Mapping[str, object] | None, reread: Reread | None
) -> list[Notification | MetadataNotification | Unprocessable | Skipped]:
    """One message (either kind) as a flat list of outcomes-to-be, for callers that want objects."""
    parsed = parse_messages([(body, application_properties)], reread)
    return [*parsed.notifications, *parsed.metadata, *parsed.unprocessable, *parsed.skipped]
