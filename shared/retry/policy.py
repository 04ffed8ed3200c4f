"""A retry policy: how often and how far apart a parked batch is retried (DES's retry settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.profiles.model import Profile


@dataclass(frozen=True)
class RetryPolicy:
    """A profile's retry settings; the settings' (``DES_RETRY_*``) in single-destination mode."""

    count: int = 12  # 0-20: retries after the first failure; 0 logs the failure at once
    interval_seconds: float = 5.0  # 0-3600
    inline_wait_seconds: float = 30.0  # longest one invocation waits for a due time (no long sleeps)

    def __post_init__(self) -> None:
        if not 0 <= self.count <= 20:
            raise ValueError(f"retry count {self.count} is outside 0-20")
        if not 0 <= self.interval_seconds <= 3600:
            raise ValueError(f"retry interval {self.interval_seconds} s is outside 0-3600")
        if self.inline_wait_seconds < 0:
            raise ValueError("the inline wait cannot be negative")

    @classmethod
    def of_profile(cls, profile: Profile, inline_wait_seconds: float = 30.0) -> RetryPolicy:
        """A profile's own retryCount and retryIntervalSeconds (profile mode)."""
        return cls(profile.retryCount, float(profile.retryIntervalSeconds), inline_wait_seconds)
