"""Profiles: create, validate, read, update, delete, activate, deactivate, live test."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from shared.api.deps import ERRORS, IF_MATCH_PATTERN, Guid, ProfileId, Svc, revision
from shared.api.schemas import DeletedOut, ValidationOut
from shared.profiles.model import ProfileCreate, ProfileOut, ProfileState, ProfileUpdate

router = APIRouter()


@router.get("/profiles", response_model=list[ProfileOut], tags=["profiles"], responses=ERRORS)
def list_profiles(
    s: Svc,
    organizationId: Guid = None,
    state: Annotated[ProfileState | None, Query()] = None,
) -> Any:
    """All profiles, by name; optionally of one organization or in one state."""
    return [ProfileOut.of(p) for p in s.profiles.list_profiles(organization_id=organizationId, state=state)]

@router.post("/profiles", response_model=ProfileOut, status_code=201, tags=["profiles"], responses=ERRORS)
def create_profile(
    s: Svc,
    body: ProfileCreate,
    response: Response,
    check: Annotated[bool, Query(description="Check the destination before 'create and activate'.")] = True,
) -> Any:
    """Create a profile (draft), or create and activate it (``state: active``)."""
    p = s.profiles.create(body, check=check)
    response.headers["Location"] = f"/profiles/{p.id}"
    response.headers["ETag"] = f'"{p.revision}"'
    return ProfileOut.of(p)

@router.post("/profiles/validate", response_model=ValidationOut, tags=["profiles"], responses=ERRORS)
def validate_profile(s: Svc, body: ProfileCreate) -> Any:
    """Check a profile before creating it: the fields, the name, and the destination live
    (secret, connect, schema, create and drop a table); each failure named."""
    return ValidationOut.of(s.profiles.validate(body))

@router.get("/profiles/{profile_id}", response_model=ProfileOut, tags=["profiles"], responses=ERRORS)
def get_profile(s: Svc, profile_id: ProfileId, response: Response) -> Any:
    p = s.profiles.get(profile_id)
    response.headers["ETag"] = f'"{p.revision}"'
    return ProfileOut.of(p)

@router.put("/profiles/{profile_id}", response_model=ProfileOut, tags=["profiles"], responses=ERRORS)
def update_profile(
    s: Svc,
    profile_id: ProfileId,
    body: ProfileUpdate,
    response: Response,
    if_match: Annotated[str, Header(alias="If-Match", max_length=40, pattern=IF_MATCH_PATTERN)] = "",
) -> Any:
    """Replace the profile's fields (entities and relationships may be added or removed; nothing
    is dropped in the destination). Send ``If-Match: "<revision>"`` to update safely."""
    p = s.profiles.update(profile_id, body, if_match=revision(if_match))
    response.headers["ETag"] = f'"{p.revision}"'
    return ProfileOut.of(p)

@router.delete("/profiles/{profile_id}", response_model=DeletedOut, tags=["profiles"], responses=ERRORS)
def delete_profile(s: Svc, profile_id: ProfileId) -> Any:
    """Delete the profile, its metrics, failure logs, parked and retry blobs; never the destination's tables."""
    removed = s.profiles.delete(profile_id)
    return DeletedOut(id=profile_id.lower(), blobsDeleted=removed)

@router.post("/profiles/{profile_id}/activate", response_model=ProfileOut, tags=["profiles"], responses=ERRORS)
def activate_profile(
    s: Svc,
    profile_id: ProfileId,
    check: Annotated[bool, Query(description="Check the destination first.")] = True,
) -> Any:
    """Start applying notifications to the profile's destination."""
    return ProfileOut.of(s.profiles.activate(profile_id, check=check))

@router.post("/profiles/{profile_id}/deactivate", response_model=ProfileOut, tags=["profiles"], responses=ERRORS)
def deactivate_profile(s: Svc, profile_id: ProfileId) -> Any:
    """Stop applying: notifications are completed and counted as skipped for this profile."""
    return ProfileOut.of(s.profiles.deactivate(profile_id))

@router.get("/profiles/{profile_id}/test", response_model=ValidationOut, tags=["profiles"], responses=ERRORS)
def test_profile(s: Svc, profile_id: ProfileId) -> Any:
    """Live check of the stored profile's destination; each failure named."""
    return ValidationOut.of(s.profiles.test(profile_id))
