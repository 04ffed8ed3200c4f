"""What the retry code needs, as narrow dependencies: a :class:`Router` (targets, retry policies,
reject sinks, metrics) and the blob stores and clock of :class:`RetryDeps`.

Single-destination mode and profile mode are two routers (:mod:`shared.routing`); the retry code
has one path for both.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.contract.parse import ParsedBatch
    from shared.engine.outcomes import BatchResult
    from shared.profiles.fanout import FanOutResult
    from shared.profiles.model import Profile
    from shared.rejects import RejectSink
    from shared.retry.policy import RetryPolicy
    from shared.storage.account import Storage
    from shared.storage.blobs import RetryBatch, RetryState
    from shared.storage.claimcheck import Resolution


class Disposition(enum.Enum):
    APPLY = "apply"
    SKIP = "skip"  # the profile is no longer active: the notifications are skipped for it
    ORPHANED = "orphaned"  # the profile was deleted: nowhere to apply them


@dataclass(frozen=True)
class ParkedTarget:
    """Where a parked batch goes now. ``profile`` is None for a router's fixed target."""

    profile_id: str
    disposition: Disposition
    profile: Profile | None = None


class Router(Protocol):
    """Where notifications of a profile go, and what goes with that profile."""

    @property
    def default_profile_id(self) -> str:
        """The profile of a retry blob that names none (written before profiles existed)."""

    @property
    def inline_wait_seconds(self) -> float:
        """Longest one retry invocation waits for a due time."""

    def target(self, profile_id: str) -> ParkedTarget:
        """The profile as it is now (raises StoreUnavailable when that cannot be read)."""

    def apply(self, target: ParkedTarget, parsed: ParsedBatch) -> BatchResult:
        """Apply a batch to the target's destination; destination errors propagate."""

    def policy_for(self, profile_id: str) -> RetryPolicy: ...

    def apply_batch(self, parsed: ParsedBatch, resolution: Resolution, retries: RetryDeps | None) -> FanOutResult:
        """The whole batch through the fan-out (a batch held for routing: :func:`shared.retry.park.hold_batch`)."""

    def policy_of(self, profile: Profile) -> RetryPolicy: ...

    def rejects_of(self, profile_id: str) -> RejectSink:
        """Where one profile's failed records and unprocessable bodies go."""

    def record(
        self, profile_id: str, result: BatchResult, pending: int, skipped: Mapping[str, int] | None = None
    ) -> None:
        """Final outcomes and the pending-gauge change of one profile."""


class Lease(Protocol):
    def renew(self) -> None: ...

    def release(self) -> None: ...


class RetryBlobs(Protocol):
    """``retry/``: parked batches with their state in metadata, leased while processed
    (:class:`~shared.storage.blobs.RetryStore`; ``tests/support/fakes.py`` has an in-memory fake)."""

    def park(
        self, profile_id: str, notifications: list[dict[str, Any]], *, reason: str, now: datetime, not_before: datetime
    ) -> tuple[str, bool]: ...

    def state(self, name: str) -> RetryState: ...

    def read(self, name: str, *, lease: Any = None, state: RetryState | None = None) -> RetryBatch: ...

    def update(self, state: RetryState, changes: dict[str, str], *, lease: Any = None) -> None: ...

    def lease(self, name: str, seconds: int = 60) -> Lease | None: ...

    def delete(self, name: str, *, lease: Any = None) -> bool: ...

    def states(self, profile_id: str | None = None) -> Iterator[RetryState]: ...


class Payloads(Protocol):
    """``data/``: claim-check payloads, deleted once their notifications committed or were parked."""

    def get(self, blob: str, *, size: int | None = None, sha256: str | None = None) -> bytes: ...

    def delete(self, blobs: Iterable[str]) -> int: ...


class UndecryptableKeeper(Protocol):
    """``unprocessablemessages/``: where a retry blob that cannot be read is kept as it is."""

    def keep_undecryptable(self, profile_id: str, source_container: str, source_name: str, reason: str) -> str: ...


@dataclass(frozen=True)
class RetryDeps:
    """The retry code's dependencies: the retry, payload and unprocessable blob stores, the router
    and the clock."""

    retries: RetryBlobs
    payloads: Payloads
    unprocessable: UndecryptableKeeper
    router: Router
    clock: Callable[[], datetime]

    @classmethod
    def of(cls, storage: Storage, router: Router) -> RetryDeps:
        return cls(storage.retries, storage.payloads, storage.unprocessable, router, storage.clock)
