"""The :class:`~shared.source.dataverse.push.Reread` port over the change-tracking source's Web API
client (adapter: I/O). Rows read here are mapped exactly as the change-tracking source maps them
(:func:`~shared.source.dataverse.mapping.row_notification`), so push and pull write the same rows.

What it needs of an entity (its entity set, primary id and the columns it exports) comes from an
``infos`` callable: :func:`cursor_infos` (the profile's cursors: what the change-tracking source
already read) or :class:`MetadataInfos` (the entity definitions, read once and cached).

Requests (reference A, D): one record by id (``<set>(<id>)?$select=...``); the intersect row of a
pair (``<intersect set>?$select=...&$filter=<attr1> eq <id1> and <attr2> eq <id2>``); an N:N
relationship's definition (``EntityDefinitions(LogicalName='x')/ManyToManyRelationships``); the
versionnumbers newer than a mark (``<set>?$select=versionnumber&$filter=versionnumber gt <n>``) for
a verified delete's version. None of them uses change tracking, so ``$filter`` is allowed.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shared.engine.ports import Destination
from shared.source.dataverse import mapping as m
from shared.source.dataverse.client import LOOKUP_ANNOTATIONS, DataverseClient, DataverseError
from shared.source.dataverse.cursors import CursorStore
from shared.source.dataverse.push import EntityRef, RereadRefused

log = logging.getLogger(__name__)

InfoLookup = Callable[[str], m.EntityInfo | None]
# (entity, record id) -> the highest contract version the destination(s) hold for it (row or tombstone)
Held = Callable[[str, str], int | None]
# (intersect entity, {attribute: id}) -> (id, contract version) of the intersect rows held for the pair
LinkIds = Callable[[str, Mapping[str, str]], list[tuple[str, int]]]
_LOOKUP = re.compile(r"^_([a-z][a-z0-9_]*)_value$")
RELATIONSHIP_SELECT = (
    "SchemaName,Entity1LogicalName,Entity2LogicalName,IntersectEntityName,Entity1IntersectAttribute,"
    "Entity2IntersectAttribute"
)
SCAN_PAGE = 5000


def exported_columns(info: m.EntityInfo) -> frozenset[str]:
    """The contract attribute names the change-tracking source writes for ``info`` (lookups as ``x``)."""
    names = set()
    for column in info.columns:
        if column == m.VERSION_COLUMN:
            continue
        lookup = _LOOKUP.match(column)
        names.add(lookup.group(1) if lookup else column)
    return frozenset(names)


def cursor_infos(cursors: CursorStore, profile_id: str) -> InfoLookup:
    """Entities as the profile's change-tracking cursors know them (None: not one of the profile's)."""

    def lookup(entity: str) -> m.EntityInfo | None:
        state = cursors.get(profile_id, entity)
        return state.info if state is not None else None

    return lookup


class MetadataInfos:
    """Entities read from their definitions on first use (for push without a change-tracking cursor)."""

    def __init__(self, client: DataverseClient, organization_id: str, entities: frozenset[str] | None = None) -> None:
        self.client = client
        self.organization_id = organization_id
        self.entities = entities
        self._cache: dict[str, m.EntityInfo] = {}
        self._lock = threading.Lock()

    def __call__(self, entity: str) -> m.EntityInfo | None:
        if self.entities is not None and entity not in self.entities:
            return None
        with self._lock:
            info = self._cache.get(entity)
        if info is not None:
            return info
        definition = self.client.entity_definition(entity)
        attributes = self.client.attributes(entity)
        casts = self.client.casts_for(entity, attributes)
        now = datetime.now(UTC)
        info, _ = m.entity_metadata(definition, attributes, casts, organization_id=self.organization_id,
                                    version=int(now.timestamp() * 1000), changed_on=now)  # fmt: skip
        with self._lock:
            self._cache[entity] = info
        return info


@dataclass(frozen=True)
class ManyToMany:
    schema_name: str
    entity1: str
    entity2: str
    intersect: str
    attribute1: str
    attribute2: str


def _relationship(rel: object) -> ManyToMany | None:
    """A ManyToManyRelationshipMetadata (reference D) with every field this needs, else None."""
    if not isinstance(rel, dict):
        return None
    fields = [rel.get(k) for k in ("SchemaName", "Entity1LogicalName", "Entity2LogicalName", "IntersectEntityName",
                                   "Entity1IntersectAttribute", "Entity2IntersectAttribute")]
    if not all(isinstance(f, str) and f for f in fields):
        return None
    return ManyToMany(str(fields[0]).lower(), *(str(f) for f in fields[1:]))


def _now() -> datetime:
    return datetime.now(UTC)


class SourceReread:
    """Re-reads records through one environment's :class:`DataverseClient` (thread-safe)."""

    def __init__(
        self,
        client: DataverseClient,
        organization_id: str,
        infos: InfoLookup,
        *,
        high_water: Callable[[str], int] | None = None,
        held: Held | None = None,
        link_ids: LinkIds | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.client = client
        self.organization_id = organization_id.lower()
        self.infos = infos
        self.known_high_water = high_water  # e.g. the cursor's: a verified delete's scan starts there
        self.held = held
        self.link_ids = link_ids
        self.clock = clock
        self._relationships: dict[str, ManyToMany] = {}

    # ------------------------------------------------------------------------------ helpers
    def _info(self, entity: str) -> m.EntityInfo:
        try:
            info = self.infos(entity)
        except DataverseError as exc:
            if exc.transient:
                raise
            raise RereadRefused(f"reading the definition of {entity!r}: {exc}") from exc
        if info is None:
            raise RereadRefused(f"the Dataverse source does not read {entity!r} (not one of the profile's entities)")
        return info

    def _get(self, url: str, prefer: tuple[str, ...] = (LOOKUP_ANNOTATIONS,), *, allow_404: bool = False) -> Any:
        try:
            return self.client.get(url, prefer, allow_404=allow_404)
        except DataverseError as exc:
            if exc.transient:
                raise
            raise RereadRefused(str(exc)) from exc

    def _row(self, info: m.EntityInfo, row: Mapping[str, Any]) -> dict[str, Any]:
        return m.row_notification(info, self.organization_id, row, change_type="update", read_at=self.clock())

    def _high_water(self, info: m.EntityInfo) -> int:
        """The highest versionnumber of ``info``'s rows now, starting from the known mark (the scan
        reads only rows changed since; no ``$orderby``, which some Web API fronts refuse)."""
        mark = self.known_high_water(info.logical_name) if self.known_high_water else 0
        url: str | None = (
            f"{quote(info.entity_set)}?$select={info.primary_id},{m.VERSION_COLUMN}"
            f"&$filter={m.VERSION_COLUMN} gt {int(mark)}"
        )
        while url is not None:
            doc = self._get(url, (f"odata.maxpagesize={SCAN_PAGE}",))
            for row in (doc.get("value") if isinstance(doc, dict) else None) or []:
                vn = row.get(m.VERSION_COLUMN) if isinstance(row, dict) else None
                if type(vn) is int and mark < vn <= m.MAX_VERSIONNUMBER:
                    mark = vn
            nxt = doc.get(m.NEXT_LINK) if isinstance(doc, dict) else None
            url = nxt if isinstance(nxt, str) else None
        return int(mark)

    # ------------------------------------------------------------------------------ the port
    def columns(self, entity: str) -> frozenset[str] | None:
        try:
            info = self.infos(entity)
        except DataverseError as exc:
            if exc.transient:
                raise
            log.warning("push: the definition of %s could not be read: %s", entity, exc)
            return None
        return exported_columns(info) if info is not None else None

    def record(self, entity: str, record_id: str) -> dict[str, Any] | None:
        info = self._info(entity)
        try:
            row = self.client.record(info.entity_set, record_id, info.select())
        except DataverseError as exc:
            if exc.transient:
                raise
            raise RereadRefused(str(exc)) from exc
        return self._row(info, row) if row is not None else None

    def deleted(self, entity: str, record_id: str) -> dict[str, Any]:
        """Verified delete (docs/dataverse-push.md, "Deletes without a pre-image"): ``H`` = the
        entity's highest versionnumber now and the version the destination holds, both read
        *before* checking the record is gone; every version of the record is at most ``H`` (it was
        written before the check), a re-creation after the check is newer than ``H``."""
        info = self._info(entity)
        high_water = self._high_water(info)
        held = self.held(entity, record_id) if self.held is not None else None
        current = self.record(entity, record_id)
        if current is not None:
            return current
        mark = max(high_water, m.versionnumber_of(held) if held else 0)
        return m.delete_notification(info, self.organization_id, record_id, high_water=mark, read_at=self.clock())

    def relationship(self, schema_name: str, entity: str) -> ManyToMany:
        key = schema_name.lower()
        cached = self._relationships.get(key)
        if cached is not None:
            return cached
        doc = self._get(
            f"EntityDefinitions(LogicalName='{quote(entity)}')/ManyToManyRelationships?$select={RELATIONSHIP_SELECT}",
            (),
        )
        for rel in (doc.get("value") if isinstance(doc, dict) else None) or []:
            found = _relationship(rel)
            if found is not None and found.schema_name == key:
                self._relationships[key] = found
                return found
        raise RereadRefused(f"{entity!r} has no N:N relationship {schema_name!r}")

    def _pair(self, rel: ManyToMany, one: EntityRef, other: EntityRef) -> list[dict[str, str]]:
        """The (attribute -> id) filters the pair can mean (both orders for a self-referencing N:N)."""
        pairs = []
        if (one.logical_name, other.logical_name) == (rel.entity1, rel.entity2):
            pairs.append({rel.attribute1: one.id, rel.attribute2: other.id})
        if (other.logical_name, one.logical_name) == (rel.entity1, rel.entity2):
            pairs.append({rel.attribute1: other.id, rel.attribute2: one.id})
        if not pairs:
            raise RereadRefused(f"{rel.schema_name} links {rel.entity1} and {rel.entity2}, "
                                f"not {one.logical_name} and {other.logical_name}")
        return pairs

    def _linked(self, info: m.EntityInfo, pair: Mapping[str, str]) -> list[dict[str, Any]]:
        condition = " and ".join(f"{attr} eq {rid}" for attr, rid in pair.items())
        doc = self._get(f"{quote(info.entity_set)}?$select={info.select()}&$filter={condition}")
        rows = (doc.get("value") if isinstance(doc, dict) else None) or []
        return [self._row(info, row) for row in rows if isinstance(row, dict)]

    def link(self, relationship: str, one: EntityRef, other: EntityRef) -> dict[str, Any] | None:
        rel = self.relationship(relationship, one.logical_name)
        info = self._info(rel.intersect)
        for pair in self._pair(rel, one, other):
            rows = self._linked(info, pair)
            if rows:
                return rows[0]
        return None

    def relationships(self, entity: str) -> list[ManyToMany]:
        """``entity``'s N:N relationships whose intersect entity the source reads."""
        doc = self._get(
            f"EntityDefinitions(LogicalName='{quote(entity)}')/ManyToManyRelationships?$select={RELATIONSHIP_SELECT}",
            (),
        )
        out = []
        for rel in (doc.get("value") if isinstance(doc, dict) else None) or []:
            found = _relationship(rel)
            if found is not None and self.columns(found.intersect) is not None:
                self._relationships[found.schema_name] = found
                out.append(found)
        return out

    def links_of(self, record: EntityRef) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for rel in self.relationships(record.logical_name):
            info = self._info(rel.intersect)
            sides = [attr for attr, ent in ((rel.attribute1, rel.entity1), (rel.attribute2, rel.entity2))
                     if ent == record.logical_name]  # fmt: skip
            for attr in sides:
                high_water = self._high_water(info)  # before the read, as for any verified delete
                held = self.link_ids(rel.intersect, {attr: record.id}) if self.link_ids is not None else []
                current = self._linked(info, {attr: record.id})
                out.extend(current)
                live = {str(n["recordId"]).lower() for n in current}
                now = self.clock()
                for rid, version in held:
                    if rid not in live:
                        mark = max(high_water, m.versionnumber_of(version))
                        out.append(m.delete_notification(info, self.organization_id, rid, high_water=mark,
                                                         read_at=now))  # fmt: skip
        return out

    def unlinked(self, relationship: str, one: EntityRef, other: EntityRef) -> list[dict[str, Any]]:
        rel = self.relationship(relationship, one.logical_name)
        info = self._info(rel.intersect)
        if self.link_ids is None:
            return []
        high_water = self._high_water(info)  # before the check, as for any verified delete
        out: list[dict[str, Any]] = []
        for pair in self._pair(rel, one, other):
            held = self.link_ids(rel.intersect, pair)  # before the check too
            rows = self._linked(info, pair)
            if rows:  # linked again since
                return rows
            now = self.clock()
            for rid, version in held:
                mark = max(high_water, m.versionnumber_of(version))
                out.append(m.delete_notification(info, self.organization_id, rid, high_water=mark, read_at=now))
        return out


def keyed_held(dest: Destination) -> Held:
    """The contract version ``dest`` holds for a record: its row's, read by primary key through the
    destination port (:meth:`~shared.engine.ports.Destination.held_versions`). Tombstones are the
    engine's and never lower a delete: a delete below one is stale there anyway."""

    def held(entity: str, record_id: str) -> int | None:
        rid = record_id.lower()
        return dest.held_versions(dest.layout.entity_table(entity), [rid]).get(rid)

    return held


def keyed_link_ids(dest: Destination) -> LinkIds:
    """The intersect rows ``dest`` holds for a pair (``(id, version)``), read by the pair's columns
    through the destination port (:meth:`~shared.engine.ports.Destination.rows_with`)."""

    def ids(entity: str, pair: Mapping[str, str]) -> list[tuple[str, int]]:
        return dest.rows_with(dest.layout.entity_table(entity), {k: v.lower() for k, v in pair.items()})

    return ids


def environment_reread(client: DataverseClient, dest: Destination, organization_id: str | None = None) -> SourceReread:
    """A re-read source over one environment without a profile (``des replay --dataverse``): the
    entities' columns from their definitions, a verified delete's scan from versionnumber 0, the
    versions held read by key from ``dest``. ``organization_id`` defaults to the environment's (WhoAmI)."""
    org = (organization_id or client.organization_id()).lower()
    return SourceReread(client, org, MetadataInfos(client, org), held=keyed_held(dest), link_ids=keyed_link_ids(dest))
