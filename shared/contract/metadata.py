"""Wire contract v1: the entity metadata notification (``"changeType": "metadata"``).

A publisher sends one when an entity's definition changes (and once at the start): the entity's
attributes with their Dataverse types, text lengths, decimal precisions, option sets (local and
global), state and status options and lookup targets. The engine gives the entity's columns their
declared types and keeps the DES metadata tables in step (shared/engine/metadata.py, docs/metadata.md).

It travels like a record notification: a message body on its own or an element of a batch
envelope, next to record notifications. These models are self-contained (they share only the name
and GUID patterns with :mod:`shared.contract.models`); the parser tries them only for a body or
envelope element that says ``"changeType": "metadata"``, so record notifications keep their fast path.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.contract.models import (
    GUID_PATTERN,
    INT64_MAX,
    NAME_PATTERN,
    JsonInteger,
    Notification,
    UtcDateTime,
    validation_reason,
)

METADATA_CHANGE_TYPE = "metadata"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_ATTRIBUTES = 5000  # Dataverse allows far fewer columns per table (SQL Server: 1,024)
MAX_OPTIONS = 10_000
MAX_LABEL = 4000  # characters of one label
MAX_PRECISION = 10  # Dataverse: Decimal 0-10, Money 0-4, Double 0-5
OPTION_SET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# Attribute names the destination layout owns (the same as shared.contract.parse.RESERVED_ATTRIBUTES;
# a unit test keeps them equal). versionnumber is a system column: its metadata gives no column.
RESERVED_NAMES = frozenset({"id", "sinkcreatedon", "sinkmodifiedon"})
LOOKUP_TYPE_SUFFIX = "_entitytype"


LogicalName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN)]
Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX), JsonInteger]


class AttributeType(str, Enum):
    """Dataverse attribute types (AttributeTypeCode names; three Virtual kinds by their own name)."""

    BIGINT = "BigInt"
    BOOLEAN = "Boolean"
    CALENDAR_RULES = "CalendarRules"
    CUSTOMER = "Customer"
    DATETIME = "DateTime"
    DECIMAL = "Decimal"
    DOUBLE = "Double"
    ENTITY_NAME = "EntityName"
    INTEGER = "Integer"
    LOOKUP = "Lookup"
    MANAGED_PROPERTY = "ManagedProperty"
    MEMO = "Memo"
    MONEY = "Money"
    OWNER = "Owner"
    PARTY_LIST = "PartyList"
    PICKLIST = "Picklist"
    STATE = "State"
    STATUS = "Status"
    STRING = "String"
    UNIQUEIDENTIFIER = "Uniqueidentifier"
    VIRTUAL = "Virtual"
    MULTI_SELECT_PICKLIST = "MultiSelectPicklist"
    FILE = "File"
    IMAGE = "Image"

    @property
    def code(self) -> int:
        """The AttributeTypeCode value (DES's AttributeMetadata.AttributeTypeCode)."""
        return TYPE_CODES[self]


# Microsoft.Xrm.Sdk.Metadata.AttributeTypeCode; multi-select choices, files and images are Virtual (17).
TYPE_CODES: dict[AttributeType, int] = {
    AttributeType.BOOLEAN: 0,
    AttributeType.CUSTOMER: 1,
    AttributeType.DATETIME: 2,
    AttributeType.DECIMAL: 3,
    AttributeType.DOUBLE: 4,
    AttributeType.INTEGER: 5,
    AttributeType.LOOKUP: 6,
    AttributeType.MEMO: 7,
    AttributeType.MONEY: 8,
    AttributeType.OWNER: 9,
    AttributeType.PARTY_LIST: 10,
    AttributeType.PICKLIST: 11,
    AttributeType.STATE: 12,
    AttributeType.STATUS: 13,
    AttributeType.STRING: 14,
    AttributeType.UNIQUEIDENTIFIER: 15,
    AttributeType.CALENDAR_RULES: 16,
    AttributeType.VIRTUAL: 17,
    AttributeType.BIGINT: 18,
    AttributeType.MANAGED_PROPERTY: 19,
    AttributeType.ENTITY_NAME: 20,
    AttributeType.MULTI_SELECT_PICKLIST: 17,
    AttributeType.FILE: 17,
    AttributeType.IMAGE: 17,
}
OPTION_SET_TYPES = frozenset(
    {
        AttributeType.PICKLIST,
        AttributeType.MULTI_SELECT_PICKLIST,
        AttributeType.STATE,
        AttributeType.STATUS,
        AttributeType.BOOLEAN,
    }
)
LOOKUP_TYPES = frozenset({AttributeType.LOOKUP, AttributeType.CUSTOMER, AttributeType.OWNER})
TEXT_TYPES = frozenset({AttributeType.STRING, AttributeType.MEMO})
PRECISION_TYPES = frozenset({AttributeType.DECIMAL, AttributeType.MONEY, AttributeType.DOUBLE})

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Label(BaseModel):
    """One localized label (Dataverse LocalizedLabel; ``isUserLocalizedLabel`` marks the user's one)."""

    model_config = _STRICT

    languageCode: Annotated[int, Field(ge=0, le=INT32_MAX), JsonInteger]
    label: Annotated[str, StringConstraints(max_length=MAX_LABEL)]
    isUserLocalizedLabel: bool = False

    @field_validator("label")
    @classmethod
    def _storable(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("a label cannot contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a label must be valid Unicode (it has an unpaired surrogate)") from None
        return value


class Option(BaseModel):
    """One option of an option set; a status option also names its state."""

    model_config = _STRICT

    value: Int32
    labels: Annotated[list[Label], Field(max_length=1000)] = Field(default_factory=list)
    state: Int32 | None = Field(default=None, description="Status options only: the state this status belongs to.")

    @model_validator(mode="after")
    def _unique_labels(self) -> Option:
        seen = {(lb.languageCode, lb.isUserLocalizedLabel) for lb in self.labels}
        if len(seen) != len(self.labels):
            raise ValueError(f"option {self.value}: two labels for one language (and isUserLocalizedLabel)")
        return self


class OptionSet(BaseModel):
    model_config = _STRICT

    name: Annotated[str, StringConstraints(pattern=OPTION_SET_NAME_PATTERN)]
    isGlobal: bool = False
    options: Annotated[list[Option], Field(max_length=MAX_OPTIONS)]

    @model_validator(mode="after")
    def _unique_values(self) -> OptionSet:
        if len({o.value for o in self.options}) != len(self.options):
            raise ValueError(f"option set {self.name!r}: option values must be unique")
        return self


class Target(BaseModel):
    """A lookup target with its primary key attribute, when it is not ``<entity>id``."""

    model_config = _STRICT

    entity: LogicalName
    attribute: LogicalName


class Attribute(BaseModel):
    model_config = _STRICT

    logicalName: LogicalName
    type: AttributeType
    maxLength: Annotated[int, Field(ge=1, le=INT32_MAX), JsonInteger] | None = Field(
        default=None, description="String and Memo: the most characters a value has."
    )
    precision: Annotated[int, Field(ge=0, le=MAX_PRECISION), JsonInteger] | None = Field(
        default=None, description="Decimal, Money, Double: decimal places."
    )
    optionSet: OptionSet | None = Field(
        default=None, description="Picklist, MultiSelectPicklist, State, Status, Boolean: the options."
    )
    targets: Annotated[list[LogicalName | Target], Field(min_length=1, max_length=1000)] | None = Field(
        default=None,
        description="Lookup, Customer, Owner: entities referenced; a name means its key is <name>id.",
    )
    metadataId: Guid | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> Attribute:
        t, name = self.type, self.logicalName
        if self.optionSet is not None:
            if t not in OPTION_SET_TYPES:
                raise ValueError(f"attribute {name!r}: a {t.value} attribute has no optionSet")
            status = t is AttributeType.STATUS
            if any((o.state is None) == status for o in self.optionSet.options):
                raise ValueError(
                    f"attribute {name!r}: "
                    + ("every status option needs its state" if status else "only status options carry a state")
                )
        if self.targets is not None and t not in LOOKUP_TYPES:
            raise ValueError(f"attribute {name!r}: a {t.value} attribute has no targets")
        if self.maxLength is not None and t not in TEXT_TYPES:
            raise ValueError(f"attribute {name!r}: maxLength applies to String and Memo, not {t.value}")
        if self.precision is not None and t not in PRECISION_TYPES:
            raise ValueError(f"attribute {name!r}: precision applies to Decimal, Money and Double, not {t.value}")
        return self

    def target_keys(self) -> list[tuple[str, str]]:
        """(referenced entity, referenced attribute) per target."""
        return [
            (t, f"{t}id") if isinstance(t, str) else (t.entity, t.attribute) for t in self.targets or ()
        ]


class EntityMetadata(BaseModel):
    model_config = _STRICT

    primaryIdAttribute: LogicalName
    primaryNameAttribute: LogicalName | None = None
    isIntersect: bool = Field(
        default=False, description="An N:N relationship's intersect entity: a table like any other."
    )
    attributes: Annotated[list[Attribute], Field(max_length=MAX_ATTRIBUTES)]

    @model_validator(mode="after")
    def _consistent(self) -> EntityMetadata:
        names = [a.logicalName for a in self.attributes]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"attribute names must be unique: {dupes}")
        reserved = sorted(RESERVED_NAMES.intersection(names))
        if reserved:
            raise ValueError(f"attribute name(s) {reserved} are reserved by the destination layout")
        taken = set(names)
        for a in self.attributes:
            if a.type in LOOKUP_TYPES and a.logicalName + LOOKUP_TYPE_SUFFIX in taken:
                raise ValueError(
                    f"attribute {a.logicalName + LOOKUP_TYPE_SUFFIX!r} collides with lookup {a.logicalName!r}"
                )
        shared: dict[str, OptionSet] = {}
        for a in self.attributes:
            os = a.optionSet
            if os is None or not os.isGlobal:
                continue
            seen = shared.setdefault(os.name, os)
            if seen != os:
                raise ValueError(f"global option set {os.name!r} is given twice with different options")
        return self


class MetadataNotification(BaseModel):
    """An entity's metadata at one metadata version. The newest version per entity wins."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        title="DES entity metadata notification v1",
        json_schema_extra={
            "$comment": (
                "Also checked in code (unprocessable otherwise): unique attribute names; no reserved names "
                "(id, sinkcreatedon, sinkmodifiedon); no attribute named <lookup>_entitytype; optionSet only on "
                "Picklist, MultiSelectPicklist, State, Status and Boolean, every Status option with a state and "
                "no other option with one; targets only on Lookup, Customer and Owner; maxLength only on String "
                "and Memo; precision only on Decimal, Money and Double; unique option values, one label per "
                "(languageCode, isUserLocalizedLabel); a global option set given twice must be identical; labels "
                "without NUL characters or unpaired surrogates."
            ),
        },
    )

    schemaVersion: Annotated[Literal[1], JsonInteger]
    organizationId: Guid
    entity: LogicalName
    changeType: Literal["metadata"]
    version: Annotated[
        int,
        Field(ge=0, le=INT64_MAX, description="Metadata version; the newest per entity wins, older ones are stale."),
        JsonInteger,
    ]
    changedOn: UtcDateTime
    metadata: EntityMetadata


# Documentation only (the JSON Schema): a body is one notification of either kind or an envelope
# of them. The parser validates record notifications first, as before (shared/contract/parse.py).
WireNotification = Notification | MetadataNotification
WireBody = WireNotification | list[WireNotification]

_ONE: TypeAdapter[MetadataNotification] = TypeAdapter(MetadataNotification)


_reason = validation_reason


def validate_metadata(element: object) -> MetadataNotification | str:
    """A metadata notification from a decoded JSON object, or the reason it fails the contract."""
    try:
        return _ONE.validate_python(element)
    except ValidationError as exc:
        return _reason(exc)
