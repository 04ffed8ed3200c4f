"""Entity metadata notifications: declared column types and the DES metadata tables.

The engine hands every batch's metadata notifications (shared/contract/metadata.py) to
:class:`MetadataApplier` before the batch's record notifications, so records that travel with their
entity's metadata already meet its typed columns. Per batch:

1. the newest notification per entity wins; the others are stale (equal versions are one event
   delivered twice);
2. per entity, in name order: stale when the destination already records metadata at least as new
   (:meth:`Destination.metadata_state`); otherwise the entity table is created, or columns added
   or widened losslessly, to the declared types (:meth:`Destination.ensure_table`), then the
   entity's rows in the metadata tables are replaced and its version recorded in one transaction
   (:meth:`Destination.replace_metadata`, which checks the version again under its lock: when a
   concurrent writer recorded one at least as new, ours is stale);
3. a transient destination error retries the entities not yet done (each commits on its own), a
   few times, then raises :class:`TransientDestinationError` like the record path.

Columns the metadata declares keep their type: the engine does not widen a declared column from
record values while the column holds what the metadata declares (it asks
:meth:`MetadataApplier.keeps` before widening), so a 200-character text sent for a String of
maxLength 160 fails its record with the reason instead of turning the column into nvarchar(max).
A column that exists with a type the declared one cannot replace losslessly (text that metadata now
calls DateTime, an integer column it calls Money) keeps its type: nothing is dropped, converted or
truncated, a warning is logged, and the column goes on as without metadata. See docs/metadata.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from shared.contract.metadata import (
    LOOKUP_TYPE_SUFFIX,
    LOOKUP_TYPES,
    Attribute,
    AttributeType,
    MetadataNotification,
    Option,
)
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.outcomes import BatchResult, Outcome
from shared.engine.ports import (
    ATTRIBUTE_METADATA,
    GLOBAL_OPTIONSET_METADATA,
    OPTIONSET_METADATA,
    STATE_METADATA,
    STATUS_METADATA,
    TARGET_METADATA,
    VERSION,
    Destination,
    EntityRefused,
    EnvironmentalDestinationError,
    ErrorClass,
    MetadataRows,
    TransientDestinationError,
    entity_table_problem,
)

log = logging.getLogger(__name__)

TEXT_BOUND_MAX = 4000  # String maxLength tops out at 4000 (NVARCHAR(n)); longer Memo text is unbounded
NAME_LENGTH = 128  # logical names (EntityName attributes, <lookup>_entitytype)
MONEY_DECIMALS = 4  # Money without a precision: Dataverse's most
DECIMAL_DECIMALS = 10  # Decimal without a precision: Dataverse's most
DECIMAL_PRECISION = 38

_INTEGER_TYPES = frozenset(
    {AttributeType.BIGINT, AttributeType.INTEGER, AttributeType.PICKLIST, AttributeType.STATE, AttributeType.STATUS}
)
# Types whose values are not one scalar column: no column (their values, if a publisher sends
# any, are typed from the values as without metadata). They are listed in AttributeMetadata.
NO_COLUMN_TYPES = frozenset(
    {
        AttributeType.VIRTUAL,
        AttributeType.PARTY_LIST,
        AttributeType.CALENDAR_RULES,
        AttributeType.MANAGED_PROPERTY,
        AttributeType.FILE,
        AttributeType.IMAGE,
    }
)
_NAME = ColumnType(Kind.TEXT, NAME_LENGTH)


def column_types(attr: Attribute) -> dict[str, ColumnType]:
    """The destination columns one attribute declares, with their logical types."""
    t, name = attr.type, attr.logicalName
    if t in NO_COLUMN_TYPES or name == VERSION:
        return {}  # versionnumber is a system column of every table
    if t in LOOKUP_TYPES:
        return {name: coltypes.GUID, name + LOOKUP_TYPE_SUFFIX: _NAME}
    if t in _INTEGER_TYPES:
        return {name: coltypes.INTEGER}
    if t is AttributeType.BOOLEAN:
        return {name: coltypes.BOOLEAN}
    if t is AttributeType.DOUBLE:
        return {name: coltypes.FLOAT}
    if t is AttributeType.DATETIME:
        return {name: coltypes.DATETIME}
    if t is AttributeType.UNIQUEIDENTIFIER:
        return {name: coltypes.GUID}
    if t in (AttributeType.MONEY, AttributeType.DECIMAL):
        default = MONEY_DECIMALS if t is AttributeType.MONEY else DECIMAL_DECIMALS
        scale = default if attr.precision is None else attr.precision
        return {name: ColumnType(Kind.DECIMAL, precision=DECIMAL_PRECISION, scale=scale)}
    if t is AttributeType.ENTITY_NAME:
        return {name: _NAME}
    if t in (AttributeType.STRING, AttributeType.MEMO):
        n = attr.maxLength
        return {name: ColumnType(Kind.TEXT, n) if n is not None and n <= TEXT_BOUND_MAX else coltypes.TEXT}
    # MultiSelectPicklist: the selected values as text ("1,3"), unbounded.
    return {name: coltypes.TEXT}


def declared_columns(n: MetadataNotification) -> dict[str, ColumnType]:
    out: dict[str, ColumnType] = {}
    for attr in n.metadata.attributes:
        out.update(column_types(attr))
    return out


def _labels(option: Option) -> list[tuple[bool, int | None, str | None]]:
    """(IsUserLocalizedLabel, LocalizedLabelLanguageCode, LocalizedLabel) rows; one NULL row if none."""
    if not option.labels:
        return [(False, None, None)]
    return [(lb.isUserLocalizedLabel, lb.languageCode, lb.label) for lb in option.labels]


def metadata_rows(n: MetadataNotification, declared: dict[str, ColumnType], now: datetime) -> MetadataRows:
    """The notification as rows of DES's metadata tables (column order: MetadataTable.insert_columns).

    A local option set is listed under its attribute's logical name (``OptionSetName`` =
    ``industrycode``, as DES did, so ``JOIN ... ON EntityName = 'account' AND OptionSetName =
    'industrycode' AND Option = account.industrycode`` works); a global one goes to
    GlobalOptionsetMetadata under its own name. State and status options go to StateMetadata and
    StatusMetadata only.
    """
    e = n.entity
    globals_: dict[str, list[tuple[object, ...]]] = {}
    local: list[tuple[object, ...]] = []
    states: list[tuple[object, ...]] = []
    statuses: list[tuple[object, ...]] = []
    targets: list[tuple[object, ...]] = []
    attributes: list[tuple[object, ...]] = []
    for a in n.metadata.attributes:
        name, t = a.logicalName, a.type
        metadata_id = a.metadataId.lower() if a.metadataId else None
        attributes.append((e, name, t.value, t.code, n.version, n.changedOn, metadata_id, a.precision, a.maxLength))
        targets.extend((e, name, entity, key) for entity, key in a.target_keys())
        os = a.optionSet
        if os is None:
            continue
        if os.isGlobal and t not in (AttributeType.STATE, AttributeType.STATUS):
            # Several attributes may share one (the contract checks they agree): its rows once.
            if os.name not in globals_:
                globals_[os.name] = [(os.name, o.value, *label) for o in os.options for label in _labels(o)]
            continue
        for o in os.options:
            for label in _labels(o):
                if t is AttributeType.STATE:
                    states.append((e, o.value, *label))
                elif t is AttributeType.STATUS:
                    statuses.append((e, o.state, o.value, *label))
                else:
                    local.append((e, name, o.value, *label))
    global_rows = [row for rows in globals_.values() for row in rows]
    return MetadataRows(
        entity=e,
        version=n.version,
        columns=columns_json(declared),
        now=now,
        global_option_sets=sorted(globals_),
        rows={
            GLOBAL_OPTIONSET_METADATA.name: global_rows,
            OPTIONSET_METADATA.name: local,
            STATE_METADATA.name: states,
            STATUS_METADATA.name: statuses,
            TARGET_METADATA.name: targets,
            ATTRIBUTE_METADATA.name: attributes,
        },
    )


def columns_json(declared: dict[str, ColumnType]) -> str:
    """Declared columns for the support table: ``{"name": ["text", 160, null, null], ...}``."""
    return json.dumps({c: [t.kind.value, t.length, t.precision, t.scale] for c, t in declared.items()}, sort_keys=True)


def parse_columns(text: str) -> dict[str, ColumnType]:
    return {c: ColumnType(Kind(k), n, p, s) for c, (k, n, p, s) in json.loads(text).items()}


def reduce_metadata(notifications: Iterable[MetadataNotification], result: BatchResult) -> list[MetadataNotification]:
    """The newest metadata notification per entity, in entity order; the others count as stale."""
    best: dict[str, MetadataNotification] = {}
    for n in notifications:
        cur = best.get(n.entity)
        if cur is None:
            best[n.entity] = n
            continue
        loser = cur if n.version > cur.version else n
        if loser is cur:
            best[n.entity] = n
        result.count(Outcome.STALE, loser.entity)
    return [best[e] for e in sorted(best)]


class MetadataApplier:
    """Applies metadata notifications to one destination and answers which columns keep their type."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self._declared: dict[str, dict[str, ColumnType]] = {}

    def begin_batch(self) -> None:
        """Forget what was read about declared columns: another process may have applied metadata."""
        self._declared.clear()

    def declared(self, entity: str) -> dict[str, ColumnType]:
        """Columns of ``entity`` its applied metadata declares, with their types (read once per batch)."""
        got = self._declared.get(entity)
        if got is None:
            state = self.destination.metadata_state(entity)
            got = self._declared[entity] = parse_columns(state[1]) if state is not None else {}
        return got

    def keeps(self, entity: str, column: str, current: ColumnType) -> bool:
        """Whether values must not widen ``column``: its metadata declares a type the column holds.

        Asked only where a value does not fit (the rare path), so it costs nothing otherwise.
        """
        declared = self.declared(entity).get(column)
        return declared is not None and coltypes.join(declared, current) == current

    def apply(
        self,
        notifications: Sequence[MetadataNotification],
        result: BatchResult,
        *,
        now: datetime,
        attempts: int,
        backoff_seconds: float,
        on_transient: Callable[[], None],
    ) -> dict[str, dict[str, ColumnType]]:
        """Apply a batch's metadata notifications; count one outcome each; return the tables' columns."""
        pending = reduce_metadata(notifications, result)
        catalogs: dict[str, dict[str, ColumnType]] = {}
        attempt = 1
        while pending:
            try:
                self._apply_one(pending[0], result, catalogs, now)
                pending = pending[1:]
            except Exception as exc:
                kind = self.destination.classify(exc)
                if kind is ErrorClass.ENVIRONMENTAL:
                    self._declared.clear()
                    on_transient()
                    if isinstance(exc, EnvironmentalDestinationError):
                        raise
                    raise EnvironmentalDestinationError(f"{self.destination.dialect}: {exc}") from exc
                if kind is not ErrorClass.TRANSIENT:
                    # About this entity's tables (or this notification): it fails alone, counted and
                    # named in the log (metadata has no record to failure-log; the next version
                    # replaces it); the batch goes on.
                    failed, pending = pending[0], pending[1:]
                    log.warning("%s metadata v%s failed (%s error): %s", failed.entity, failed.version,
                                kind.value, exc)  # fmt: skip
                    result.count(Outcome.FAILED, failed.entity)
                    continue
                log.warning("transient destination error applying metadata (attempt %s of %s): %s",
                            attempt, attempts, exc)  # fmt: skip
                self._declared.clear()
                on_transient()
                if attempt >= attempts:
                    raise TransientDestinationError(str(exc)) from exc
                time.sleep(backoff_seconds * 2 ** (attempt - 1))
                attempt += 1
        return catalogs

    def _apply_one(
        self,
        n: MetadataNotification,
        result: BatchResult,
        catalogs: dict[str, dict[str, ColumnType]],
        now: datetime,
    ) -> None:
        dest = self.destination
        entity = n.entity
        state = dest.metadata_state(entity)
        if state is not None and state[0] >= n.version:
            result.count(Outcome.STALE, entity)
            return
        declared = declared_columns(n)
        limit = dest.max_identifier_length
        too_long = sorted(c for c in declared if len(c) > limit)
        for c in too_long:
            del declared[c]
        if too_long:
            log.warning("%s metadata v%s: columns %s are longer than %s's %s-character limit: not created",
                        entity, n.version, too_long, dest.dialect, limit)  # fmt: skip
        table = dest.layout.entity_table(entity)
        problem = entity_table_problem(dest, table)
        if problem is not None:
            raise EntityRefused(problem)
        if len(table) > limit:
            log.warning("%s metadata v%s: table name %r is longer than %s's %s-character limit: not created",
                        entity, n.version, table, dest.dialect, limit)  # fmt: skip
        else:
            catalog = catalogs[table] = dest.ensure_table(table, declared)
            kept = {c: (str(catalog.get(c)), str(t)) for c, t in declared.items() if catalog.get(c) != t}
            if kept:
                log.warning("%s metadata v%s: columns keep their type (only lossless changes), (column, declared): %s",
                            entity, n.version, kept)  # fmt: skip
        if dest.replace_metadata(metadata_rows(n, declared, now)):
            result.count(Outcome.APPLIED, entity)
            self._declared[entity] = declared
            log.info("%s metadata v%s applied: %s columns declared", entity, n.version, len(declared))
        else:
            result.count(Outcome.STALE, entity)
