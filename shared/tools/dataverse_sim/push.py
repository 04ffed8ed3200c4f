"""Dataverse Service Bus messages (reference section C) for the simulator's own changes.

Each write (Create, Update, Delete, Associate, Disassociate) becomes what the built-in
ServiceBusPlugin posts for an asynchronous PostOperation step with message format Json: a
serialized ``RemoteExecutionContext`` (``{key, value}`` arrays, ``__type`` hints first,
``/Date(ms)/`` dates, written ``\\/Date(ms)\\/`` like DataContractJsonSerializer) and the brokered
message's application properties (``http://schemas.microsoft.com/xrm/2011/Claims/...``).
:class:`~shared.tools.dataverse_sim.switches.PushOptions` switches post-images, partial Update
targets, truncation (``MessageMaxSizeExceeded``), duplicates and reordering.

Messages are kept in :attr:`PushEmitter.messages` and, with a path, appended to a JSONL file: one
line per message, either the body alone (``line_format="body"``: what ``des replay`` reads, one
body per line) or ``{"applicationProperties": {...}, "contentType": ..., "messageId": ...,
"body": <the body>}`` (``line_format="message"``), which also carries the truncation flag.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from shared.tools.dataverse_sim.schema import TRACKED_DEFAULT, AttributeDef, EntityDef
from shared.tools.dataverse_sim.state import Change, DataverseState, Values
from shared.tools.dataverse_sim.switches import PushOptions
from shared.tools.dataverse_sim.values import Ref, dumps

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
CLAIMS = "http://schemas.microsoft.com/xrm/2011/Claims/"
CONTENT_TYPE = "application/json"
BOM = b"\xef\xbb\xbf"
STAGE_POST_OPERATION = 40
STAGE_MAIN_OPERATION = 30
MODE_ASYNCHRONOUS = 1
MODE_SYNCHRONOUS = 0


def _typed(kind: str, **members: Any) -> dict[str, Any]:
    return {"__type": f"{kind}:{CONTRACTS}", **members}


def _kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def date_json(moment: datetime | date) -> str:
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)})/"


def entity_reference(ref: Ref, name: str | None = None, *, typed: bool = True) -> dict[str, Any]:
    members: dict[str, Any] = {"Id": ref.id, "KeyAttributes": [], "LogicalName": ref.entity, "Name": name,
                               "RowVersion": None}
    return _typed("EntityReference", **members) if typed else members


def attribute_value(attr: AttributeDef | None, value: Any) -> Any:
    """One column value in the RemoteExecutionContext encoding (reference C5 table)."""
    if value is None:
        return None
    if isinstance(value, Ref):
        return entity_reference(value)
    if attr is not None and attr.is_multiselect:
        return [_typed("OptionSetValue", Value=v) for v in value]
    if attr is not None and attr.type in {"Picklist", "State", "Status"}:
        return _typed("OptionSetValue", Value=value)
    if attr is not None and attr.type == "Money":
        return _typed("Money", Value=value)
    if isinstance(value, (datetime, date)):
        return date_json(value)
    return value


@dataclass(frozen=True)
class PushMessage:
    """One brokered message as Dataverse would post it."""

    body: bytes
    application_properties: dict[str, Any]
    message_id: str
    message_name: str
    entity: str
    record_id: str
    truncated: bool = False
    duplicate: bool = False
    content_type: str = CONTENT_TYPE

    def json(self) -> Any:
        """The body decoded as a consumer would (BOM stripped; money stays exact)."""
        from shared.tools.dataverse_sim.values import loads

        return loads(self.body)

    def line(self, line_format: str = "body") -> bytes:
        if line_format == "body":
            return self.body
        body_text = self.body.removeprefix(BOM).decode("utf-8")
        head = dumps({"applicationProperties": self.application_properties, "contentType": self.content_type,
                      "messageId": self.message_id})
        return f'{head[:-1]},"body":{body_text}}}'.encode()


class PushEmitter:
    """Listens to the state's writes and turns them into :class:`PushMessage` (see module docstring)."""

    def __init__(self, state: DataverseState, options: PushOptions, *, path: Path | None = None) -> None:
        self.state = state
        self.options = options
        self.rng = random.Random(options.seed)
        self.messages: list[PushMessage] = []
        self._pending: list[PushMessage] = []
        self._fh: IO[bytes] | None = path.open("ab") if path is not None else None
        self.path = path
        state.listeners.append(self.on_change)

    # ------------------------------------------------------------------------------- output
    def _release(self, batch: list[PushMessage]) -> None:
        self.messages.extend(batch)
        if self._fh is not None:
            for message in batch:
                self._fh.write(message.line(self.options.line_format) + b"\n")
            self._fh.flush()

    def flush(self) -> None:
        """Release messages held back for reordering."""
        with self.state.lock:
            pending, self._pending = self._pending, []
            self.rng.shuffle(pending)
            self._release(pending)

    def drain(self) -> list[PushMessage]:
        """Every message released so far (after :meth:`flush`), removed from :attr:`messages`."""
        with self.state.lock:
            self.flush()
            out, self.messages = self.messages, []
            return out

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    # ------------------------------------------------------------------------------- building
    def _wanted(self, change: Change) -> bool:
        opts = self.options
        if change.message not in opts.messages:
            return False
        allowed = opts.entities if opts.entities is not None else frozenset(TRACKED_DEFAULT)
        if change.relationship is not None:
            return change.relationship.intersect_entity in allowed or change.entity in allowed
        return change.entity in allowed

    def on_change(self, change: Change) -> None:
        if not self._wanted(change):
            return
        message = self.build(change)
        out = [message]
        if self.rng.random() < self.options.duplicate_rate:
            out.append(PushMessage(message.body, dict(message.application_properties), message.message_id,
                                   message.message_name, message.entity, message.record_id, message.truncated,
                                   duplicate=True))
        if self.options.reorder_window > 1:
            self._pending.extend(out)
            if len(self._pending) >= self.options.reorder_window:
                self.flush()
        else:
            self._release(out)

    def _guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _entity(self, definition: EntityDef, record_id: str, values: Values, *, typed: bool,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
        attrs = [_kv(name, attribute_value(definition.attribute(name), value)) for name, value in values.items()]
        for name, value in (extra or {}).items():
            attrs.append(_kv(name, value))
        members = {"Attributes": attrs, "EntityState": None, "FormattedValues": [], "Id": record_id,
                   "KeyAttributes": [], "LogicalName": definition.logical_name, "RelatedEntities": [],
                   "RowVersion": None}
        return _typed("Entity", **members) if typed else members

    def _who(self) -> Ref:
        return Ref(self.state.organization.user_id, "systemuser")

    def _target_values(self, change: Change, definition: EntityDef) -> Values:
        after = change.after or {}
        if change.message == "Create" or not self.options.partial_updates:
            return {k: v for k, v in after.items() if (k != "versionnumber" and v is not None) or k in change.requested}
        names = set(change.requested) | {definition.primary_id, "modifiedon"}
        if {"firstname", "lastname"} & names and "fullname" in after:
            names.add("fullname")
        if {"statecode", "statuscode"} & names:
            names |= {"statecode", "statuscode"}
        for attr in definition.attributes:
            if attr.attribute_of in names:
                names.add(attr.logical_name)
        return {k: after.get(k) for k in after if k in names}

    def build(self, change: Change) -> PushMessage:
        state, opts = self.state, self.options
        org = state.organization
        definition = state.entities[change.entity]
        who = entity_reference(self._who())
        inputs: list[dict[str, Any]] = []
        outputs: list[dict[str, Any]] = []
        pre: list[dict[str, Any]] = []
        post: list[dict[str, Any]] = []
        parent_target: dict[str, Any] | None = None
        if change.message in {"Create", "Update"}:
            values = self._target_values(change, definition)
            extra = {"modifiedby": who, "modifiedonbehalfby": None}
            if change.message == "Create":
                extra |= {"createdby": who, "createdonbehalfby": None,
                          "owningbusinessunit": entity_reference(Ref(org.business_unit_id, "businessunit"))}
            inputs.append(_kv("Target", self._entity(definition, change.record_id, values, typed=True, extra=extra)))
            requested = {k: (change.after or {}).get(k) for k in change.requested}
            parent_target = self._entity(definition, change.record_id, requested, typed=True)
            if change.message == "Create":
                outputs.append(_kv("id", change.record_id))
            after = change.after or {}
            if opts.post_image == "all":
                post.append(_kv("PostImage", self._entity(definition, change.record_id, dict(after), typed=False)))
            elif opts.post_image == "primary_name":
                image: Values = {definition.primary_id: change.record_id}
                if definition.primary_name:
                    image[definition.primary_name] = after.get(definition.primary_name)
                post.append(_kv("AsynchronousStepPrimaryName",
                                self._entity(definition, change.record_id, image, typed=False)))
        elif change.message == "Delete":
            inputs.append(_kv("Target", entity_reference(Ref(change.record_id, change.entity))))
            if opts.delete_pre_image and change.before is not None:
                pre.append(_kv("PreImage", self._entity(definition, change.record_id, dict(change.before),
                                                        typed=False)))
        else:
            rel = change.relationship
            assert rel is not None
            related = [entity_reference(r, typed=opts.associate_related_shape == "typed") for r in change.related]
            inputs.append(_kv("Target", entity_reference(Ref(change.record_id, change.entity))))
            relationship = _typed("Relationship", PrimaryEntityRole=None, SchemaName=rel.schema_name)
            inputs.append(_kv("Relationship", relationship))
            inputs.append(_kv("RelatedEntities", related))
        operation_created = date_json(change.when)
        body: dict[str, Any] = {
            "BusinessUnitId": org.business_unit_id,
            "CorrelationId": self._guid(),
            "Depth": 1,
            "InitiatingUserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
            "InitiatingUserId": org.user_id,
            "InputParameters": inputs,
            "IsExecutingOffline": False,
            "IsInTransaction": False,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "MessageName": change.message,
            "Mode": MODE_SYNCHRONOUS if opts.synchronous else MODE_ASYNCHRONOUS,
            "OperationCreatedOn": operation_created,
            "OperationId": self._guid(),
            "OrganizationId": org.organization_id,
            "OrganizationName": org.name,
            "OutputParameters": outputs,
            "OwningExtension": {"Id": self._guid(), "KeyAttributes": [], "LogicalName": "sdkmessageprocessingstep",
                                "Name": None, "RowVersion": None},
            "ParentContext": None,
            "PostEntityImages": post,
            "PreEntityImages": pre,
            "PrimaryEntityId": change.record_id,
            "PrimaryEntityName": change.entity,
            "RequestId": None,
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": STAGE_POST_OPERATION,
            "UserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
            "UserId": org.user_id,
        }
        if parent_target is not None:
            parent = {k: v for k, v in body.items() if k not in {"PostEntityImages", "PreEntityImages"}}
            parent |= {"InputParameters": [_kv("Target", parent_target)], "OutputParameters": [], "Mode": 0,
                       "Stage": STAGE_MAIN_OPERATION, "ParentContext": None, "PostEntityImages": [],
                       "PreEntityImages": [], "OwningExtension": None}
            body["ParentContext"] = parent
        props: dict[str, Any] = {
            f"{CLAIMS}Organization": org.url if opts.organization_claim == "url" else org.name,
            f"{CLAIMS}User": org.user_id,
            f"{CLAIMS}InitiatingUser": org.user_id,
            f"{CLAIMS}EntityLogicalName": change.entity,
            f"{CLAIMS}RequestName": change.message,
            f"{CLAIMS}InitiatingUserAgent": "DataverseSimulator/1.0",
        }
        text = dumps(body, escape_slashes=opts.escape_slashes)
        truncated = len(text.encode()) > opts.max_bytes or self.rng.random() < opts.truncate_rate
        if truncated:
            for key in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
                if opts.truncation_style == "remove":
                    body.pop(key, None)
                else:
                    body[key] = None if key == "ParentContext" else []
            if opts.truncation_flag_in in {"properties", "both"}:
                props[opts.truncation_flag_key] = True
            if opts.truncation_flag_in in {"body", "both"}:
                body[opts.truncation_flag_key] = True
            text = dumps(body, escape_slashes=opts.escape_slashes)
        raw = text.encode()
        return PushMessage((BOM + raw) if opts.bom else raw, props, self._guid(), change.message, change.entity,
                           change.record_id, truncated)
