"""Wire contract v1: the notification carried in a Service Bus message body.

The pydantic models here are the single source of truth. The JSON Schema shipped in
``notification.v1.schema.json`` is generated from them (``python -m shared schema``) and a unit
test keeps the two in step.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)
from pydantic.json_schema import SkipJsonSchema

SCHEMA_VERSION = 1
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,127}$"
GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
INT64_MAX = 2**63 - 1
NAME_RE = re.compile(NAME_PATTERN)

LogicalName = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(description="Dataverse logical name: lower case letter, then letters, digits or _."),
]
Guid = Annotated[
    str,
    StringConstraints(pattern=GUID_PATTERN),
    Field(description="A GUID in 8-4-4-4-12 hex form (any case; stored lower case)."),
]


def _json_integer(value: object) -> object:
    """Only JSON integers: no strings, no booleans, and no numbers written with a fraction or an
    exponent. ``9007199254740993.0`` reaches us as the double ...992, so accepting integral floats
    would round silently; JSON Schema's ``integer`` would take ``5.0``, this contract does not."""
    if type(value) is int:
        return value
    if isinstance(value, float | Decimal):
        raise ValueError("must be a JSON integer, written without a fraction or an exponent")
    if isinstance(value, bool | str):
        raise ValueError(f"must be a JSON integer, not {type(value).__name__}")
    return value


JsonInteger = BeforeValidator(_json_integer)

_NOT_EXACT = "not an exact decimal (decoded from a JSON number only)"
MAX_REASON = 1000  # characters of a reason kept with an unprocessable body or a failed record


def validation_reason(exc: ValidationError) -> str:
    """A pydantic validation error as one line: ``field.path: message; ...``, at most MAX_REASON."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        if err["msg"].endswith(_NOT_EXACT):
            continue  # the ExactDecimal member of an attribute's union: never what the sender meant
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    text = "; ".join(parts)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def rfc3339(text: str) -> datetime | None:
    """An RFC 3339 date-time string as a datetime (naive when it has no offset), or None.

    One grammar for every reader of the contract: msgspec's RFC 3339 parser, which the fast decode
    path (shared.contract.parse) runs in C. Seconds are required; a fraction beyond microseconds
    is rounded to the nearest microsecond."""
    try:
        return msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        return None


def _json_datetime(value: object) -> object:
    if isinstance(value, str):
        parsed = rfc3339(value)
        if parsed is None:
            raise ValueError("must be an RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.fraction] and Z or +HH:MM")
        return parsed
    if isinstance(value, int | float):
        raise ValueError(f"must be an RFC 3339 date-time string, not {type(value).__name__}")
    return value


JsonDateTime = BeforeValidator(_json_datetime)

UTC_MIN = "0001-01-01T00:00:00Z"
UTC_MAX = "9999-12-31T23:59:59.999999Z"


def _utc_representable(value: datetime) -> datetime:
    """Every store and destination keeps date-times in UTC (SQL Server ``datetime2``: years 1 to
    9999): ``9999-12-31T23:59:59-01:00`` is year 10000 there, so it is no date-time of this contract."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must lie between {UTC_MIN} and {UTC_MAX} once converted to UTC") from None
    return value


# An RFC 3339 string with a time zone, representable in UTC; a bare number (Unix time) is not one.
UtcDateTime = Annotated[AwareDatetime, JsonDateTime, AfterValidator(_utc_representable)]


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate, which no UTF-8 writer can write), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start}"
    return None


def _valid_unicode(value: str) -> str:
    problem = unicode_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


UnicodeStr = Annotated[StrictStr, AfterValidator(_valid_unicode)]


