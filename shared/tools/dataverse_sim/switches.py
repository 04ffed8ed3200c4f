"""Switches: every point the reference (shared/reference/dataverse.md) marks UNVERIFIED, plus the
points it does not document at all, is a field here, so a test can run the source against each
plausible behaviour. Defaults are the reference's best guess; docs/dataverse-simulator.md lists them.

:class:`Switches` covers the Web API (pull); :class:`PushOptions` the Service Bus messages (push).
Both are mutable dataclasses: change them between requests (``sim.switches.x = ...`` under the
simulator's lock, or ``PATCH /_sim/switches``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

DeltaOrder = Literal["upserts_then_deletes", "by_version"]
Recreated = Literal["row_and_tombstone", "row_only"]
EmptyDelta = Literal["empty_list", "empty_object"]
DateOnlyFormat = Literal["date", "datetime"]
MultiSelectFormat = Literal["csv", "array"]
Untracked = Literal["no_delta_link", "error"]
UnauthorizedBody = Literal["empty", "error"]


@dataclass
class Switches:
    # A2: HTTP status (and error code) when $filter/$orderby/$expand/$top come with track-changes.
    # The message is documented; the status is UNVERIFIED ("presumably 400"), the code undocumented.
    unsupported_query_status: int = 400
    unsupported_query_code: str = "0x0"
    # A3: multi-page initial loads (nextLink pages, deltaLink on the last page) are partly UNVERIFIED.
    # False: one page holding every row, whatever odata.maxpagesize says.
    page_tracked_loads: bool = True
    # A3: the skiptoken cookie's istracking attribute on tracked pages (UNVERIFIED: "True").
    skiptoken_istracking: bool = True
    # A3: historic bug (issue #439, v8.2): no deltaLink on the last page when formatted values were
    # requested. Off by default (fixed since); on to test a client's defence.
    formatted_values_drop_delta_link: bool = False
    # A4: deletes' reason; only "deleted" was ever seen ("changed" is allowed by OData, UNVERIFIED).
    deleted_reason: str = "deleted"
    # A4: a delta with nothing new: `"value": []` plus a new deltaLink (community expectation) or the
    # doc's "empty JSON response" (`{}`, no new deltaLink). UNVERIFIED.
    empty_delta: EmptyDelta = "empty_list"
    # A4: a delta with more changes than the page size: nextLink pages then deltaLink (UNVERIFIED).
    # False: one page with every change.
    page_deltas: bool = True
    # A4: order within a delta: documented for the SDK (new/updated by version, then deletes);
    # "by_version" interleaves upserts and deletes by the version of the change.
    delta_order: DeltaOrder = "upserts_then_deletes"
    # A4 (not documented): a record deleted and re-created with the same id inside one delta window
    # comes as the row and a tombstone ("row_and_tombstone"), or as the row only.
    recreated_in_delta: Recreated = "row_and_tombstone"
    # A5: DateOnly columns as Edm.Date "2024-05-01" (UNVERIFIED) or "2024-05-01T00:00:00Z".
    date_only_format: DateOnlyFormat = "date"
    # A5: multi-select option sets as a comma-separated string "1,3" (UNVERIFIED) or a JSON array.
    multiselect_format: MultiSelectFormat = "csv"
    # A5: @odata.etag W/"n" with n == versionnumber (UNVERIFIED). False: an unrelated counter.
    etag_is_version: bool = True
    # A6: HTTP status of ExpiredVersionStamp 0x80044352 (UNVERIFIED, "likely 400").
    expired_token_status: int = 400
    # A6: Prefer: odata.track-changes on a table without change tracking: the response simply has no
    # deltaLink ("no_delta_link") or an error ("error"). UNVERIFIED.
    untracked: Untracked = "no_delta_link"
    untracked_error_status: int = 400
    # A8: whether the N:N intersect table has change tracking (ChangeTrackingEnabled and working
    # track-changes). UNVERIFIED.
    intersect_change_tracking: bool = True
    # D: Status options carry "State", State options "DefaultStatus" in Web API JSON (UNVERIFIED).
    option_state_fields: bool = True
    # Not in the reference: a refused bearer token's response. WWW-Authenticate is always sent; the
    # body is empty (what Dataverse is commonly seen to do) or a JSON error envelope.
    unauthorized_body: UnauthorizedBody = "empty"
    # Not in the reference: the error for a caller without organization-level read (A1 says
    # "a privilege-check error"); status and code are the simulator's choice.
    privilege_error_status: int = 403
    privilege_error_code: str = "0x80040220"
    # Days to expire change tracking deleted records (Organization.expirechangetrackingindays, A6;
    # documented default now 7). Delta tokens older than this (by the simulator's clock) expire.
    expire_change_tracking_in_days: int = 7

    def update(self, values: dict[str, Any]) -> None:
        names = {f.name: f for f in fields(self)}
        for key in values:
            if key not in names:
                raise KeyError(f"unknown switch {key!r}")
        for key, value in values.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


PostImage = Literal["all", "primary_name", "none"]
TruncationStyle = Literal["remove", "empty"]
FlagPlace = Literal["properties", "body", "both"]
LineFormat = Literal["body", "message"]
RelatedShape = Literal["array", "typed"]
OrgClaim = Literal["url", "name"]


@dataclass
class PushOptions:
    """How the simulator's own changes become Dataverse Service Bus messages (reference section C)."""

    # Which tables and messages have a registered step (None: every change-tracked table).
    entities: frozenset[str] | None = None
    messages: frozenset[str] = frozenset({"Create", "Update", "Delete", "Associate", "Disassociate"})
    # C6: post-image registered with every column ("all"), only the async step's automatic
    # AsynchronousStepPrimaryName image ("primary_name"), or none.
    post_image: PostImage = "all"
    # C6: an Update's Target holds only the columns of the request (+ modifiedon, modifiedby, ...).
    # False: the whole row (not what Dataverse does; for contrast).
    partial_updates: bool = True
    # C6: a pre-image on Delete (only a pre-image is possible there). UNVERIFIED shape.
    delete_pre_image: bool = False
    # C2: steps registered synchronous (Mode 0) post inside the transaction; a later rollback does
    # not recall the message (a phantom). False: asynchronous steps (Mode 1), the supported setup.
    synchronous: bool = False
    # C6: Associate/Disassociate RelatedEntities as a plain JSON array of EntityReferences or as an
    # object with __type EntityReferenceCollection. UNVERIFIED.
    associate_related_shape: RelatedShape = "array"
    # C2: at-least-once delivery is UNVERIFIED: the fraction of messages delivered twice.
    duplicate_rate: float = 0.0
    # C2: no ordering guarantee: messages are shuffled within windows of this many (0: in order).
    reorder_window: int = 0
    # C3: payloads over max_bytes lose ParentContext, InputParameters and images, and gain the
    # MessageMaxSizeExceeded flag; truncate_rate truncates that fraction of the rest too.
    max_bytes: int = 192 * 1024
    truncate_rate: float = 0.0
    truncation_style: TruncationStyle = "remove"  # dropped members removed, or kept as []: UNVERIFIED
    truncation_flag_key: str = "MessageMaxSizeExceeded"  # exact casing UNVERIFIED
    truncation_flag_in: FlagPlace = "properties"
    # C4: the Organization claim's value: the organization URL or its unique name (UNVERIFIED).
    organization_claim: OrgClaim = "url"
    # C5: DataContractJsonSerializer writes "/" as "\/" (so dates read "\/Date(...)\/").
    escape_slashes: bool = True
    # C5: a UTF-8 BOM before the body (UNVERIFIED for Dataverse).
    bom: bool = False
    # Lines written to a JSONL sink: "body" (the message body only, what `des replay` reads) or
    # "message" ({"body": <body object>, "applicationProperties": {...}, "contentType", "messageId"}).
    line_format: LineFormat = "body"
    seed: int = 0

    def update(self, values: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        for key in values:
            if key not in names:
                raise KeyError(f"unknown push option {key!r}")
        for key, value in values.items():
            if key in {"entities", "messages"} and value is not None:
                value = frozenset(value)
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = sorted(value) if isinstance(value, frozenset) else value
        return out
