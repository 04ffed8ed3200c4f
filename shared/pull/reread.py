"""The push re-read in the function app (issue 13; docs/dataverse-push.md, "The re-read in the
function app"): which Dataverse source answers for a Dataverse message, by its organization.

A Dataverse message without a full post-image (a partial Update, a truncated message, no
``versionnumber``), a Delete without a pre-image and every Associate/Disassociate need the record
read at the source. The Service Bus function parses a batch once, before the fan-out, so the
source is found by the message's ``OrganizationId``: the active export profiles of that
organization with a Dataverse source (the first by id answers; they read one environment). Without
one the message stays unprocessable with the reason (register the post-image).

What :class:`~shared.source.dataverse.push_reread.SourceReread` is given:

* the Web API client of that source (:meth:`SourceWork.client`: one per environment and
  credential, shared with the change-tracking units);
* the entity's columns from that profile's change-tracking cursor (what pull selects, so push
  writes the same columns), else read from the entity's definition (before the first pass);
* the cursor's high-water mark as the start of a verified delete's scan;
* the versions the destinations hold, read by key (:meth:`Destination.held_versions`,
  :meth:`Destination.rows_with`) in every active profile of the organization exporting the entity
  (a delete's version must be above the row in each of them). A destination that cannot be read
  now is left out, with a warning: its own notifications are parked by the fan-out anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from shared.engine.ports import Destination
from shared.profiles.fanout import EngineRegistry
from shared.profiles.model import DataverseSource, Profile, ProfileState
from shared.source.dataverse import mapping as m
from shared.source.dataverse.client import DataverseClient
from shared.source.dataverse.cursors import CursorStore
from shared.source.dataverse.push import Reread, StoreDown
from shared.source.dataverse.push_reread import MetadataInfos, SourceReread, keyed_held, keyed_link_ids
from shared.store.base import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CACHED = 64  # organizations x profile revisions kept (each keeps its metadata and relationships)


class ProfileRereads:
    """``reread_for`` of :func:`~shared.source.dataverse.push.parse_messages` over the profiles."""

    def __init__(
        self,
        *,
        for_org: Callable[[str], Sequence[Profile]],  # ProfileDirectory.for_org (cached for a few seconds)
        engines: EngineRegistry,
        cursors: CursorStore,
        client_for: Callable[[DataverseSource], DataverseClient],
    ) -> None:
        self._for_org = for_org
        self.engines = engines
        self.cursors = cursors
        self.client_for = client_for
        self._cache: dict[tuple[str, tuple[tuple[str, int], ...]], SourceReread] = {}
        self._lock = threading.Lock()

    def __call__(self, organization_id: str) -> Reread | None:
        org = organization_id.lower()
        try:
            found_profiles = self._for_org(org)
        except StoreUnavailable as exc:
            # The batch is held whole by the handler when the store is down (docs/deploy.md); the
            # messages needing a re-read cannot wait in it (they are not notifications yet), so they
            # are kept as unprocessable with this reason, replayable, and the pull pass catches them.
            log.warning("push re-read: organization %s: the admin store is unavailable (%s)", org, exc)
            return StoreDown(org, str(exc))
        profiles = sorted((p for p in found_profiles if p.state is ProfileState.ACTIVE), key=lambda p: p.id)
        sources = [p for p in profiles if p.source is not None]
        if not sources:
            return None
        key = (org, tuple((p.id, p.revision) for p in profiles))
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        made = self._reread(org, profiles, sources)
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            return self._cache.setdefault(key, made)

    # ---------------------------------------------------------------------------------- parts
    def _reread(self, org: str, profiles: list[Profile], sources: list[Profile]) -> SourceReread:
        source = sources[0].source
        assert source is not None
        client = self.client_for(source)
        pulled = frozenset(e for p in sources for e in p.pulled)
        metadata = MetadataInfos(client, org, pulled)

        def infos(entity: str) -> m.EntityInfo | None:
            if entity not in pulled:
                return None
            for p in sources:
                if entity in p.pulled:
                    state = self.cursors.get(p.id, entity)
                    if state is not None and state.info is not None:
                        return state.info
            return metadata(entity)  # before the profile's first change-tracking pass

        def high_water(entity: str) -> int:
            marks = [s.high_water for p in sources if entity in p.pulled
                     if (s := self.cursors.get(p.id, entity)) is not None]  # fmt: skip
            return max(marks, default=0)

        def held(entity: str, record_id: str) -> int | None:
            versions = [v for v in self._each(profiles, entity, lambda d: keyed_held(d)(entity, record_id))
                        if v is not None]  # fmt: skip
            return max(versions, default=None)

        def link_ids(entity: str, pair: Mapping[str, str]) -> list[tuple[str, int]]:
            out: dict[str, int] = {}
            for rows in self._each(profiles, entity, lambda d: keyed_link_ids(d)(entity, pair)):
                for rid, version in rows:
                    out[rid] = max(version, out.get(rid, version))
            return sorted(out.items())

        return SourceReread(client, org, infos, high_water=high_water, held=held, link_ids=link_ids)

    def _each(self, profiles: list[Profile], entity: str, read: Callable[[Destination], T]) -> list[T]:
        """``read(destination)`` in each active profile exporting ``entity``, under its engine's lock."""
        out: list[T] = []
        for p in profiles:
            if not p.includes(entity):
                continue
            try:
                slot = self.engines.slot(p)
                with slot.lock:
                    out.append(read(slot.engine.destination))
            except Exception as exc:  # that profile's own notifications are parked by the fan-out
                log.warning("push re-read: profile %s: the version its destination holds for %s could not be "
                            "read (%s: %s); left out", p.id, entity, type(exc).__name__, exc)  # fmt: skip
        return out