class ChangeType(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Lookup(BaseModel):
    """A lookup (EntityReference): becomes columns ``<attr>`` (GUID) and ``<attr>_entitytype``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Guid
    logicalName: LogicalName


def _decimal_json(value: object) -> object:
    # pydantic may run a union member's serializer on any value of the union: only a Decimal changes.
    # pydantic writes a Decimal as a JSON *string* (a number would become a text attribute) and has
    # no way to write it as a number, so its own JSON (model_dump_json, model_dump(mode="json")) says
    # a double; no copy of a notification is written that way: see notification_doc.
    return float(value) if type(value) is Decimal else value


# A JSON number a double cannot hold (more significant digits than a double round-trips, e.g. money
# of 20 digits): decoded as an exact Decimal (shared.contract.exactjson, exact_number), never from JSON
# directly (numbers are ints or floats, left to right). Copies (retry blobs, parked failures, reject
# files) keep it exact: notification_doc, written by shared.contract.exactjson.dumps.
def _exact_decimal(value: object) -> Decimal:
    if type(value) is not Decimal:
        raise ValueError(_NOT_EXACT)
    if not value.is_finite():
        raise ValueError("must be a finite number")
    return value


ExactDecimal = Annotated[
    Decimal, PlainValidator(_exact_decimal), PlainSerializer(_decimal_json, return_type=Any, when_used="json")
]

# Strict types never overlap, so trying them left to right is exact, and much faster than "smart" mode.
# (ExactDecimal before StrictFloat, which would take a Decimal as a float; it refuses all JSON input.)
AttributeValue = Annotated[
    StrictBool | StrictInt | SkipJsonSchema[ExactDecimal] | StrictFloat | UnicodeStr | Lookup | None,
    Field(union_mode="left_to_right"),
]


BLOB_NAME_PATTERN = r"^[0-9a-z][0-9a-z_.-]{0,127}(/[0-9a-z][0-9a-z_.-]{0,127}){0,7}$"


class PayloadRef(BaseModel):
    """Claim check: the full notification is in an encrypted blob of the ``data`` container.

    A publisher sends this instead of ``attributes`` when a notification does not fit in a Service
    Bus message. The blob holds the complete notification (same organizationId, entity, recordId,
    changeType and version, with its attributes); the processor downloads and decrypts it, applies
    it, and deletes the blob after the destination commit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    blob: Annotated[
        str,
        StringConstraints(pattern=BLOB_NAME_PATTERN, max_length=1024),
        Field(description="Blob name inside the data container, e.g. 2026/11/21/<uuid>.json."),
    ]
    size: Annotated[int, Field(ge=0, description="Length of the (decrypted) payload in bytes."), JsonInteger]
    sha256: Annotated[
        str,
        StringConstraints(pattern=r"^[0-9a-f]{64}$"),
        Field(description="SHA-256 of the (decrypted) payload, lower-case hex."),
    ]


class Notification(BaseModel):
    """One record change. ``attributes`` is the full record state for create/update."""

    # Frozen: a notification is a message, never edited in place (model_copy(update=...) makes a new
    # one); the fast decode path shares one fields-set object between the notifications it builds.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        title="DES notification v1",
        json_schema_extra={
            "$comment": (
                "Unknown top-level fields and any schemaVersion other than 1 are unprocessable. "
                "Beyond what JSON Schema states: integers are written as JSON integers (5.0 is unprocessable), "
                "strings are valid Unicode (no lone surrogates, no invalid UTF-8), changedOn lies between "
                f"{UTC_MIN} and {UTC_MAX} once converted to UTC, and a leading byte-order mark is ignored."
            ),
        },
    )

    schemaVersion: Annotated[Literal[1], JsonInteger]
    organizationId: Guid
    entity: LogicalName
    recordId: Guid
    changeType: ChangeType
    version: Annotated[
        int,
        Field(ge=0, le=INT64_MAX, description="Source versionnumber; strictly increasing per record."),
        JsonInteger,
    ]
    changedOn: UtcDateTime
    attributes: dict[LogicalName, AttributeValue] | None = Field(
        default=None,
        description="Full record state for create/update (absent attributes become NULL); absent for delete.",
    )
    # Optional, still schemaVersion 1: an older reader rejects it as an unknown field (unprocessable,
    # never dropped), so no message is silently misread.
    payloadRef: PayloadRef | None = Field(
        default=None,
        description="Instead of attributes (create/update only): the full notification is in this encrypted blob.",
    )

    @property
    def key(self) -> tuple[str, str]:
        return (self.entity, self.recordId.lower())


# The message body: one notification or a batch envelope (a JSON array of them).
MessageBody = Notification | list[Notification]


def notification_doc(n: Notification, *, exclude_unset: bool = True) -> dict[str, Any]:
    """The notification as a JSON document (fields the sender set; null attributes kept), its exact
    decimals as the :class:`Decimal` they are: write it with :func:`shared.contract.exactjson.dumps`
    (every parked copy does), read it back with :func:`shared.contract.exactjson.loads`."""
    doc = n.model_dump(mode="json", exclude_unset=exclude_unset)
    attrs = n.attributes
    if attrs and Decimal in set(map(type, attrs.values())):
        out = doc["attributes"]
        for name, value in attrs.items():
            if type(value) is Decimal:
                out[name] = value
    return doc


def changed_on_iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
