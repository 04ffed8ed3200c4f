"""Metadata endpoints (reference section D): EntityDefinitions, Attributes with type casts, option
sets, lookup Targets, N:N relationships, global option sets."""

from __future__ import annotations

import re
from typing import Any

from shared.tools.dataverse_sim.query import matches, parse_filter
from shared.tools.dataverse_sim.schema import AttributeDef, EntityDef, OptionSetDef, metadata_id
from shared.tools.dataverse_sim.state import DataverseState
from shared.tools.dataverse_sim.values import SimError

NS = "Microsoft.Dynamics.CRM."
ENUM_BASES = {"EnumAttributeMetadata", "AttributeMetadata", "LookupAttributeMetadataBase"}


def _label(text: str, key: str) -> dict[str, Any]:
    localized = {"Label": text, "LanguageCode": 1033, "IsManaged": True, "MetadataId": metadata_id("label", key),
                 "HasChanged": None}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def _select(obj: dict[str, Any], select: str | None, type_name: str) -> dict[str, Any]:
    if not select:
        return obj
    names = [n.strip() for n in select.split(",") if n.strip()]
    out: dict[str, Any] = {k: v for k, v in obj.items() if k.startswith("@")}
    for name in names:
        if name not in obj:
            raise SimError(400, "0x0", f"Could not find a property named '{name}' on type '{NS}{type_name}'.")
        out[name] = obj[name]
    if "MetadataId" in obj:
        out["MetadataId"] = obj["MetadataId"]
    return out


def entity_json(state: DataverseState, entity: EntityDef) -> dict[str, Any]:
    tracked = state.change_tracking_enabled(entity)
    return {
        "MetadataId": entity.metadata_id,
        "LogicalName": entity.logical_name,
        "SchemaName": entity.schema_name,
        "EntitySetName": entity.entity_set_name,
        "LogicalCollectionName": entity.entity_set_name,
        "CollectionSchemaName": entity.schema_name + "s",
        "PrimaryIdAttribute": entity.primary_id,
        "PrimaryNameAttribute": entity.primary_name,
        "ObjectTypeCode": entity.object_type_code,
        "ChangeTrackingEnabled": tracked,
        "CanChangeTrackingBeEnabled": {"Value": entity.can_change_tracking_be_enabled, "CanBeChanged": False,
                                       "ManagedPropertyLogicalName": "canchangetrackingbeenabled"},
        "IsIntersect": entity.is_intersect,
        "IsActivity": False,
        "IsCustomEntity": entity.is_custom,
        "IsValidForAdvancedFind": not entity.is_intersect,
        "DisplayName": _label(entity.logical_name.replace("_", " ").title(), entity.logical_name),
    }


def option_set_json(state: DataverseState, option_set: OptionSetDef) -> dict[str, Any]:
    if option_set.option_set_type == "Boolean":
        false, true = option_set.options
        return {
            "@odata.type": f"#{NS}BooleanOptionSetMetadata",
            "MetadataId": metadata_id("optionset", option_set.name), "Name": option_set.name,
            "IsGlobal": option_set.is_global, "OptionSetType": "Boolean",
            "TrueOption": {"Value": 1, "Label": _label(true.label, f"{option_set.name}/1")},
            "FalseOption": {"Value": 0, "Label": _label(false.label, f"{option_set.name}/0")},
        }
    options: list[dict[str, Any]] = []
    for option in option_set.options:
        key = f"{option_set.name}/{option.value}"
        item: dict[str, Any] = {"Value": option.value, "Label": _label(option.label, key),
                                "Description": _label("", f"{option_set.name}/{option.value}/d"), "Color": None,
                                "IsManaged": True, "ExternalValue": None, "ParentValues": []}
        if state.switches.option_state_fields:
            if option_set.option_set_type == "Status":
                item["@odata.type"] = f"#{NS}StatusOptionMetadata"
                item["State"] = option.state
            elif option_set.option_set_type == "State":
                item["@odata.type"] = f"#{NS}StateOptionMetadata"
                item["DefaultStatus"] = option.default_status
                item["InvariantName"] = option.label
        options.append(item)
    return {
        "@odata.type": f"#{NS}OptionSetMetadata",
        "MetadataId": metadata_id("optionset", option_set.name),
        "Name": option_set.name,
        "IsGlobal": option_set.is_global,
        "IsCustomOptionSet": option_set.is_global,
        "OptionSetType": option_set.option_set_type,
        "DisplayName": _label(option_set.name, option_set.name),
        "Options": options,
    }


