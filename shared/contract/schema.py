"""The JSON Schema of the wire contract, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from shared.contract.metadata import WireBody
from shared.contract.models import NAME_PATTERN
from shared.contract.parse import RESERVED_ATTRIBUTES

SCHEMA_PATH = Path(__file__).with_name("notification.v1.schema.json")
SCHEMA_ID = "https://github.com/des-replacement/des/schemas/notification.v1.schema.json"


_REF: dict[str, Any] = {"properties": {"payloadRef": {"type": "object"}}}


def message_schema() -> dict[str, Any]:
    # Record notifications (MessageBody) and entity metadata notifications (shared.contract.metadata).
    schema = TypeAdapter(WireBody).json_schema()
    notification = schema["$defs"]["Notification"]
    # pydantic states the name rule for attribute names as patternProperties only, which lets any
    # other name through a JSON Schema validator: say it for every name.
    for option in notification["properties"]["attributes"]["anyOf"]:
        if option.get("type") == "object":
            option["propertyNames"] = {**option.get("propertyNames", {}), "pattern": NAME_PATTERN}
            option["additionalProperties"] = False
    # Rules pydantic validates in code (shared.contract.parse) stated for other readers too.
    notification["allOf"] = [
        {
            "if": {"properties": {"changeType": {"const": "delete"}}},
            "then": {"not": {"anyOf": [{"required": ["attributes"]}, {"required": ["payloadRef"], **_REF}]}},
            "else": {
                # The full state inline, or a claim check (payloadRef) pointing to it: one of the two
                # (a null payloadRef is the same as none).
                "oneOf": [
                    {"required": ["attributes"], "properties": {"payloadRef": {"type": "null"}}},
                    {"required": ["payloadRef"], **_REF, "not": {"required": ["attributes"]}},
                ],
                "properties": {
                    "attributes": {
                        "type": "object",
                        "propertyNames": {"not": {"enum": sorted(RESERVED_ATTRIBUTES)}},
                    }
                },
            },
        }
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "DES Service Bus message body (v1): one notification or a batch envelope",
        **schema,
    }


def schema_json() -> str:
    return json.dumps(message_schema(), indent=2, sort_keys=True) + "\n"


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema
