"""The sync engine: notifications in, one outcome each out, the destination converging to the source.

Per batch:
1. reduce to the newest notification per (entity, recordId); the others are stale;
2. per entity, decide column types from the values (create, add, widen losslessly) and fail the
   records whose values do not fit;
3. in one destination transaction, each entity in a savepoint: one set-based write with the version
   guard and tombstones; a write the database rejects is bisected to find the bad records (a dialect
   whose writes isolate records, SQLite's row by row, needs no savepoint: it reports the records it
   refused);
4. every error is classified by the destination (:class:`~shared.engine.ports.ErrorClass`):
   record-level errors are bisected to the culprit record; entity-level errors (DDL refused, too
   many columns, a reserved or colliding table name) fail that entity's records and the other
   entities commit; transient errors (connection, deadlock, timeout) retry the whole batch a few
   times, then raise :class:`TransientDestinationError` so the caller can redeliver or park it;
   environmental errors (log full, quota, read-only, cancelled) raise
   :class:`EnvironmentalDestinationError` at once: park and retry later, never failure-log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import compress, groupby, repeat
from operator import attrgetter, is_, itemgetter, not_

from shared.contract.models import ChangeType, Lookup, Notification
from shared.contract.parse import ParsedBatch, parse_bodies
from shared.engine import coltypes
from shared.engine.coltypes import ColumnType, Kind
from shared.engine.metadata import MetadataApplier
from shared.engine.outcomes import BatchResult, Outcome, RecordFailure
from shared.engine.ports import (
    SYSTEM_COLUMNS,
    Applied,
    Destination,
    EnvironmentalDestinationError,
    ErrorClass,
    Transaction,
    TransientDestinationError,
    WriteSet,
    entity_table_problem,
)

log = logging.getLogger(__name__)

LOOKUP_TYPE_SUFFIX = "_entitytype"
_DDL_ROUNDS = 4  # ensure_table rounds per batch: columns only grow and widen, so this settles fast
_DELETE_RANK = {ChangeType.CREATE: 0, ChangeType.UPDATE: 0, ChangeType.DELETE: 1}
_ENTITY = attrgetter("entity")
_RECORD_ID = attrgetter("recordId")
_CHANGE_TYPE = attrgetter("changeType")
_VERSION = attrgetter("version")
_CHANGED_ON = attrgetter("changedOn")
_ATTRIBUTES = attrgetter("attributes")
_SECOND = itemgetter(1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _transpose(attrs: Sequence[Mapping[str, object]], names: list[str]) -> list[list[object]]:
    """Column lists of values, absent attributes as None, from row dicts.

    The attributes are the full record state, so the records of one entity nearly always carry the
    same names: then one C-level itemgetter pass per record does it; otherwise dict.get per value.
    """
    if not names:
        return []
    if len(names) == 1:
        return [[a.get(names[0]) for a in attrs]]
    try:
        rows = list(map(itemgetter(*names), attrs))
    except KeyError:
        return [[a.get(name) for a in attrs] for name in names]
    return [list(col) for col in zip(*rows, strict=True)]


def reduce_batch(notifications: Iterable[Notification], result: BatchResult) -> tuple[list[Notification], list[str]]:
    """The reduction buffer: keep the newest notification per record, count the rest as stale.

    Equal versions are the same source event delivered twice; a delete wins a tie so the outcome
    does not depend on arrival order. Returns the winners (in the order their records first
    arrived) and their record ids in lower case, so that no later step lowers them again.
    """
    best: dict[tuple[str, str], Notification] = {}
    stale: Counter[str] = Counter()  # tallied here, counted once per entity
    for n in notifications:
        key = (n.entity, n.recordId.lower())
        cur = best.get(key)
        if cur is None:
            best[key] = n
            continue
        if (n.version, _DELETE_RANK[n.changeType]) > (cur.version, _DELETE_RANK[cur.changeType]):
            best[key] = n
            loser = cur
        else:
            loser = n
        stale[loser.entity] += 1
    for entity, n_stale in stale.items():
        result.count(Outcome.STALE, entity, n_stale)
    return list(best.values()), list(map(_SECOND, best))


@dataclass
class _Group:
    """One entity's winners, prepared for writing."""

    entity: str
    table: str
    upserts: list[Notification]
    deletes: list[Notification]
    upsert_ids: list[str]  # the record ids of ``upserts`` in lower case, in the same order
    delete_ids: list[str]  # the same for ``deletes``
    columns: dict[str, list[object]] = field(default_factory=dict)  # attribute column -> values
    profiles: dict[str, _ColumnStats] = field(default_factory=dict)
    catalog: dict[str, ColumnType] = field(default_factory=dict)

    def parts(self, lo: int, hi: int) -> tuple[slice, slice]:
        """The upserts and the deletes among the group's records ``lo:hi`` (upserts first, then deletes)."""
        nu = len(self.upserts)
        return slice(min(lo, nu), min(hi, nu)), slice(max(lo - nu, 0), max(hi - nu, 0))

    def fail(self, keep: list[bool], reason_at: dict[int, str], result: BatchResult) -> None:
        for i, reason in reason_at.items():
            if keep[i]:
                keep[i] = False
                _record_failure(result, self.upserts[i], reason)


