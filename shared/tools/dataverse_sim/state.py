"""The simulated organization's data and its change tracking, as a pure in-memory state machine.

Every write takes the next value of one organization-wide ``versionnumber`` counter and the clock's
time as ``modifiedon``. Deletes leave a tombstone (the version of the delete, the id) that delta
queries return as ``$deletedEntity``; tombstones go when delta tokens are expired.

Change tracking windows (reference A3/A4): an initial load pages rows in primary-key order and its
deltaLink's token is the version counter as it was when the first page was served, so anything that
changed while the client paged comes again in the next delta (at-least-once, never lost). A delta
from token ``v`` served at counter ``S`` returns the rows whose current version is in ``(v, S]`` and
the tombstones in ``(v, S]``; rows changed again after ``S`` come in the next delta.

No HTTP here: :mod:`shared.tools.dataverse_sim.app` shapes what this module returns.
"""

from __future__ import annotations

import logging
import random
import threading
from bisect import bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from shared.tools.dataverse_sim.schema import (
    TRACKED_DEFAULT,
    AttributeDef,
    EntityDef,
    ManyToMany,
    build_entities,
)
from shared.tools.dataverse_sim.switches import Switches
from shared.tools.dataverse_sim.values import MONEY_PLACES, Ref, SimError, coerce, new_guid, normalize_guid

log = logging.getLogger(__name__)

Values = dict[str, Any]
Clock = Callable[[], datetime]
Message = Literal["Create", "Update", "Delete", "Associate", "Disassociate"]

EXPIRED_CODE = "0x80044352"
EXPIRED_MESSAGE = "Version stamp associated with the client has expired. Please perform a full sync."
NOT_FOUND_CODE = "0x80040217"
DUPLICATE_CODE = "0x80040237"
FIRST_VERSION = 900_000


def real_clock() -> datetime:
    return datetime.now(UTC)


