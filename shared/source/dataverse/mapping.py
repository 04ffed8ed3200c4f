"""Dataverse Web API rows and metadata -> contract v1 notifications. Core: no I/O, no Azure SDK.

Wire shapes: ``../shared/reference/dataverse.md`` sections A (change tracking) and D (metadata).
The argument for the version numbers (why a delete is newer than every version of its record seen
before and older than any later re-creation) is in docs/dataverse.md, "Versions"; in short:

* a row's contract ``version`` is ``2 * versionnumber`` (even);
* a delete's is ``2 * H + 1`` (odd), where ``H`` is the highest ``versionnumber`` of the entity
  read before the delete was established (the cursor's high-water mark and the rows of the page
  that carries the delete entry, or, when deletes are verified, of everything read before the
  verifying read).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.contract.models import INT64_MAX

log = logging.getLogger(__name__)

DELETED_SUFFIX = "/$deletedEntity"
NEXT_LINK = "@odata.nextLink"
DELTA_LINK = "@odata.deltaLink"
LOOKUP_ANNOTATION = "@Microsoft.Dynamics.CRM.lookuplogicalname"
EXPIRED_VERSION_STAMP = "0x80044352"
VERSION_COLUMN = "versionnumber"
MODIFIED_COLUMN = "modifiedon"
MAX_VERSIONNUMBER = (INT64_MAX - 1) // 2  # 2 * v + 1 must stay an int64
_LOOKUP_RE = re.compile(r"^_([a-z][a-z0-9_]*)_value$")

# Attribute types whose values are not read as columns (their metadata is still published).
NOT_READ_TYPES = frozenset({"PartyList", "CalendarRules", "ManagedProperty", "File", "Image", "Virtual"})
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
# Activity tables key on activityid, not <name>id (reference A4); lookups to them name the key.
ACTIVITY_ENTITIES = frozenset(
    {
        "activitypointer", "appointment", "email", "fax", "letter", "phonecall", "recurringappointmentmaster",
        "task", "socialactivity", "serviceappointment", "campaignactivity", "campaignresponse", "bulkoperation",
        "chat", "msfp_alert", "msfp_surveyinvite", "msfp_surveyresponse",
    }
)  # fmt: skip


# ---------------------------------------------------------------------------------- versions
def row_version(versionnumber: int) -> int:
    """The contract version of a row read with this ``versionnumber`` (even)."""
    return 2 * versionnumber


def delete_version(high_water: int) -> int:
    """The contract version of a delete established after reading versionnumbers up to ``high_water`` (odd)."""
    return 2 * high_water + 1


def delete_mark(high_water: int, held: int | None) -> int:
    """The ``H`` of a delete: the high-water mark, raised so that ``2H + 1`` is newer than the version
    the destination holds for the record (``held``, read before the delete was established; a row of
    this source or of push holds ``2v``, so ``H`` stays a versionnumber read before then)."""
    if held is None or held <= 0:
        return high_water
    return min(max(high_water, (held + 1) // 2), MAX_VERSIONNUMBER)


def versionnumber_of(version: int) -> int:
    """The Dataverse ``versionnumber`` behind a contract version (a delete's: the high-water mark)."""
    return version // 2


# ---------------------------------------------------------------------------------- JSON
def loads(body: bytes | str) -> Any:
    """Decode a Web API body with every non-integral number as an exact :class:`Decimal`."""
    return json.loads(body, parse_float=Decimal)


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a JSON number: {value}")
        out.append(str(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        out.append(json.dumps(value, ensure_ascii=False, allow_nan=False))


def encode(notification: Mapping[str, Any]) -> bytes:
    """One notification as a message body: JSON, money and decimals exactly as Dataverse sent them.

    Decimals sit among the attribute values: they go through the C encoder as unique placeholder
    strings (a NUL and a random nonce, which no encoded value can equal), then become numbers.
    """
    attrs = notification.get("attributes")
    if not isinstance(attrs, dict) or not any(type(v) is Decimal for v in attrs.values()):
        if _has_decimal(notification):
            out: list[str] = []
            _encode(notification, out)
            return "".join(out).encode("utf-8")
        return json.dumps(notification, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    nonce = uuid.uuid4().hex
    numbers: dict[str, str] = {}
    swapped: dict[str, Any] = {}
    for k, v in attrs.items():
        if type(v) is Decimal:
            if not v.is_finite():
                raise ValueError(f"not a JSON number: {v}")
            mark = f"\x00{nonce}{len(numbers)}"
            numbers[json.dumps(mark)] = str(v)
            swapped[k] = mark
        else:
            swapped[k] = v
    text = json.dumps({**notification, "attributes": swapped}, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"))  # fmt: skip
    for quoted, number in numbers.items():
        text = text.replace(quoted, number, 1)
    return text.encode("utf-8")


def _has_decimal(value: Any) -> bool:
    if isinstance(value, Decimal):
        return True
    if isinstance(value, dict):
        return any(_has_decimal(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_decimal(v) for v in value)
    return False


# ---------------------------------------------------------------------------------- entity
@dataclass(frozen=True, slots=True)
class EntityInfo:
    """What the source needs of an entity's definition to read and map its rows."""

    logical_name: str
    entity_set: str
    primary_id: str
    columns: tuple[str, ...]  # $select: attribute names, lookups as _x_value; versionnumber and modifiedon last
    lookup_targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # lookup -> target entities
    change_tracking: bool = True
    is_intersect: bool = False

    def select(self) -> str:
        return ",".join(self.columns)

    def to_json(self) -> dict[str, Any]:
        return {
            "logicalName": self.logical_name, "entitySet": self.entity_set, "primaryId": self.primary_id,
            "columns": list(self.columns), "lookupTargets": {k: list(v) for k, v in self.lookup_targets.items()},
            "changeTracking": self.change_tracking, "isIntersect": self.is_intersect,
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EntityInfo:
        return cls(
            logical_name=doc["logicalName"], entity_set=doc["entitySet"], primary_id=doc["primaryId"],
            columns=tuple(doc["columns"]), lookup_targets={k: tuple(v) for k, v in doc["lookupTargets"].items()},
            change_tracking=bool(doc.get("changeTracking", True)), is_intersect=bool(doc.get("isIntersect", False)),
        )  # fmt: skip


# ---------------------------------------------------------------------------------- rows
def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_deleted_entry(row: Mapping[str, Any]) -> bool:
    context = row.get("@odata.context")
    return isinstance(context, str) and context.endswith(DELETED_SUFFIX)


def _int_version(value: Any) -> int | None:
    """versionnumber as an int (it is a BigInt; some serializers send it as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return None


def _lookup_value(info: EntityInfo, attr: str, guid: Any, row: Mapping[str, Any], key: str) -> Any:
    if guid is None:
        return None
    target = row.get(key + LOOKUP_ANNOTATION)
    if not isinstance(target, str):
        targets = info.lookup_targets.get(attr, ())
        if len(targets) != 1:
            log.warning(
                "%s.%s: no lookuplogicalname annotation and %d targets; kept as a bare id",
                info.logical_name,
                attr,
                len(targets),
            )
            return guid
        target = targets[0]
    return {"id": guid, "logicalName": target}


def row_attributes(info: EntityInfo, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's columns as contract attributes: lookups ``_x_value`` -> ``x: {id, logicalName}``."""
    attrs: dict[str, Any] = {}
    for key, value in row.items():
        if "@" in key or key == VERSION_COLUMN:
            continue
        m = _LOOKUP_RE.match(key)
        if m is not None:
            attr = m.group(1)
            attrs[attr] = _lookup_value(info, attr, value, row, key)
        elif isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            attrs[key] = ",".join(map(str, value))  # a multi-select as an array: stored as DES did, "1,3"
        else:
            attrs[key] = value
    return attrs


def row_notification(
    info: EntityInfo, organization_id: str, row: Mapping[str, Any], *, change_type: str, read_at: datetime
) -> dict[str, Any]:
    """A create/update notification for one row (full state).

    Whatever the row lacks (an id, a versionnumber) stays visibly wrong in the notification, so the
    contract check makes it unprocessable with the reason instead of the source dropping it.
    """
    vn = _int_version(row.get(VERSION_COLUMN))
    changed = row.get(MODIFIED_COLUMN)
    return {
        "schemaVersion": 1,
        "organizationId": organization_id,
        "entity": info.logical_name,
        "recordId": row.get(info.primary_id),
        "changeType": change_type,
        # out of range (negative, or 2v past int64) stays out of range: the contract says why
        "version": row_version(vn) if vn is not None else row.get(VERSION_COLUMN),
        # Intersect (N:N) rows have no modifiedon: the time we read them stands in.
        "changedOn": changed if isinstance(changed, str) else iso(read_at),
        "attributes": row_attributes(info, row),
    }


def delete_notification(
    info: EntityInfo, organization_id: str, record_id: str, *, high_water: int, read_at: datetime
) -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "organizationId": organization_id,
        "entity": info.logical_name,
        "recordId": record_id,
        "changeType": "delete",
        "version": delete_version(high_water),
        "changedOn": iso(read_at),
    }


@dataclass(slots=True)
class MappedPage:
    """One Web API page, mapped. Deletes are ids only: their version depends on how they are verified."""

    upserts: list[dict[str, Any]]
    upsert_ids: list[str]
    deleted_ids: list[str]
    high_water: int  # the cursor's before, raised by this page's versionnumbers
    newest_modified_on: str | None
    next_link: str | None
    delta_link: str | None
    rows: int  # entries on the page (rows + delete entries)


def map_page(
    info: EntityInfo,
    organization_id: str,
    body: Mapping[str, Any],
    *,
    high_water: int,
    change_type: str,
    read_at: datetime,
) -> MappedPage:
    value = body.get("value")
    entries: Sequence[Any] = value if isinstance(value, list) else []
    upserts: list[dict[str, Any]] = []
    upsert_ids: list[str] = []
    deleted: list[str] = []
    hw = high_water
    newest: str | None = None
    for row in entries:
        if not isinstance(row, dict):
            continue
        if is_deleted_entry(row):
            rid = row.get("id")
            if isinstance(rid, str):
                deleted.append(rid.lower())
            continue
        n = row_notification(info, organization_id, row, change_type=change_type, read_at=read_at)
        upserts.append(n)
        rid = row.get(info.primary_id)
        if isinstance(rid, str):
            upsert_ids.append(rid.lower())
        vn = _int_version(row.get(VERSION_COLUMN))
        if vn is not None and hw < vn <= MAX_VERSIONNUMBER:
            hw = vn
        changed = row.get(MODIFIED_COLUMN)
        if isinstance(changed, str) and (newest is None or _instant(changed) > _instant(newest)):
            newest = changed
    next_link = body.get(NEXT_LINK)
    delta_link = body.get(DELTA_LINK)
    return MappedPage(
        upserts=upserts,
        upsert_ids=upsert_ids,
        deleted_ids=deleted,
        high_water=hw,
        newest_modified_on=newest,
        next_link=next_link if isinstance(next_link, str) else None,
        delta_link=delta_link if isinstance(delta_link, str) else None,
        rows=len(entries),
    )


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_instant(text: str | None) -> datetime | None:
    return None if text is None else _instant(text)


def is_expired_token(status: int, body: Any) -> bool:
    """Dataverse's ExpiredVersionStamp: the delta token is too old (or metadata changed): full re-sync."""
    if not isinstance(body, dict):
        return False
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return status >= 400 and isinstance(code, str) and code.lower() == EXPIRED_VERSION_STAMP


# ---------------------------------------------------------------------------------- metadata
def _type_name(attr: Mapping[str, Any]) -> str | None:
    """AttributeType, with Virtual refined by AttributeTypeName (multi-select, file, image)."""
    kind = attr.get("AttributeType")
    type_name = attr.get("AttributeTypeName")
    tn = type_name.get("Value") if isinstance(type_name, dict) else None
    if kind == "Virtual" and tn in ("MultiSelectPicklistType", "FileType", "ImageType"):
        return {"MultiSelectPicklistType": "MultiSelectPicklist", "FileType": "File", "ImageType": "Image"}[tn]
    return kind if isinstance(kind, str) else None


def _labels(label: Any) -> list[dict[str, Any]]:
    """A Dataverse Label as contract labels: every localized label, plus the user's one flagged."""
    if not isinstance(label, dict):
        return []
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, bool]] = set()
    for item, user in [(lb, False) for lb in label.get("LocalizedLabels") or []] + [
        (label.get("UserLocalizedLabel"), True)
    ]:
        if not isinstance(item, dict) or not isinstance(item.get("Label"), str):
            continue
        code = item.get("LanguageCode")
        if not isinstance(code, int) or (code, user) in seen:
            continue
        seen.add((code, user))
        out.append({"languageCode": code, "label": item["Label"], "isUserLocalizedLabel": user})
    return out


def _option_set(raw: Any, attr_type: str, fallback_name: str) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    options: list[dict[str, Any]] = []
    # BooleanOptionSetMetadata has FalseOption / TrueOption instead of Options
    raws = [raw.get("FalseOption"), raw.get("TrueOption")] if attr_type == "Boolean" else raw.get("Options") or []
    for opt in raws:
        if not isinstance(opt, dict) or not isinstance(opt.get("Value"), int):
            continue
        o: dict[str, Any] = {"value": opt["Value"], "labels": _labels(opt.get("Label"))}
        if attr_type == "Status":
            o["state"] = opt.get("State")
        options.append(o)
    name = raw.get("Name")
    return {
        "name": name if isinstance(name, str) and name else fallback_name,
        "isGlobal": bool(raw.get("IsGlobal")),
        "options": options,
    }


def _target(name: str, primary_ids: Mapping[str, str]) -> str | dict[str, str]:
    key = primary_ids.get(name) or ("activityid" if name in ACTIVITY_ENTITIES else f"{name}id")
    return name if key == f"{name}id" else {"entity": name, "attribute": key}


def entity_metadata(
    definition: Mapping[str, Any],
    attributes: Iterable[Mapping[str, Any]],
    casts: Mapping[str, Iterable[Mapping[str, Any]]],
    *,
    organization_id: str,
    version: int,
    changed_on: datetime,
    primary_ids: Mapping[str, str] | None = None,
) -> tuple[EntityInfo, dict[str, Any]]:
    """An entity's definition (reference D) -> what to read, and its metadata notification.

    ``definition``: ``EntityDefinitions(LogicalName='x')`` with its properties; ``attributes``: the
    ``Attributes`` expansion (common properties); ``casts``: the attributes per type-specific cast
    (``String``, ``Memo``, ``Money``, ``Decimal``, ``Double``, ``Picklist``, ``MultiSelectPicklist``,
    ``State``, ``Status``, ``Boolean``, ``Lookup`` -> the ``value`` of that cast's request).
    ``version`` orders metadata notifications per entity (the time it was read, in ms).
    """
    logical = str(definition["LogicalName"])
    primary_id = str(definition.get("PrimaryIdAttribute") or f"{logical}id")
    by_cast: dict[str, dict[str, Mapping[str, Any]]] = {
        kind: {str(a.get("LogicalName")): a for a in items} for kind, items in casts.items()
    }
    meta_attrs: list[dict[str, Any]] = []
    columns: list[str] = []
    lookups: dict[str, tuple[str, ...]] = {}
    for a in attributes:
        name = a.get("LogicalName")
        kind = _type_name(a)
        if not isinstance(name, str) or kind is None:
            continue
        entry: dict[str, Any] = {"logicalName": name, "type": kind}
        metadata_id = a.get("MetadataId")
        if isinstance(metadata_id, str):
            entry["metadataId"] = metadata_id
        cast_kind = "Lookup" if kind in LOOKUP_TYPES else kind
        extra = by_cast.get(cast_kind, {}).get(name, {})
        if kind in ("String", "Memo") and isinstance(extra.get("MaxLength"), int) and extra["MaxLength"] > 0:
            entry["maxLength"] = extra["MaxLength"]
        if kind in ("Money", "Decimal", "Double") and isinstance(extra.get("Precision"), int):
            entry["precision"] = max(0, min(10, extra["Precision"]))
        if kind in ("Picklist", "MultiSelectPicklist", "State", "Status", "Boolean"):
            raw = extra.get("OptionSet") or extra.get("GlobalOptionSet")
            os = _option_set(raw, kind, f"{logical}_{name}")
            if os is not None:
                entry["optionSet"] = os
        if kind in LOOKUP_TYPES:
            targets = [t for t in extra.get("Targets") or [] if isinstance(t, str)]
            if targets:
                entry["targets"] = [_target(t, primary_ids or {}) for t in targets]
                lookups[name] = tuple(targets)
        meta_attrs.append(entry)
        # Companions (AttributeOf set: a lookup's name/type) are not columns of their own, except a
        # money column's base-currency value (<money>_base), which DES exported.
        readable = a.get("IsValidForRead") is not False and (not a.get("AttributeOf") or kind == "Money")
        if not readable or name in (VERSION_COLUMN, MODIFIED_COLUMN):
            continue
        if kind in LOOKUP_TYPES:
            columns.append(f"_{name}_value")
        elif kind == "MultiSelectPicklist" or kind not in NOT_READ_TYPES:
            columns.append(name)
    if primary_id not in columns:
        columns.insert(0, primary_id)
    names = {a["logicalName"] for a in meta_attrs}
    columns.append(VERSION_COLUMN)
    if MODIFIED_COLUMN in names or not names:
        columns.append(MODIFIED_COLUMN)
    info = EntityInfo(
        logical_name=logical,
        entity_set=str(definition.get("EntitySetName") or ""),
        primary_id=primary_id,
        columns=tuple(columns),
        lookup_targets=lookups,
        change_tracking=bool(definition.get("ChangeTrackingEnabled", False)),
        is_intersect=bool(definition.get("IsIntersect", False)),
    )
    # versionnumber is a system column of every table; its metadata gives no column (docs/metadata.md).
    published = [a for a in meta_attrs if a["logicalName"] not in ("id", "sinkcreatedon", "sinkmodifiedon")]
    notification = {
        "schemaVersion": 1,
        "organizationId": organization_id,
        "entity": logical,
        "changeType": "metadata",
        "version": version,
        "changedOn": iso(changed_on),
        "metadata": {
            "primaryIdAttribute": primary_id,
            "primaryNameAttribute": definition.get("PrimaryNameAttribute") or None,
            "isIntersect": info.is_intersect,
            "attributes": published,
        },
    }
    return info, notification
