"""Wire contract v1: the notification carried in a Service Bus message body.

The pydantic models here are the single source of truth. The JSON Schema shipped in
``notification.v1.schema.json`` is generated from them (``python -m shared schema``) and a unit
test keeps the two in step.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
)

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


class ChangeType(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Lookup(BaseModel):
    """A lookup (EntityReference): becomes columns ``<attr>`` (GUID) and ``<attr>_entitytype``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Guid
    logicalName: LogicalName


AttributeValue = Union[None, StrictBool, StrictInt, StrictFloat, StrictStr, Lookup]


class Notification(BaseModel):
    """One record change. ``attributes`` is the full record state for create/update."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        title="DES notification v1",
        json_schema_extra={
            "$comment": "Unknown top-level fields and any schemaVersion other than 1 are unprocessable.",
        },
    )

    schemaVersion: Literal[1]
    organizationId: Guid
    entity: LogicalName
    recordId: Guid
    changeType: ChangeType
    version: Annotated[
        int,
        Field(ge=0, le=INT64_MAX, description="Source versionnumber; strictly increasing per record."),
    ]
    changedOn: AwareDatetime
    attributes: dict[LogicalName, AttributeValue] | None = Field(
        default=None,
        description="Full record state for create/update (absent attributes become NULL); absent for delete.",
    )

    @property
    def key(self) -> tuple[str, str]:
        return (self.entity, self.recordId.lower())


# The message body: one notification or a batch envelope (a JSON array of them).
MessageBody = Union[Notification, list[Notification]]


def changed_on_iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