class SteppingClock:
    """A deterministic clock for tests: reads ``now``; every write moves it ``step`` on afterwards.
    Tests may also move ``now`` themselves (e.g. past the change-tracking retention period)."""

    def __init__(self, start: datetime, step: timedelta = timedelta(seconds=1)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        return self.now

    def advance(self) -> None:
        self.now += self.step


@dataclass(frozen=True)
class Organization:
    organization_id: str
    name: str
    url: str
    business_unit_id: str
    user_id: str  # the application user the bearer tokens stand for
    base_currency_id: str


@dataclass(frozen=True)
class Change:
    """One write, as a plug-in step sees it (what push messages are built from)."""

    message: Message
    entity: str
    record_id: str
    version: int
    when: datetime
    requested: tuple[str, ...] = ()  # logical names the request set (Create/Update)
    before: Values | None = None
    after: Values | None = None
    relationship: ManyToMany | None = None
    related: tuple[Ref, ...] = ()  # Associate/Disassociate: the entity2 side


@dataclass(frozen=True)
class Tombstone:
    version: int
    record_id: str
    when: datetime


@dataclass(frozen=True)
class DeltaItem:
    key: tuple[int, int, str]  # (phase, version, id): the keyset delta pages are cut on
    record_id: str
    row: Values | None  # None: deleted


@dataclass
class _Table:
    rows: dict[str, Values] = field(default_factory=dict)
    sorted_ids: list[str] = field(default_factory=list)
    tombstones: list[Tombstone] = field(default_factory=list)
    epoch: int = 0  # bumped when this table's delta tokens are expired


class DataverseState:
    """The organization: schema, rows, version counter, tombstones, delta tokens. Thread-safe:
    every public method takes :attr:`lock` (an RLock, so callers may hold it around several calls)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        switches: Switches | None = None,
        clock: Clock | None = None,
        org_name: str = "simorg",
        org_url: str | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.rng = random.Random(seed)
        self.switches = switches or Switches()
        self.clock: Clock = clock or real_clock
        self.entities: dict[str, EntityDef] = build_entities()
        self.by_set: dict[str, EntityDef] = {e.entity_set_name: e for e in self.entities.values()}
        self._tables: dict[str, _Table] = {name: _Table() for name in self.entities}
        self._version = FIRST_VERSION
        self._etag = 10_000_000
        self._etags: dict[tuple[str, str], int] = {}
        self._last_when = datetime(2000, 1, 1, tzinfo=UTC)
        # (entity, token) -> (entity, epoch, issued): tables issued a token at the same version and second
        # share its text, and each must stay valid for its own table
        self._tokens: dict[tuple[str, str], tuple[str, int, datetime]] = {}
        self.listeners: list[Callable[[Change], None]] = []
        # Reverse index: target id -> {(table, row id, column)} of lookups and N:N link columns pointing at it.
        self._refs: dict[str, set[tuple[str, str, str]]] = {}
        self._links: dict[tuple[str, str, str], str] = {}  # (relationship, id1, id2) -> intersect row id
        # Caller's Read privilege depth per table: "Global" (organization) is what change tracking needs.
        self.read_depth: dict[str, str] = dict.fromkeys(self.entities, "Global")
        self.organization = Organization(
            organization_id=new_guid(self.rng),
            name=org_name,
            url=(org_url or f"https://{org_name}.crm.dynamics.com").rstrip("/"),
            business_unit_id=new_guid(self.rng),
            user_id=new_guid(self.rng),
            base_currency_id=new_guid(self.rng),
        )

    # ------------------------------------------------------------------------------- schema helpers
    def entity(self, logical_name: str) -> EntityDef:
        try:
            return self.entities[logical_name]
        except KeyError:
            raise SimError(404, "0x80040217", f"Could not find entity '{logical_name}'.") from None

    def entity_by_set(self, entity_set: str) -> EntityDef:
        try:
            return self.by_set[entity_set]
        except KeyError:
            raise SimError(404, "0x80060888",
                           f"Resource not found for the segment '{entity_set}'.") from None

    def change_tracking_enabled(self, entity: EntityDef) -> bool:
        if entity.is_intersect:
            return self.switches.intersect_change_tracking
        return entity.change_tracking

    def tracked_entities(self) -> list[str]:
        return [name for name in TRACKED_DEFAULT if self.change_tracking_enabled(self.entities[name])]

    def add_attribute(self, entity: str, attr: AttributeDef) -> None:
        """A schema change (a column added): existing rows read null; the table's delta tokens expire,
        as seen in production after metadata changes (reference A6)."""
        with self.lock:
            definition = self.entity(entity)
            if definition.attribute(attr.logical_name) is not None:
                raise SimError(400, "0x80044363", f"An attribute named {attr.logical_name} already exists.")
            self.entities[entity] = definition.with_attribute(attr)
            self.by_set[definition.entity_set_name] = self.entities[entity]
            for row in self._tables[entity].rows.values():
                row[attr.logical_name] = None
            self.expire_delta_tokens(entity)

    # ------------------------------------------------------------------------------- version clock
    def _tick(self) -> tuple[int, datetime]:
        self._version += 1
        when = max(self.clock().astimezone(UTC).replace(microsecond=0), self._last_when)
        self._last_when = when
        advance = getattr(self.clock, "advance", None)
        if advance is not None:
            advance()
        return self._version, when

    @property
    def current_version(self) -> int:
        return self._version

    def etag(self, entity: str, row: Values) -> int:
        if self.switches.etag_is_version:
            return int(row["versionnumber"])
        return self._etags.get((entity, row[self.entities[entity].primary_id]), 0)

    def _stamp(self, entity: EntityDef, row: Values, version: int, when: datetime, *, created: bool) -> None:
        row["versionnumber"] = version
        if entity.attribute("modifiedon") is not None:
            row["modifiedon"] = when
        if created and entity.attribute("createdon") is not None:
            row["createdon"] = when
        self._etag += 7
        self._etags[(entity.logical_name, row[entity.primary_id])] = self._etag

    # ------------------------------------------------------------------------------- reads
    def get(self, entity: str, record_id: str) -> Values | None:
        with self.lock:
            row = self._tables[entity].rows.get(normalize_guid(record_id))
            return dict(row) if row is not None else None

    def truth(self, entity: str) -> dict[str, Values]:
        """Ground truth: every current row of ``entity`` (copies), keyed by primary id."""
        with self.lock:
            self.entity(entity)
            return {rid: dict(row) for rid, row in self._tables[entity].rows.items()}

    def count(self, entity: str) -> int:
        with self.lock:
            return len(self._tables[entity].rows)

    def tombstones(self, entity: str) -> list[Tombstone]:
        with self.lock:
            return list(self._tables[entity].tombstones)

    def primary_name_of(self, ref: Ref) -> str | None:
        target = self.entities.get(ref.entity)
        if target is None or target.primary_name is None:
            return None
        row = self._tables[ref.entity].rows.get(ref.id)
        return None if row is None else row.get(target.primary_name)

    def page(self, entity: str, after_id: str | None, limit: int) -> tuple[list[Values], bool]:
        """Rows in primary-key order after ``after_id``: (up to ``limit`` rows, whether more follow)."""
        with self.lock:
            table = self._tables[entity]
            start = 0 if after_id is None else bisect_right(table.sorted_ids, after_id)
            ids = table.sorted_ids[start:start + limit + 1]
            rows = [dict(table.rows[i]) for i in ids[:limit]]
            return rows, len(ids) > limit

    # ------------------------------------------------------------------------------- delta tokens
    def issue_token(self, entity: str, version: int) -> str:
        with self.lock:
            issued = max(self.clock().astimezone(UTC), self._last_when)
            token = f"{version}!{issued.astimezone(UTC):%m/%d/%Y %H:%M:%S}"
            self._tokens[(entity, token)] = (entity, self._tables[entity].epoch, issued)
            return token

    def check_token(self, entity: str, token: str) -> int:
        """The version a delta token stands for; ExpiredVersionStamp (0x80044352) when it expired,
        was never issued for this table, or is older than the retention period."""
        with self.lock:
            entry = self._tokens.get((entity, token))
            if entry is None or entry[0] != entity or entry[1] != self._tables[entity].epoch:
                raise self.expired_error()
            retention = timedelta(days=self.switches.expire_change_tracking_in_days)
            if self.clock() - entry[2] > retention:
                raise self.expired_error()
            return int(token.split("!", 1)[0])

    def expired_error(self) -> SimError:
        return SimError(self.switches.expired_token_status, EXPIRED_CODE, EXPIRED_MESSAGE)

    def expire_delta_tokens(self, entity: str | None = None) -> None:
        """Every delta token issued so far for ``entity`` (None: every table) expires, and the table's
        tombstones are purged, as when the retention period passes."""
        with self.lock:
            for name in [entity] if entity else list(self._tables):
                table = self._tables[name]
                table.epoch += 1
                table.tombstones.clear()
            log.info("dataverse simulator: delta tokens expired for %s", entity or "every table")

    def delta(
        self, entity: str, since: int, snapshot: int, after: tuple[int, int, str] | None, limit: int | None,
    ) -> tuple[list[DeltaItem], bool]:
        """Changes in the version window ``(since, snapshot]`` after keyset ``after``."""
        with self.lock:
            table = self._tables[entity]
            by_version = self.switches.delta_order == "by_version"
            items: list[DeltaItem] = []
            for rid, row in table.rows.items():
                version = int(row["versionnumber"])
                if since < version <= snapshot:
                    items.append(DeltaItem((0, version, rid), rid, dict(row)))
            latest: dict[str, Tombstone] = {}
            for stone in table.tombstones:
                if since < stone.version <= snapshot:
                    latest[stone.record_id] = stone
            for rid, stone in latest.items():
                current = table.rows.get(rid)
                if (current is not None and self.switches.recreated_in_delta == "row_only"
                        and int(current["versionnumber"]) > stone.version):
                    continue
                items.append(DeltaItem((0 if by_version else 1, stone.version, rid), rid, None))
            items.sort(key=lambda item: item.key)
            if after is not None:
                items = [item for item in items if item.key > after]
            if limit is None or len(items) <= limit:
                return items, False
            return items[:limit], True

    # ------------------------------------------------------------------------------- writes
    def _coerce_values(self, entity: EntityDef, values: Values, *, creating: bool) -> Values:
        out: Values = {}
        for name, value in values.items():
            attr = entity.attribute(name)
            if attr is None:
                raise SimError(400, "0x80048d19", f"Invalid property '{name}' was found in entity "
                                                  f"'Microsoft.Dynamics.CRM.{entity.logical_name}'.")
            if attr.is_primary_id:
                continue
            allowed = attr.valid_for_create if creating else attr.valid_for_update
            if not allowed:
                raise SimError(400, "0x80048d19", f"The '{name}' attribute of '{entity.logical_name}' is not valid "
                                                  f"for {'create' if creating else 'update'}.")
            coerced = coerce(attr, value)
            if isinstance(coerced, Ref) and coerced.id not in self._tables[coerced.entity].rows:
                raise SimError(404, NOT_FOUND_CODE, f"{coerced.entity} With Id = {coerced.id} Does Not Exist")
            out[name] = coerced
        return out

    def _derive(self, entity: EntityDef, row: Values) -> None:
        """Platform-computed columns: fullname, state/status pairing, currency, exchange rate, _base."""
        if entity.logical_name == "contact":
            parts = [row.get("firstname"), row.get("lastname")]
            row["fullname"] = " ".join(p for p in parts if p) or None
        if entity.attribute("exchangerate") is not None and entity.attribute("transactioncurrencyid") is not None:
            currency = row.get("transactioncurrencyid")
            rate = Decimal(1)
            if isinstance(currency, Ref):
                rate = self._tables["transactioncurrency"].rows[currency.id].get("exchangerate") or Decimal(1)
            row["exchangerate"] = rate
            for attr in entity.attributes:
                if attr.attribute_of and attr.logical_name.endswith("_base"):
                    amount = row.get(attr.attribute_of)
                    row[attr.logical_name] = None if amount is None else (amount / rate).quantize(MONEY_PLACES)

    def _apply_state(self, entity: EntityDef, row: Values, given: Values) -> None:
        state_attr, status_attr = entity.attribute("statecode"), entity.attribute("statuscode")
        if state_attr is None or status_attr is None or state_attr.option_set is None:
            return
        assert status_attr.option_set is not None
        if "statuscode" in given and "statecode" not in given:
            for option in status_attr.option_set.options:
                if option.value == row["statuscode"] and option.state is not None:
                    row["statecode"] = option.state
        if "statecode" in given and "statuscode" not in given:
            for option in state_attr.option_set.options:
                if option.value == row["statecode"] and option.default_status is not None:
                    row["statuscode"] = option.default_status
        valid = {(o.state, o.value) for o in status_attr.option_set.options}
        if (row.get("statecode"), row.get("statuscode")) not in valid:
            raise SimError(400, "0x80040203", f"{row.get('statuscode')} is not a valid status code for state code "
                                              f"{entity.schema_name}State.{row.get('statecode')}")

    def _defaults(self, entity: EntityDef, row: Values) -> None:
        if entity.attribute("ownerid") is not None and row.get("ownerid") is None:
            row["ownerid"] = Ref(self.organization.user_id, "systemuser")
        if (entity.attribute("transactioncurrencyid") is not None and row.get("transactioncurrencyid") is None
                and self.organization.base_currency_id in self._tables["transactioncurrency"].rows):
            row["transactioncurrencyid"] = Ref(self.organization.base_currency_id, "transactioncurrency")
        state = entity.attribute("statecode")
        if state is not None and row.get("statecode") is None:
            row["statecode"] = 0
            if row.get("statuscode") is None and state.option_set is not None:
                row["statuscode"] = state.option_set.options[0].default_status

    def _index(self, entity: EntityDef, row: Values, add: bool) -> None:
        rid = str(row[entity.primary_id])
        for attr in entity.reference_columns:
            value = row.get(attr.logical_name)
            if isinstance(value, Ref):
                target = value.id
            elif isinstance(value, str):
                target = value
            else:
                continue
            entry = (entity.logical_name, rid, attr.logical_name)
            if add:
                self._refs.setdefault(target, set()).add(entry)
            else:
                refs = self._refs.get(target)
                if refs is not None:
                    refs.discard(entry)
                    if not refs:
                        del self._refs[target]

    def _notify(self, change: Change) -> None:
        for listener in list(self.listeners):
            listener(change)

    def create(self, entity: str, values: Values, record_id: str | None = None, *, notify: bool = True) -> str:
        with self.lock:
            definition = self.entity(entity)
            if definition.is_intersect:
                raise SimError(400, "0x80040203", f"Use Associate to create {entity} rows.")
            given = self._coerce_values(definition, values, creating=True)
            rid = normalize_guid(record_id) if record_id else new_guid(self.rng)
            table = self._tables[entity]
            if rid in table.rows:
                raise SimError(412, DUPLICATE_CODE, "A record with matching key values already exists.")
            for attr in definition.attributes:
                if attr.required and given.get(attr.logical_name) is None:
                    raise SimError(400, "0x80040203", f"Attribute '{attr.logical_name}' of '{entity}' is required.")
            row: Values = {a.logical_name: None for a in definition.attributes}
            row.update(given)
            row[definition.primary_id] = rid
            self._defaults(definition, row)
            self._apply_state(definition, row, given)
            self._derive(definition, row)
            version, when = self._tick()
            self._stamp(definition, row, version, when, created=True)
            table.rows[rid] = row
            insort(table.sorted_ids, rid)
            self._index(definition, row, True)
            if notify:
                self._notify(Change("Create", entity, rid, version, when, tuple(given), None, dict(row)))
            return rid

    def update(self, entity: str, record_id: str, values: Values, *, notify: bool = True) -> None:
        with self.lock:
            definition = self.entity(entity)
            rid = normalize_guid(record_id)
            table = self._tables[entity]
            current = table.rows.get(rid)
            if current is None:
                raise SimError(404, NOT_FOUND_CODE, f"{entity} With Id = {rid} Does Not Exist")
            given = self._coerce_values(definition, values, creating=False)
            before = dict(current)
            row = dict(current)
            row.update(given)
            self._apply_state(definition, row, given)
            for attr in definition.attributes:
                if attr.required and row.get(attr.logical_name) is None:
                    raise SimError(400, "0x80040203", f"Attribute '{attr.logical_name}' of '{entity}' is required.")
            self._derive(definition, row)
            version, when = self._tick()
            self._stamp(definition, row, version, when, created=False)
            table.rows[rid] = row
            self._index(definition, before, False)
            self._index(definition, row, True)
            if notify:
                self._notify(Change("Update", entity, rid, version, when, tuple(given), before, dict(row)))

    def upsert(self, entity: str, record_id: str, values: Values) -> bool:
        """PATCH semantics: update when the row exists, else create it with that id. True: created."""
        with self.lock:
            if self.get(entity, record_id) is None:
                self.create(entity, values, record_id)
                return True
            self.update(entity, record_id, values)
            return False

    def delete(self, entity: str, record_id: str, *, notify: bool = True) -> None:
        with self.lock:
            definition = self.entity(entity)
            rid = normalize_guid(record_id)
            table = self._tables[entity]
            if rid not in table.rows:
                raise SimError(404, NOT_FOUND_CODE, f"{entity} With Id = {rid} Does Not Exist")
            # Cascades first, as the platform does: N:N links go, then lookups to the row are cleared
            # (in a fixed order, so versions are deterministic).
            referrers = sorted(self._refs.get(rid, ()))
            for other_entity, other_id, _ in referrers:
                other = self.entities[other_entity]
                if other.is_intersect and other_id in self._tables[other_entity].rows:
                    self._unlink(self._relationship_of(other_entity), other_id, notify=notify)
            for other_entity, other_id, column in referrers:
                other = self.entities[other_entity]
                if other.is_intersect or (other_entity == entity and other_id == rid):
                    continue
                value = self._tables[other_entity].rows.get(other_id, {}).get(column)
                if isinstance(value, Ref) and value.id == rid and value.entity == entity:
                    self.update(other_entity, other_id, {column: None}, notify=notify)
            before = table.rows.pop(rid)
            self._index(definition, before, False)
            table.sorted_ids.pop(bisect_right(table.sorted_ids, rid) - 1)
            version, when = self._tick()
            table.tombstones.append(Tombstone(version, rid, when))
            if notify:
                self._notify(Change("Delete", entity, rid, version, when, (), before, None))

    # ------------------------------------------------------------------------------- N:N
    def relationship(self, name: str) -> ManyToMany:
        for entity in self.entities.values():
            for rel in entity.many_to_many:
                if rel.schema_name == name:
                    return rel
        raise SimError(404, "0x80060888", f"Resource not found for the segment '{name}'.")

    def _relationship_of(self, intersect_entity: str) -> ManyToMany:
        for entity in self.entities.values():
            for rel in entity.many_to_many:
                if rel.intersect_entity == intersect_entity:
                    return rel
        raise KeyError(intersect_entity)

    def link_id(self, rel: ManyToMany, id1: str, id2: str) -> str | None:
        return self._links.get((rel.schema_name, id1, id2))

    def associate(self, rel_name: str, id1: str, id2: str, *, notify: bool = True) -> str:
        """Link ``id1`` (entity1) and ``id2`` (entity2): a new intersect row. Idempotent like Dataverse's
        duplicate-association error is not: associating twice raises 412."""
        with self.lock:
            rel = self.relationship(rel_name)
            id1, id2 = normalize_guid(id1), normalize_guid(id2)
            for ent, rid in ((rel.entity1, id1), (rel.entity2, id2)):
                if rid not in self._tables[ent].rows:
                    raise SimError(404, NOT_FOUND_CODE, f"{ent} With Id = {rid} Does Not Exist")
            if self.link_id(rel, id1, id2) is not None:
                raise SimError(412, DUPLICATE_CODE, "Cannot insert duplicate key.")
            definition = self.entities[rel.intersect_entity]
            link_id = new_guid(self.rng)
            row: Values = {definition.primary_id: link_id, rel.entity1_attribute: id1, rel.entity2_attribute: id2}
            version, when = self._tick()
            self._stamp(definition, row, version, when, created=True)
            table = self._tables[rel.intersect_entity]
            table.rows[link_id] = row
            insort(table.sorted_ids, link_id)
            self._links[(rel.schema_name, id1, id2)] = link_id
            self._index(definition, row, True)
            if notify:
                self._notify(Change("Associate", rel.entity1, id1, version, when, after=dict(row), relationship=rel,
                                    related=(Ref(id2, rel.entity2),)))
            return link_id

    def disassociate(self, rel_name: str, id1: str, id2: str, *, notify: bool = True) -> None:
        with self.lock:
            rel = self.relationship(rel_name)
            link_id = self.link_id(rel, normalize_guid(id1), normalize_guid(id2))
            if link_id is None:
                raise SimError(404, NOT_FOUND_CODE, f"{rel.intersect_entity} link does not exist")
            self._unlink(rel, link_id, notify=notify)

    def _unlink(self, rel: ManyToMany, link_id: str, *, notify: bool) -> None:
        table = self._tables[rel.intersect_entity]
        before = table.rows.pop(link_id)
        table.sorted_ids.pop(bisect_right(table.sorted_ids, link_id) - 1)
        self._links.pop((rel.schema_name, str(before[rel.entity1_attribute]), str(before[rel.entity2_attribute])), None)
        self._index(self.entities[rel.intersect_entity], before, False)
        version, when = self._tick()
        table.tombstones.append(Tombstone(version, link_id, when))
        if notify:
            self._notify(Change("Disassociate", rel.entity1, str(before[rel.entity1_attribute]), version, when,
                                before=before, relationship=rel,
                                related=(Ref(str(before[rel.entity2_attribute]), rel.entity2),)))

    # ------------------------------------------------------------------------------- bulk helpers
    def ids(self, entity: str) -> list[str]:
        with self.lock:
            return list(self._tables[entity].sorted_ids)

    def links(self, rel_name: str) -> list[tuple[str, str]]:
        with self.lock:
            rel = self.relationship(rel_name)
            return sorted((str(r[rel.entity1_attribute]), str(r[rel.entity2_attribute]))
                          for r in self._tables[rel.intersect_entity].rows.values())
