"""``POST /sources/tables``: the tables of a Dataverse environment a profile could export, read from its
metadata (``EntityDefinitions``) through the source's client, with the same ``source`` (environment URL
and authentication) a profile takes. The console's create / edit form offers them as checkboxes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shared.api.deps import ERRORS as DEPS_ERRORS
from shared.api.deps import Svc
from shared.profiles.model import DataverseSource
from shared.profiles.ports import SourceTable

router = APIRouter(tags=["profiles"])

ERRORS: dict[int | str, dict[str, Any]] = {
    k: v for k, v in DEPS_ERRORS.items() if k in (400, 401, 403, 409, 413, 422, 503)
}
NO_TRACKING = (
    "change tracking is off: turn on 'Track changes' in the table's properties (Advanced options) to export it"
)


class SourceTableOut(BaseModel):
    logicalName: str = Field(description="The name a profile's entities take.")
    schemaName: str
    entitySetName: str = Field(description="The Web API entity set (the collection's URL segment).")
    displayName: str | None = Field(description="The user's localized display name, if any.")
    changeTrackingEnabled: bool
    isIntersect: bool = Field(description="An N:N intersect table: a profile takes it as a relationship.")
    exportable: bool = Field(description="A profile can export it (change tracking on, or an intersect table).")
    reason: str | None = Field(description="Why it cannot be exported (null: it can).")

    @classmethod
    def of(cls, t: SourceTable) -> SourceTableOut:
        ok = t.change_tracking or t.is_intersect
        return cls(
            logicalName=t.logical_name, schemaName=t.schema_name, entitySetName=t.entity_set_name,
            displayName=t.display_name, changeTrackingEnabled=t.change_tracking, isIntersect=t.is_intersect,
            exportable=ok, reason=None if ok else NO_TRACKING,
        )  # fmt: skip


class SourceTablesOut(BaseModel):
    environmentUrl: str
    tables: list[SourceTableOut] = Field(description="Every table of the environment, by logical name.")


@router.post("/sources/tables", response_model=SourceTablesOut, responses=ERRORS)
def source_tables(s: Svc, body: DataverseSource) -> Any:
    """The tables of a Dataverse environment (a profile's ``source``): logical and entity set name,
    display name, whether change tracking is on. 409 with the reason when the token is refused or
    missing or the metadata cannot be read (the request is valid; the source says no); 422 for an
    invalid body; 503 when the environment is unreachable or this app runs no source."""
    tables = s.profiles.source_tables(body)
    return SourceTablesOut(environmentUrl=body.environmentUrl, tables=[SourceTableOut.of(t) for t in tables])
