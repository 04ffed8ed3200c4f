"""Parking: on a transient destination error, the notifications go to an encrypted retry blob."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.contract.parse import ParsedBatch
from shared.engine.outcomes import BatchResult
from shared.engine.ports import EnvironmentalDestinationError
from shared.retry.batch import M_COUNTED, doc_of, fail_all, items_of, short, unprocessable_too
from shared.retry.policy import RetryPolicy
from shared.retry.ports import RetryBlobs, RetryDeps
from shared.storage.blobs import RETRY, RetryState, iso
from shared.storage.claimcheck import Resolution

if TYPE_CHECKING:
    from shared.profiles.fanout import ProfileOutcome
    from shared.rejects import RejectSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParkedBlob:
    """A retry blob written (or found: a redelivery) for one profile's notifications."""

    name: str
    state: RetryState
    newly_counted: int  # what this delivery adds to the pending gauge (0: an earlier one counted it)


def park_docs(
    deps: RetryDeps, profile_id: str, docs: list[dict[str, Any]], exc: BaseException, policy: RetryPolicy
) -> ParkedBlob:
    """Write ``docs`` to ``retry/<profile>/<batch key>.json``; raises when the blob cannot be written
    (then the host redelivers the batch)."""
    now = deps.clock()
    not_before = now + timedelta(seconds=policy.interval_seconds)
    name, created = deps.retries.park(profile_id, docs, reason=short(exc), now=now, not_before=not_before)
    state = deps.retries.state(name)
    counted = state.raw.get(M_COUNTED) == "1"
    log.warning(
        "destination unavailable (%s); %s notifications parked in %s/%s (%s), first retry after %s",
        short(exc), len(docs), RETRY, name, "new" if created else "already there", iso(not_before),
    )  # fmt: skip
    return ParkedBlob(name, state, 0 if counted else len(docs))


def mark_counted(deps: RetryDeps, parked: ParkedBlob) -> None:
    """After the metrics call: the blob's notifications are in the pending gauge (no double count
    when the batch is redelivered)."""
    if not parked.newly_counted:
        return
    try:
        deps.retries.update(parked.state, {M_COUNTED: "1"})
    except Exception as err:  # a worker holding its lease: the resolution will count it
        log.info("could not mark %s as counted: %s", parked.name, short(err))


def park_batch(
    deps: RetryDeps,
    parsed: ParsedBatch,
    resolution: Resolution,
    exc: BaseException,
    *,
    profile_id: str | None = None,
    policy: RetryPolicy | None = None,
) -> BatchResult:
    """A fixed target's whole batch, after a transient error: park the valid notifications in
    ``retry/`` (claim checks as their references); report the final outcomes.

    The returned result holds the outcomes that are final now (unprocessables; with a retry count
    of 0, every notification as failed); the parked ones are pending and reported when they
    resolve. Raises only when the blob cannot be written: then the host redelivers the batch.
    """
    router = deps.router
    profile_id = profile_id or router.default_profile_id
    policy = policy or router.policy_for(profile_id)
    result = unprocessable_too(BatchResult(), parsed.unprocessable)
    rejects = router.rejects_of(profile_id)
    items = items_of(parsed.notifications, parsed.metadata)
    if policy.count == 0 and items and not isinstance(exc, EnvironmentalDestinationError):
        failed = fail_all(
            parsed.notifications, f"destination unavailable (retry count 0): {short(exc)}", parsed.metadata
        )
        deps.payloads.delete(resolution.blobs)  # the full notifications are parked with the failures
        result.merge(failed)
        rejects.failures(result.failures)
        rejects.unprocessable(result.unprocessables)
        router.record(profile_id, result, 0)
        return result
    parked = park_docs(deps, profile_id, [doc_of(n, resolution) for n in items], exc, policy) if items else None
    rejects.unprocessable(result.unprocessables)
    router.record(profile_id, result, parked.newly_counted if parked else 0)
    if parked is not None:
        mark_counted(deps, parked)
    return result


def park_profile(deps: RetryDeps, outcome: ProfileOutcome) -> ParkedBlob | None:
    """Fan-out: one profile's destination (or secret) failed. Its routed notifications are parked
    under the profile, in full (the payload blobs of claim checks are shared by the batch's profiles
    and go once every profile committed or parked), with the profile's retry policy; with retry
    count 0 they fail at once (``outcome.result``). Sets ``outcome.parked`` (what the pending gauge
    gains) and returns the blob, if one was written."""
    assert outcome.error is not None
    exc, policy = outcome.error, deps.router.policy_of(outcome.profile)
    if policy.count == 0 and not isinstance(exc, EnvironmentalDestinationError):
        reason = f"destination unavailable (retry count 0): {short(exc)}"
        outcome.result = fail_all(outcome.notifications, reason, outcome.metadata)
        outcome.parked = 0
        return None
    docs = [doc_of(n) for n in items_of(outcome.notifications, outcome.metadata)]
    parked = park_docs(deps, outcome.profile.id, docs, exc, policy)
    outcome.parked = parked.newly_counted
    return parked


# ------------------------------------------------------------------ held for routing (issue 10)
HELD_FOLDER = "held-for-routing"  # retry/<this>/: whole batches waiting for the admin store (never a GUID)
HELD_BACKOFF_MAX_S = 600.0  # a held batch is tried at least every 10 minutes while the store is down


def hold_batch(
    retries: RetryBlobs,
    unrouted: RejectSink,
    parsed: ParsedBatch,
    resolution: Resolution,
    exc: BaseException,
    *,
    now: datetime,
    interval_seconds: float,
) -> int:
    """The admin store cannot be reached (an environmental error, or its settings point nowhere): the
    batch cannot be routed to profiles, but it is healthy. Its valid notifications are parked whole in
    ``retry/held-for-routing/<batch key>.json`` (claim checks as their references: the payload blobs
    stay), its unprocessable bodies are kept under ``unrouted/``, and the messages complete, so no
    delivery attempt is spent and nothing is dead-lettered. The retry path routes the held batch
    through the full fan-out once the store answers (:mod:`shared.retry.attempt`), trying again with
    a growing interval (at most :data:`HELD_BACKOFF_MAX_S`) for as long as it takes. Nothing is
    counted now (the metrics live in the unreachable store); the fan-out counts the batch when it
    runs. Returns how many notifications were held; raises when the blob cannot be written (then the
    host redelivers)."""
    items = items_of(parsed.notifications, parsed.metadata)
    if items:
        docs = [doc_of(n, resolution) for n in items]
        name, created = retries.park(
            HELD_FOLDER, docs, reason=short(exc), now=now, not_before=now + timedelta(seconds=interval_seconds)
        )
        log.error(
            "admin store unavailable (%s): %s notifications held in %s/%s (%s) until it answers; the "
            "messages complete, nothing is dead-lettered", short(exc), len(docs), RETRY, name,
            "new" if created else "already there",
        )  # fmt: skip
    unrouted.unprocessable(parsed.unprocessable)
    return len(items)
