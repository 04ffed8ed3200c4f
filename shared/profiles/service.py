"""Profile operations behind the admin API: create, update, activate, delete, validate, test,
metrics, failures and re-sync. HTTP-free: errors are :class:`ProfileError` with a status code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.contract.parse import ParsedBatch, parse_bodies
from shared.destinations import Layout
from shared.engine.outcomes import BatchResult
from shared.profiles.checks import CheckReport, check_destination
from shared.profiles.fanout import FanOut
from shared.profiles.model import (
    DataverseSource,
    Profile,
    ProfileCreate,
    ProfileState,
    ProfileUpdate,
    definition_of,
    new_profile_id,
)
from shared.profiles.ports import (
    FailureEntry,
    FailureLogReader,
    ParkedFailureReader,
    ProfileBlobs,
    SasLink,
    SourcePort,
    SourceReadError,
    SourceTable,
)
from shared.profiles.secrets import SecretError, SecretResolver
from shared.store.base import (
    DuplicateName,
    ProfileExists,
    ProfileMetrics,
    RevisionConflict,
    Store,
    StoredProfile,
    utcnow,
)

log = logging.getLogger(__name__)


class ProfileError(Exception):
    status = 400

    def __init__(self, detail: str, *, report: CheckReport | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.report = report


class NotFound(ProfileError):
    status = 404


class Conflict(ProfileError):
    status = 409


class PreconditionFailed(ProfileError):
    status = 412


class Invalid(ProfileError):
    status = 422


class Unavailable(ProfileError):
    status = 503


Checker = Callable[[str, Layout], CheckReport]


@dataclass
class ResyncSelection:
    start: datetime
    end: datetime
    entities: Sequence[str] = ()
    record_ids: Sequence[str] = ()


@dataclass
class ResyncReport:
    selected: int = 0  # distinct failed records in the selection
    missing: int = 0  # no parked notification left (retention expired, or already re-synced)
    from_source: int = 0  # re-read from the Dataverse source by id (current state, or gone: a delete)
    result: BatchResult = field(default_factory=BatchResult)


class ProfileService:
    def __init__(
        self,
        store: Store,
        resolver: SecretResolver,
        *,
        checker: Checker = check_destination,
        fanout: FanOut | None = None,
        failure_log: FailureLogReader | None = None,
        parked: ParkedFailureReader | None = None,
        blobs: ProfileBlobs | None = None,
        on_change: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        source: SourcePort | None = None,
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.checker = checker
        self.fanout = fanout
        self.failure_log = failure_log
        self.parked = parked
        self.blobs = blobs
        self.on_change = on_change or (lambda _pid: None)
        self.clock = clock
        self.source = source  # the Dataverse source (set by the composition root)

    # --------------------------------------------------------------------------------- reads
    def get(self, profile_id: str) -> Profile:
        s = self.store.get_profile(profile_id.lower())
        if s is None:
            raise NotFound(f"no profile with id {profile_id.lower()}")
        return Profile.from_stored(s)

    def list_profiles(self, *, organization_id: str | None = None, state: ProfileState | None = None) -> list[Profile]:
        states = [state.value] if state is not None else None
        return [
            Profile.from_stored(s) for s in self.store.list_profiles(organization_id=organization_id, states=states)
        ]

    # -------------------------------------------------------------------------------- writes
    def _policy(self, destination: str) -> None:
        try:
            self.resolver.check_allowed(destination)
        except SecretError as exc:
            raise Invalid(str(exc)) from exc

    def create(self, body: ProfileCreate, *, check: bool = True) -> Profile:
        self._policy(body.destination)
        now = self.clock()
        pid = (body.id or new_profile_id()).lower()
        state = body.state
        if state is ProfileState.ACTIVE and check:
            report = self._live_check(body.destination, Layout(body.schema_, body.prefix, body.writeDeleteLog))
            self._check_source(report, body.source, body.organizationId, _tables(body.entities, body.relationships))
            if not report.ok:
                raise Invalid(_failed_summary("cannot create and activate: the check failed", report), report=report)
        if state is ProfileState.ACTIVE and body.source is not None:
            self._need_source()
        stored = StoredProfile(
            pid, body.name, body.organizationId.lower(), state.value, definition_of(body), 1, now, now
        )
        try:
            created = self.store.create_profile(stored)
        except ProfileExists as exc:
            raise Conflict(str(exc)) from exc
        except DuplicateName as exc:
            raise Conflict(f"a profile named {body.name!r} already exists (names are unique, ignoring case)") from exc
        log.info("profile %s (%s) created, state %s", pid, body.name, state.value)
        self.on_change(pid)
        profile = Profile.from_stored(created)
        if profile.state is ProfileState.ACTIVE:
            self._start_source(profile)
        return profile

    def update(self, profile_id: str, body: ProfileUpdate, *, if_match: int | None = None) -> Profile:
        current = self.get(profile_id)
        destination = body.destination if body.destination is not None else current.destination
        if body.destination is not None:
            self._policy(body.destination)
        stored = StoredProfile(
            current.id,
            body.name,
            body.organizationId.lower(),
            current.state.value,
            definition_of(body, destination),
            current.revision,
            current.createdAt,
            current.updatedAt,
        )
        updated = self._save(stored, if_match if if_match is not None else current.revision)
        log.info("profile %s updated to revision %s", current.id, updated.revision)
        profile = Profile.from_stored(updated)
        before = current.source.environmentUrl.lower() if current.source is not None else None
        after = profile.source.environmentUrl.lower() if profile.source is not None else None
        if self.source is not None and before is not None and before != after:
            self.source.forget(profile.id)  # the cursors' links point at the old environment
            log.info("profile %s: source environment changed; its cursors start over", profile.id)
            if profile.state is ProfileState.ACTIVE:
                self._start_source(profile)
        return profile

    def _save(self, stored: StoredProfile, expected: int) -> StoredProfile:
        try:
            saved = self.store.update_profile(stored, expected_revision=expected)
        except RevisionConflict as exc:
            raise PreconditionFailed(str(exc)) from exc
        except DuplicateName as exc:
            raise Conflict(f"a profile named {stored.name!r} already exists (names are unique, ignoring case)") from exc
        self.on_change(stored.id)
        return saved

    def _set_state(self, p: Profile, state: ProfileState) -> Profile:
        stored = p.to_stored()
        stored = StoredProfile(
            stored.id, stored.name, stored.organization_id, state.value, stored.definition,
            stored.revision, stored.created_at, stored.updated_at,
        )  # fmt: skip
        return Profile.from_stored(self._save(stored, p.revision))

    def activate(self, profile_id: str, *, check: bool = True) -> Profile:
        p = self.get(profile_id)
        if p.state is ProfileState.ACTIVE:
            return p
        self._policy(p.destination)
        if check:
            report = self._live_check(p.destination, p.layout)
            self._check_source(report, p.source, p.organizationId, p.pulled)
            if not report.ok:
                raise Invalid(_failed_summary("cannot activate: the check failed", report), report=report)
        if p.source is not None:
            self._need_source()
        activated = self._set_state(p, ProfileState.ACTIVE)
        log.info("profile %s activated", p.id)
        self._start_source(activated)
        return activated

    # -------------------------------------------------------------------------------- source
    def _need_source(self) -> None:
        if self.source is None:
            raise Unavailable("the profile has a Dataverse source, but this app runs none (profile mode only)")

    def _check_source(
        self, report: CheckReport, source: DataverseSource | None, organization_id: str, tables: Sequence[str]
    ) -> None:
        if source is None:
            return
        if self.source is None:
            report.add("source", False, "this app runs no Dataverse source (profile mode only)")
            return
        report.checks.extend(self.source.check(source, organization_id, tables).checks)

    def _start_source(self, profile: Profile) -> None:
        """Enqueue the initial sync (never run inside the request); a failed enqueue is sent again by
        the poll timer, which sends a unit for every table whose cursor is not at rest."""
        if profile.source is None or self.source is None:
            return
        try:
            self.source.activated(profile)
        except Exception as exc:
            log.warning("profile %s: enqueueing the initial sync failed (%s: %s); the poll timer sends it",
                        profile.id, type(exc).__name__, exc)  # fmt: skip

    def source_tables(self, source: DataverseSource) -> list[SourceTable]:
        """The tables of a source environment a profile could export (the console's table picker)."""
        self._need_source()
        assert self.source is not None
        try:
            return self.source.tables(source)
        except SourceReadError as exc:
            if exc.transient:
                raise Unavailable(f"the source could not be read: {exc.reason}") from exc
            raise Invalid(f"the source could not be read: {exc.reason}") from exc

    def source_status(self, profile_id: str) -> tuple[Profile, list[Any]]:
        p = self.get(profile_id)
        if p.source is None:
            raise NotFound(f"profile {p.id} has no source: it takes notifications from Service Bus only")
        self._need_source()
        assert self.source is not None
        return p, self.source.status(p)

    def deactivate(self, profile_id: str) -> Profile:
        p = self.get(profile_id)
        if p.state is ProfileState.INACTIVE:
            return p
        if p.state is ProfileState.DRAFT:
            raise Conflict("the profile is a draft and was never activated: nothing to deactivate")
        deactivated = self._set_state(p, ProfileState.INACTIVE)
        log.info("profile %s deactivated", p.id)
        return deactivated

    def delete(self, profile_id: str) -> int:
        """Delete the profile, its metrics and its blobs (never the destination's tables)."""
        p = self.get(profile_id)
        removed = 0
        if self.blobs is not None:
            try:
                removed = self.blobs.delete_profile(p.id)
            except Exception as exc:
                raise Unavailable(
                    f"could not delete the profile's blobs ({type(exc).__name__}); the profile is kept: try again"
                ) from exc
        if not self.store.delete_profile(p.id):
            raise NotFound(f"no profile with id {p.id}")
        if self.source is not None:
            self.source.forget(p.id)
        log.info("profile %s deleted with its metrics and %s blobs", p.id, removed)
        self.on_change(p.id)
        return removed

    # -------------------------------------------------------------------------------- checks
    def _live_check(self, destination: str, layout: Layout) -> CheckReport:
        report = CheckReport()
        try:
            dsn = self.resolver.resolve(destination)
        except SecretError as exc:
            report.add("secret", False, str(exc))
            return report
        report.add("secret", True, "resolved")
        live = self.checker(dsn, layout)
        report.checks.extend(live.checks)
        return report

    def validate(self, body: ProfileCreate) -> CheckReport:
        """Field rules beyond the schema, name uniqueness, then the live destination check."""
        report = CheckReport()
        try:
            self.resolver.check_allowed(body.destination)
        except SecretError as exc:
            report.add("destination", False, str(exc))
            return report
        report.add("destination", True, "allowed")
        clash = [
            s for s in self.store.list_profiles()
            if s.name_key == body.name.casefold() and s.id != (body.id or "").lower()
        ]  # fmt: skip
        report.add("name", not clash, "unique" if not clash else f"a profile named {body.name!r} already exists")
        live = self._live_check(body.destination, Layout(body.schema_, body.prefix, body.writeDeleteLog))
        report.checks.extend(live.checks)
        self._check_source(report, body.source, body.organizationId, _tables(body.entities, body.relationships))
        return report

    def test(self, profile_id: str) -> CheckReport:
        p = self.get(profile_id)
        report = self._live_check(p.destination, p.layout)
        self._check_source(report, p.source, p.organizationId, p.pulled)
        return report

    # ------------------------------------------------------------------------------- metrics
    def metrics(self, profile_id: str) -> tuple[Profile, ProfileMetrics]:
        p = self.get(profile_id)
        return p, self.store.metrics(p.id)

    # ------------------------------------------------------------------------------ failures
    def failures(self, profile_id: str, start: datetime, end: datetime) -> Iterator[FailureEntry]:
        p = self.get(profile_id)
        if self.failure_log is None:
            raise Unavailable("the failure log (Blob storage) is not configured for this app")
        return self.failure_log.entries(p.id, start, end)

    def failure_links(self, profile_id: str, start: datetime, end: datetime) -> list[SasLink] | None:
        p = self.get(profile_id)
        if self.failure_log is None:
            raise Unavailable("the failure log (Blob storage) is not configured for this app")
        return self.failure_log.links(p.id, start, end)

    def resync(self, profile_id: str, selection: ResyncSelection) -> ResyncReport:
        """Re-sync the failed records selected from the failure log.

        A profile with a Dataverse source re-reads each record's current state from the source by
        id (a record that is gone becomes a delete, versioned above what the destination holds);
        records of tables the source does not read, and profiles without a source, re-apply their
        parked failed notifications. The engine's version guard skips what has become stale.
        """
        p = self.get(profile_id)
        from_source = p.source is not None and self.source is not None
        if self.failure_log is None or (self.parked is None and not from_source):
            raise Unavailable("re-sync needs the failure log and parked failures (Blob storage), not configured")
        if self.fanout is None:
            raise Unavailable("re-sync needs the sync engine, not configured for this app")
        if p.state is not ProfileState.ACTIVE:
            raise Conflict(f"the profile is {p.state.value}: activate it before re-syncing")
        entities = set(selection.entities)
        ids = {r.lower() for r in selection.record_ids}
        keys: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for e in self.failure_log.entries(p.id, selection.start, selection.end):
            if (entities and e.entity not in entities) or (ids and e.record_id.lower() not in ids):
                continue
            if e.key not in seen:
                seen.add(e.key)
                keys.append(e.key)
        report = ResyncReport(selected=len(keys))
        if not keys:
            return report
        rest = keys
        if from_source:
            assert self.source is not None
            try:
                records = self.source.reread(p, keys)
            except SourceReadError as exc:
                if exc.transient:
                    raise Unavailable(f"the source could not be read: {exc.reason}") from exc
                raise Conflict(f"the source refused the re-read: {exc.reason}") from exc
            rest = records.unread
            unread = set(rest)
            reread = [k for k in keys if k not in unread]
            report.from_source = len(reread)
            if records.bodies:
                self._apply_resync(p, report, parse_bodies(records.bodies))
                failed = {f.notification.key for f in report.result.failures}
                done = [k for k in reread if k not in failed]
                if done and self.parked is not None:
                    self.parked.resolved(p.id, done)  # their parked copies are superseded
        if rest and self.parked is not None:
            found = self.parked.get(p.id, rest)
            report.missing = len(rest) - len(found)
            if found:
                before = len(report.result.failures)
                self._apply_resync(p, report, ParsedBatch(list(found.values()), [], len(found)))
                new_failures = report.result.failures[before:]
                done = [n.key for n in found.values() if not any(f.notification.key == n.key for f in new_failures)]
                if done:
                    self.parked.resolved(p.id, done)
        elif rest:
            report.missing = len(rest)
        log.info(
            "profile %s re-sync: %s selected, %s from the source, %s missing, %s", p.id, report.selected,
            report.from_source, report.missing, report.result.counts(),
        )  # fmt: skip
        return report

    def _apply_resync(self, p: Profile, report: ResyncReport, parsed: ParsedBatch) -> None:
        assert self.fanout is not None
        try:
            result = self.fanout.apply_batch_to_profile(p, parsed)
        except Exception as exc:
            raise Unavailable(f"the destination did not take the re-sync: {type(exc).__name__}: {exc}") from exc
        report.result.merge(result)


def _tables(entities: Sequence[str], relationships: Sequence[str]) -> list[str]:
    return list(dict.fromkeys((*entities, *relationships)))


def _failed_summary(head: str, report: CheckReport) -> str:
    return head + ": " + "; ".join(f"{c.name}: {c.detail}" for c in report.failed())