def attribute_json(state: DataverseState, attr: AttributeDef, *, specific: bool,
                   expand: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "@odata.type": f"#{NS}{attr.cast}",
        "MetadataId": attr.metadata_id,
        "LogicalName": attr.logical_name,
        "SchemaName": attr.schema_name,
        "EntityLogicalName": attr.entity,
        "AttributeType": attr.type,
        "AttributeTypeName": {"Value": attr.type_name},
        "AttributeOf": attr.attribute_of,
        "IsValidForRead": True,
        "IsValidForCreate": attr.valid_for_create,
        "IsValidForUpdate": attr.valid_for_update,
        "IsPrimaryId": attr.is_primary_id,
        "IsPrimaryName": attr.is_primary_name,
        "IsCustomAttribute": attr.logical_name.startswith("des_"),
        "IsLogical": attr.attribute_of is not None,
        "RequiredLevel": {"Value": "ApplicationRequired" if attr.required else "None", "CanBeChanged": True,
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "DisplayName": _label(attr.logical_name, f"{attr.entity}.{attr.logical_name}"),
    }
    if not specific:
        return out
    if attr.type in {"String", "Memo"}:
        out["MaxLength"] = attr.max_length
        out["Format"] = "Text" if attr.type == "String" else "TextArea"
    if attr.type in {"Money", "Decimal", "Double"}:
        out["Precision"] = attr.precision
        out["MinValue"], out["MaxValue"] = (-922337203685477, 922337203685477) if attr.type == "Money" else (
            -100000000000, 100000000000)
    if attr.type == "Money":
        out["PrecisionSource"] = 2
        out["IsBaseCurrency"] = attr.logical_name.endswith("_base")
    if attr.type in {"Integer", "BigInt"}:
        out["MinValue"], out["MaxValue"] = (-2147483648, 2147483647) if attr.type == "Integer" else (
            -9223372036854775808, 9223372036854775807)
    if attr.type == "DateTime":
        out["Format"] = "DateOnly" if attr.date_only else "DateAndTime"
        out["DateTimeBehavior"] = {"Value": "DateOnly" if attr.date_only else "UserLocal"}
    if attr.is_lookup:
        out["Targets"] = list(attr.targets)
    if attr.option_set is not None and (attr.type in {"Picklist", "State", "Status", "Virtual", "Boolean"}):
        out["DefaultFormValue"] = None if attr.type != "Boolean" else 0
        if "OptionSet" in expand:
            out["OptionSet"] = option_set_json(state, attr.option_set)
        if "GlobalOptionSet" in expand:
            out["GlobalOptionSet"] = option_set_json(state, attr.option_set) if attr.option_set.is_global else None
    return out


def relationship_json(entity: EntityDef) -> list[dict[str, Any]]:
    return [{
        "MetadataId": metadata_id("relationship", rel.schema_name),
        "SchemaName": rel.schema_name,
        "RelationshipType": "ManyToManyRelationship",
        "Entity1LogicalName": rel.entity1, "Entity2LogicalName": rel.entity2,
        "IntersectEntityName": rel.intersect_entity,
        "Entity1IntersectAttribute": rel.entity1_attribute, "Entity2IntersectAttribute": rel.entity2_attribute,
        "Entity1NavigationPropertyName": rel.schema_name, "Entity2NavigationPropertyName": rel.schema_name,
        "IsCustomRelationship": True,
    } for rel in entity.many_to_many]


_KEY = re.compile(r"^\((?:LogicalName=)?'?([^')]+)'?\)")
_EXPAND_ATTRS = re.compile(r"^Attributes(?:\((.*)\))?$")


def _find_entity(state: DataverseState, key: str) -> EntityDef:
    for entity in state.entities.values():
        if key in {entity.logical_name, entity.metadata_id}:
            return entity
    raise SimError(404, "0x80040217", f"Could not find entity with key '{key}'.")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _expand_set(expand: str | None) -> set[str]:
    return set(_split_top(expand or ""))


def _options_in(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        name, _, value = part.partition("=")
        if name.strip():
            out[name.strip()] = value.strip()
    return out


def entity_definitions(state: DataverseState, rest: str, query: dict[str, str], api: str) -> dict[str, Any]:
    """``rest`` is the path after ``EntityDefinitions``."""
    select = query.get("$select")
    expand = query.get("$expand")
    if not rest:
        entities = [entity_json(state, e) for e in state.entities.values()]
        if "$filter" in query:
            groups = parse_filter(query["$filter"])
            entities = [e for e in entities if matches(groups, e.get)]
        values = [_with_expanded(state, e, expand, select) for e in entities]
        return {"@odata.context": f"{api}$metadata#EntityDefinitions", "value": values}
    m = _KEY.match(rest)
    if m is None:
        raise SimError(400, "0x0", f"Bad EntityDefinitions key in {rest!r}.")
    entity = _find_entity(state, m.group(1))
    rest = rest[m.end():]
    if not rest:
        out = _with_expanded(state, entity_json(state, entity), expand, select)
        return {"@odata.context": f"{api}$metadata#EntityDefinitions/$entity", **out}
    if rest == "/ManyToManyRelationships":
        return {"@odata.context": f"{api}$metadata#EntityDefinitions('{entity.logical_name}')/ManyToManyRelationships",
                "value": [_select(r, select, "ManyToManyRelationshipMetadata") for r in relationship_json(entity)]}
    am = re.match(r"^/Attributes(?:\((?:LogicalName=)?'?([^')]+)'?\))?(?:/Microsoft\.Dynamics\.CRM\.(\w+))?$", rest)
    if am is None:
        raise SimError(404, "0x80060888", f"Resource not found for the segment '{rest.strip('/')}'.")
    one, cast = am.group(1), am.group(2)
    if cast in ENUM_BASES:
        raise SimError(400, "0x0", f"The type '{NS}{cast}' cannot be used in a type cast segment here: cast to a "
                                   f"concrete attribute type (e.g. {NS}PicklistAttributeMetadata).")
    attrs = [a for a in entity.attributes if cast is None or a.cast == cast]
    if cast is not None and not any(a.cast == cast for a in _all_types()):
        raise SimError(400, "0x0", f"The type '{NS}{cast}' is not defined.")
    expansions = _expand_set(expand)
    if expansions and cast is None:
        raise SimError(400, "0x0", f"Could not find a property named '{sorted(expansions)[0]}' on type "
                                   f"'{NS}AttributeMetadata'.")
    specific = cast is not None or not select
    if one is not None:
        found = [a for a in attrs if one in {a.logical_name, a.metadata_id}]
        if not found:
            raise SimError(404, "0x80040217", f"Could not find attribute '{one}' of entity '{entity.logical_name}'.")
        body = _select(attribute_json(state, found[0], specific=specific, expand=expansions), _with_nav(select, expand),
                       cast or "AttributeMetadata")
        return {"@odata.context": f"{api}$metadata#EntityDefinitions('{entity.logical_name}')/Attributes/$entity",
                **body}
    items = [attribute_json(state, a, specific=specific, expand=expansions) for a in attrs]
    if "$filter" in query:
        groups = parse_filter(query["$filter"])
        items = [i for i in items if matches(groups, i.get)]
    suffix = f"/{NS}{cast}" if cast else ""
    return {"@odata.context": f"{api}$metadata#EntityDefinitions('{entity.logical_name}')/Attributes{suffix}",
            "value": [_select(i, _with_nav(select, expand), cast or "AttributeMetadata") for i in items]}


def _all_types() -> list[AttributeDef]:
    from shared.tools.dataverse_sim.schema import TYPE_NAMES

    return [AttributeDef("x", t) for t in TYPE_NAMES]


def _with_nav(select: str | None, expand: str | None) -> str | None:
    """Expanded navigation properties are kept even when ``$select`` does not name them."""
    if not select:
        return None
    return ",".join([select, *sorted(_expand_set(expand))]) if expand else select


def _with_expanded(state: DataverseState, entity_obj: dict[str, Any], expand: str | None,
                   select: str | None) -> dict[str, Any]:
    out = _select(entity_obj, select, "EntityMetadata")
    for part in _expand_set(expand):
        m = _EXPAND_ATTRS.match(part)
        if m is None:
            raise SimError(400, "0x0", f"Could not find a property named '{part}' on type '{NS}EntityMetadata'.")
        options = _options_in(m.group(1) or "")
        if set(options) - {"$select", "$filter"}:
            raise SimError(400, "0x0", "Only $select and $filter are supported inside $expand=Attributes(...).")
        entity = state.entities[entity_obj["LogicalName"]]
        items = [attribute_json(state, a, specific="$select" not in options, expand=set()) for a in entity.attributes]
        if "$filter" in options:
            groups = parse_filter(options["$filter"])
            items = [i for i in items if matches(groups, i.get)]
        out["Attributes"] = [_select(i, options.get("$select"), "AttributeMetadata") for i in items]
    return out


def global_option_set(state: DataverseState, rest: str, api: str) -> dict[str, Any]:
    m = re.match(r"^\(Name='([^']+)'\)$", rest)
    if m is None:
        raise SimError(400, "0x0", "Use GlobalOptionSetDefinitions(Name='<name>').")
    for entity in state.entities.values():
        for attr in entity.attributes:
            if attr.option_set is not None and attr.option_set.is_global and attr.option_set.name == m.group(1):
                return {"@odata.context": f"{api}$metadata#GlobalOptionSetDefinitions/$entity",
                        **option_set_json(state, attr.option_set)}
    raise SimError(404, "0x80040217", f"Could not find optionset '{m.group(1)}'.")