def _record_failure(result: BatchResult, n: Notification, reason: str) -> None:
    result.count(Outcome.FAILED, n.entity)
    result.failures.append(RecordFailure(n, reason))


class SyncEngine:
    """Applies batches of notifications to one destination."""

    def __init__(
        self,
        destination: Destination,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.destination = destination
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self.clock = clock
        self._catalog: dict[str, dict[str, ColumnType]] = {}
        self.metadata = MetadataApplier(destination)  # entity metadata notifications (engine/metadata.py)

    # ----------------------------------------------------------------------------------- entry
    def apply_bodies(self, bodies: Iterable[bytes | str]) -> BatchResult:
        """Parse Service Bus message bodies and apply them."""
        return self.apply_parsed(parse_bodies(bodies))

    def apply_parsed(self, parsed: ParsedBatch) -> BatchResult:
        result = BatchResult(received=parsed.received - len(parsed.unprocessable))
        result.add_unprocessable(parsed.unprocessable)
        for entity, received in Counter(map(_ENTITY, parsed.notifications)).items():
            result.receive(entity, received)
        if parsed.metadata:  # before the records: they meet the columns their metadata declares
            for m in parsed.metadata:
                result.receive(m.entity)
            self._catalog.update(
                self.metadata.apply(
                    parsed.metadata,
                    result,
                    now=self.clock(),
                    attempts=self.attempts,
                    backoff_seconds=self.backoff_seconds,
                    on_transient=self._reset_after_transient,
                )
            )
        self._apply(parsed.notifications, result)
        return result

    def apply_notifications(self, notifications: Sequence[Notification]) -> BatchResult:
        return self.apply_parsed(ParsedBatch(list(notifications), [], len(notifications)))

    # ---------------------------------------------------------------------------------- phases
    def _apply(self, notifications: list[Notification], result: BatchResult) -> None:
        self.metadata.begin_batch()
        winners, ids = reduce_batch(notifications, result)
        if not winners:
            return
        groups = self._group(winners, ids, result)
        for attempt in range(1, self.attempts + 1):
            # Each attempt prepares afresh from the reduced groups; only a committed attempt counts.
            trial = BatchResult()
            try:
                prepared = [p for p in (self._prepare(g, trial) for g in groups) if p is not None]
                self._write(prepared, trial)
            except Exception as exc:
                kind = self.destination.classify(exc)
                if kind is ErrorClass.ENVIRONMENTAL:
                    self._reset_after_transient()
                    if isinstance(exc, EnvironmentalDestinationError):
                        raise
                    raise EnvironmentalDestinationError(f"{self.destination.dialect}: {exc}") from exc
                if kind is not ErrorClass.TRANSIENT:
                    raise
                log.warning(
                    "transient destination error (attempt %s of %s): %s", attempt, self.attempts, exc
                )
                self._reset_after_transient()
                if attempt == self.attempts:
                    raise TransientDestinationError(str(exc)) from exc
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                continue
            result.merge(trial)
            return

    def _reset_after_transient(self) -> None:
        self._catalog.clear()
        self.destination.reset()

    def _group(self, winners: list[Notification], ids: list[str], result: BatchResult) -> list[_Group]:
        layout = self.destination.layout
        limit = self.destination.max_identifier_length
        entities = list(map(_ENTITY, winners))
        parts = [(entities[0], winners, ids)]
        if len(set(entities)) > 1:  # positions by entity (a stable sort keeps arrival order), in C
            parts = []
            for entity, at in groupby(sorted(range(len(winners)), key=entities.__getitem__), entities.__getitem__):
                pos = list(at)
                parts.append((entity, list(map(winners.__getitem__, pos)), list(map(ids.__getitem__, pos))))
        groups = []
        for entity, ns, rids in parts:
            dead = list(map(is_, map(_CHANGE_TYPE, ns), repeat(ChangeType.DELETE)))
            if any(dead):
                live = list(map(not_, dead))
                ups, up_ids = list(compress(ns, live)), list(compress(rids, live))
                dels, del_ids = list(compress(ns, dead)), list(compress(rids, dead))
            else:
                ups, up_ids, dels, del_ids = ns, rids, [], []
            g = _Group(entity, layout.entity_table(entity), ups, dels, up_ids, del_ids)
            if len(g.table) > limit:
                reason = (
                    f"table name {g.table!r} is longer than {self.destination.dialect}'s "
                    f"{limit}-character identifier limit"
                )
                for n in g.upserts + g.deletes:
                    _record_failure(result, n, reason)
                continue
            problem = entity_table_problem(self.destination, g.table)
            if problem is not None:
                for n in g.upserts + g.deletes:
                    _record_failure(result, n, problem)
                continue
            groups.append(g)
        return groups

    # ---------------------------------------------------------------- types and schema evolution
    def _prepare(self, raw: _Group, result: BatchResult) -> _Group | None:
        """Columnar values, column types (creating/adding/widening columns), value checks.

        None when the entity's table cannot be used (its records failed with the reason)."""
        upserts, upsert_ids = self._fitting(raw, result)
        g = _Group(raw.entity, raw.table, upserts, list(raw.deletes), upsert_ids, list(raw.delete_ids))
        keep = [True] * len(g.upserts)
        g.columns = self._columnize(g, keep, result)
        try:
            catalog = self._catalog.get(g.table)
            if catalog is None:
                # Evidence first: the table as the catalog has it now, so that types are decided
                # against its columns (a short string fits a declared NVARCHAR(160): no widening).
                catalog = self.destination.existing_columns(g.table)
                if catalog is not None:
                    self._catalog[g.table] = catalog
            wanted = self._wanted_types(g, keep)
            for _ in range(_DDL_ROUNDS):
                if catalog is not None and not _needs_ddl(catalog, wanted, self.destination):
                    break
                catalog = self._catalog[g.table] = self.destination.ensure_table(g.table, wanted)
                # Another worker may have created or widened a column meanwhile, with a type our
                # values do not fit (our integer beyond 2**53 into its new float column): decide
                # again against the live columns, so the result does not depend on who came first.
                wanted = self._wanted_types(g, keep)
        except Exception as exc:
            if self.destination.classify(exc) in (ErrorClass.TRANSIENT, ErrorClass.ENVIRONMENTAL):
                raise
            # The table cannot be used, created or changed (whatever the records' values): an
            # entity-level failure. The other entities of the batch still commit.
            reason = f"{self.destination.dialect} refused table {g.table!r}: {exc}"
            log.warning("entity %s: %s", g.entity, reason)
            for n in g.upserts + g.deletes:
                _record_failure(result, n, reason[:1000])
            return None
        assert catalog is not None
        g.catalog = catalog
        self._check_values(g, keep, result)
        if not all(keep):
            g.upserts = list(compress(g.upserts, keep))
            g.upsert_ids = list(compress(g.upsert_ids, keep))
            g.columns = {c: list(compress(v, keep)) for c, v in g.columns.items()}
        return g

    def _fitting(self, g: _Group, result: BatchResult) -> tuple[list[Notification], list[str]]:
        """The upserts whose columns can fit one table of this database (and their ids); the others
        fail alone."""
        room = self.destination.max_columns - len(SYSTEM_COLUMNS)
        if max(map(len, filter(None, map(_ATTRIBUTES, g.upserts))), default=0) <= room // 2:
            return list(g.upserts), list(g.upsert_ids)  # no record is wide enough to check
        fitting, fitting_ids = [], []
        for n, rid in zip(g.upserts, g.upsert_ids, strict=True):
            attrs = n.attributes or {}
            if len(attrs) > room // 2:  # the rare wide record: count its lookups' extra columns too
                width = len(attrs) + sum(1 for v in attrs.values() if type(v) is Lookup)
                if width > room:
                    reason = (
                        f"record needs {width} attribute columns; a {self.destination.dialect} table holds "
                        f"{self.destination.max_columns} columns, {len(SYSTEM_COLUMNS)} of them ours"
                    )
                    _record_failure(result, n, reason)
                    continue
            fitting.append(n)
            fitting_ids.append(rid)
        return fitting, fitting_ids

    def _columnize(self, g: _Group, keep: list[bool], result: BatchResult) -> dict[str, list[object]]:
        if not g.upserts:
            return {}
        attrs = [n.attributes or {} for n in g.upserts]
        names = sorted(set().union(*attrs))
        columns: dict[str, list[object]] = {}
        limit = self.destination.max_identifier_length
        for name, values in zip(names, _transpose(attrs, names), strict=True):
            if name in columns:
                continue  # <lookup>_entitytype, sent as an attribute too: the collision failed above
            profile = g.profiles[name] = _ColumnStats.of(values)  # one pass over the values: kept
            if Lookup in profile.pytypes:
                # A lookup keeps its Lookup objects (typed GUID; bound as the id) and adds
                # <attr>_entitytype with the target's logical name.
                et = name + LOOKUP_TYPE_SUFFIX
                if et in names:
                    g.fail(
                        keep,
                        {i: f"attribute {et!r} collides with lookup {name!r}" for i, a in enumerate(attrs) if et in a},
                        result,
                    )
                columns[name] = values
                columns[et] = [v.logicalName if type(v) is Lookup else None for v in values]  # type: ignore[union-attr]
            else:
                columns[name] = values
        for name in [c for c in columns if len(c) > limit]:
            values = columns.pop(name)
            g.profiles.pop(name, None)
            reasons = {
                i: f"column name {name!r} is longer than {self.destination.dialect}'s "
                f"{limit}-character identifier limit"
                for i, v in enumerate(values)
                if v is not None
            }
            g.fail(keep, reasons, result)
        return columns

    def _wanted_types(self, g: _Group, keep: list[bool]) -> dict[str, ColumnType]:
        """Per column: the type its non-null values show, joined with the current column type."""
        catalog = self._catalog.get(g.table, {})
        wanted: dict[str, ColumnType] = {}
        for name, values in g.columns.items():
            profile = g.profiles.get(name)
            if profile is None:  # made here (<lookup>_entitytype), or kept from _columnize: the values are the same
                profile = g.profiles[name] = _ColumnStats.of(values)
            current = catalog.get(name)
            shown = profile.shown_type(values, keep, current)
            if shown is None:
                continue  # only NULLs so far: no column until a value shows its type
            if current is None:
                # Unknown here (a new column, or a table this engine has not seen): a column the
                # entity's metadata declares is wanted as declared, never as this batch's values show.
                wanted[name] = self.metadata.declared(g.entity).get(name, shown)
            elif shown == current or _all_fit(values, keep, current):
                # 42 fits a float column and 4.0 an integer column (the same number): widen only
                # for a value the column cannot hold exactly, never rewrite a table needlessly.
                wanted[name] = current
            else:
                joined = coltypes.join(current, shown)
                # A column the entity's metadata declares keeps its type: a misfit fails its record.
                keeps = self.metadata.keeps
                if joined and self.destination.can_widen(current, joined) and not keeps(g.entity, name, current):
                    current = joined
                wanted[name] = current
        return wanted

    def _check_values(self, g: _Group, keep: list[bool], result: BatchResult) -> None:
        """Coerce values to their column types; fail the records whose values do not fit."""
        for name, values in g.columns.items():
            column = g.catalog.get(name)
            profile = g.profiles[name]
            if not profile.pytypes:
                continue
            reasons: dict[int, str] = {}
            if column is None:
                # A value with no column: its column could not be created (a misfit in a new column).
                reasons = {
                    i: f"attribute {name!r}: no writable column for it (the column could not be created, "
                    "or it is generated, computed, identity or rowversion in the destination)"
                    for i, v in enumerate(values)
                    if v is not None and keep[i]
                }
                g.fail(keep, reasons, result)
                continue
            if column.kind is Kind.GUID and profile.pytypes == {Lookup}:
                values[:] = [None if v is None else v.id.lower() for v in values]  # type: ignore[attr-defined]
            elif not profile.exact(column, values):
                # A column the metadata declares integer takes JSON integers only: 9007199254740993.0
                # arrives as the double ...992, so an integral float may already be rounded (issue 12).
                inexact = float in profile.pytypes or Decimal in profile.pytypes
                strict_int = column.kind is Kind.INTEGER and inexact
                strict_int = strict_int and self.metadata.keeps(g.entity, name, column)
                for i, v in enumerate(values):
                    if v is None:
                        continue
                    fraction = type(v) is float or type(v) is Decimal
                    ok, bound = (False, v) if strict_int and fraction else coltypes.coerce(column, v)
                    if ok:
                        values[i] = bound
                    else:
                        why = (
                            "declared by the entity's metadata"
                            if self.metadata.keeps(g.entity, name, column)
                            else "and the column cannot be widened losslessly"
                        )
                        what = coltypes.describe(v)
                        reasons[i] = f"attribute {name!r}: {what} does not fit column of type {column} {why}"
                        values[i] = None  # the record fails; keep the column's values uniform
            for i, reason in self.destination.check_values(column, values).items():
                reasons.setdefault(i, f"attribute {name!r}: {reason}")
            g.fail(keep, reasons, result)

    # ------------------------------------------------------------------------------------ write
    def _write(self, groups: list[_Group], result: BatchResult) -> None:
        now = self.clock()
        with self.destination.transaction() as tx:
            for g in groups:
                if not g.upserts and not g.deletes:
                    continue
                if g.upserts:
                    live = tx.columns(g.table)
                    if live is not None and live != g.catalog:
                        # Another worker added or widened columns since we looked: the row must
                        # still be the full state, so write NULL to the columns we did not know.
                        self._catalog[g.table] = g.catalog = live
                self._write_isolating(tx, g, list(g.catalog), 0, len(g.upserts) + len(g.deletes), now, result)

    def _write_isolating(
        self,
        tx: Transaction,
        g: _Group,
        names: list[str],
        lo: int,
        hi: int,
        now: datetime,
        result: BatchResult,
    ) -> None:
        """Write the group's records ``lo:hi`` (its upserts, then its deletes), bisecting a rejected write."""
        if lo >= hi:
            return
        ws = self._write_set(g, names, lo, hi, now)
        try:
            if tx.isolates_records:
                applied = tx.write(ws)
            else:
                with tx.savepoint():
                    applied = tx.write(ws)
        except Exception as exc:
            kind = self.destination.classify(exc)
            if kind in (ErrorClass.TRANSIENT, ErrorClass.ENVIRONMENTAL):
                raise
            items = (g.upserts + g.deletes)[lo:hi]
            if kind is ErrorClass.ENTITY:
                # About the table, not a record: bisecting would only fail every record one by one.
                reason = f"{self.destination.dialect} refused writes to table {g.table!r}: {exc}"
                log.warning("entity %s: %s", g.entity, reason)
                for n in items:
                    _record_failure(result, n, reason[:1000])
                return
            if len(items) == 1:
                reason = f"{self.destination.dialect} rejected the record: {exc}"
                _record_failure(result, items[0], reason[:1000])
                return
            log.info("write of %s %s records rejected; isolating: %s", len(items), g.entity, exc)
            half = lo + len(items) // 2
            self._write_isolating(tx, g, names, lo, half, now, result)
            self._write_isolating(tx, g, names, half, hi, now, result)
            return
        self._count(g, lo, hi, applied, result)

    @staticmethod
    def _write_set(g: _Group, names: list[str], lo: int, hi: int, now: datetime) -> WriteSet:
        """The write set of the group's records ``lo:hi`` (upserts first, then deletes)."""
        nu = len(g.upserts)
        ups, dels_part = g.parts(lo, hi)
        rows: list[tuple[object, ...]] = []
        if ups.stop > ups.start:
            empty: list[object] = [None] * nu
            cols = [g.columns.get(c, empty) for c in names]
            versions = list(map(_VERSION, g.upserts))
            if ups.start == 0 and ups.stop == nu:
                rows = list(zip(g.upsert_ids, versions, *cols, strict=True))
            else:  # a part, while isolating a rejected record
                rows = list(zip(g.upsert_ids[ups], versions[ups], *(c[ups] for c in cols), strict=True))
        dels = list(zip(g.delete_ids[dels_part], map(_VERSION, g.deletes[dels_part]), strict=True))
        return WriteSet(g.entity, g.table, names, rows, dels, now)

    @staticmethod
    def _count(g: _Group, lo: int, hi: int, applied: Applied, result: BatchResult) -> None:
        """Count the outcomes of the group's records ``lo:hi`` (upserts first, then deletes)."""
        ups, dels = g.parts(lo, hi)
        upserts, upsert_ids = g.upserts[ups], g.upsert_ids[ups]
        deletes, delete_ids = g.deletes[dels], g.delete_ids[dels]
        counts = result.entity(g.entity)
        applied_n = stale_n = 0  # tallied here, counted once per outcome
        if applied.rejected:  # refused by the database, record by record (isolates_records)
            rejected = applied.rejected
            for n, rid in zip(upserts + deletes, upsert_ids + delete_ids, strict=True):
                reason = rejected.get(rid)
                if reason is not None:
                    _record_failure(result, n, reason[:1000])
            kept = list(map(not_, map(rejected.__contains__, upsert_ids)))
            upserts, upsert_ids = list(compress(upserts, kept)), list(compress(upsert_ids, kept))
            kept = list(map(not_, map(rejected.__contains__, delete_ids)))
            deletes, delete_ids = list(compress(deletes, kept)), list(compress(delete_ids, kept))
        for group, ids, done in ((upserts, upsert_ids, applied.upserted), (deletes, delete_ids, applied.deleted)):
            if not group:
                continue
            if len(done) == len(group):  # the common case: everything took effect
                took = group
            else:
                hit = list(map(done.__contains__, ids))
                took = list(compress(group, hit))
                stale_n += len(group) - len(took)
            if took:
                applied_n += len(took)
                newest = max(map(_CHANGED_ON, took))
                if counts.last_changed_on is None or newest > counts.last_changed_on:
                    counts.last_changed_on = newest
        if applied_n:
            result.count(Outcome.APPLIED, g.entity, applied_n)
        if stale_n:
            result.count(Outcome.STALE, g.entity, stale_n)


_NONE = type(None)


@dataclass(slots=True)
class _ColumnStats:
    """What a column's values are, from one C-level pass (plus min/max when there are integers)."""

    pytypes: set[type]
    lo: int = 0
    hi: int = 0

    @classmethod
    def of(cls, values: list[object]) -> _ColumnStats:
        pytypes = set(map(type, values))
        pytypes.discard(_NONE)
        if int in pytypes:
            ints = [v for v in values if type(v) is int]
            return cls(pytypes, min(ints), max(ints))  # type: ignore[type-var,arg-type]
        return cls(pytypes)

    def _types(self) -> set[ColumnType]:
        out = set()
        for t in self.pytypes:
            if t is int:
                out.add(coltypes.INTEGER)
                if not (coltypes.INT64_MIN <= self.lo and self.hi <= coltypes.INT64_MAX):
                    out.add(coltypes.DECIMAL)
            else:
                out.add(coltypes.value_type_of(t))
        return out

    def shown_type(self, values: list[object], keep: list[bool], current: ColumnType | None) -> ColumnType | None:
        types = self._types()
        if not types:
            return None
        if current is None:
            if len(types) == 1:
                return next(iter(types))
            # A new column with mixed types: the first kept record's type decides what joins it;
            # values that join nothing fail later.
            first = next((v for v, k in zip(values, keep, strict=True) if v is not None and k), None)
            if first is None:
                return None
            shown = coltypes.value_type(first)
        else:
            shown = current
        for t in sorted(types, key=lambda c: c.kind.value):
            joined = coltypes.join(shown, t)
            if joined is not None:
                shown = joined
        return shown

    def exact(self, column: ColumnType, values: list[object]) -> bool:
        """Fast path: every non-null value already is what the column stores (no coercion)."""
        kind, pytypes = column.kind, self.pytypes
        if kind is Kind.TEXT:
            if pytypes != {str}:
                return False
            return column.length is None or max(map(len, filter(None, values))) <= column.length  # type: ignore[arg-type]
        if kind is Kind.INTEGER:
            return pytypes == {int} and coltypes.INT64_MIN <= self.lo and self.hi <= coltypes.INT64_MAX
        if kind is Kind.FLOAT:
            return pytypes == {float}
        if kind is Kind.DECIMAL:
            return column.precision is None and pytypes <= {int, float, Decimal}  # DECIMAL(p, s): coerce checks digits
        if kind is Kind.BOOLEAN:
            return pytypes == {bool}
        return False


def _all_fit(values: list[object], keep: list[bool], column: ColumnType) -> bool:
    """Whether every non-null value of a record still in the batch fits ``column`` as it is."""
    return all(coltypes.coerce(column, v)[0] for v, k in zip(values, keep, strict=True) if k and v is not None)


def _needs_ddl(catalog: dict[str, ColumnType], wanted: dict[str, ColumnType], dest: Destination) -> bool:
    for name, t in wanted.items():
        cur = catalog.get(name)
        if cur is None or (cur != t and dest.can_widen(cur, t)):
            return True
    return False
