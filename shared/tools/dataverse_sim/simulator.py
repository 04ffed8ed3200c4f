"""The simulator facade: organization state, bearer tokens, injected faults, push messages.

:class:`DataverseSimulator` is what tests and the CLI hold. Its control methods are the Python-level
control API; ``/_sim/...`` HTTP endpoints (shared/tools/dataverse_sim/app.py) call the same methods.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.tools.dataverse_sim.generate import populate, random_changes
from shared.tools.dataverse_sim.push import PushEmitter
from shared.tools.dataverse_sim.state import Clock, DataverseState, Values
from shared.tools.dataverse_sim.switches import PushOptions, Switches
from shared.tools.dataverse_sim.values import SimError

DEFAULT_TOKEN = "dataverse-simulator-token"  # noqa: S105 - a simulator's made-up bearer token

# Reference B: service protection errors (Web API error.code and message).
THROTTLE = {
    "requests": ("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."),
    "time": ("0x80072321", "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds "
                           "over time window of 300 seconds. Decrease number of concurrent requests or reduce the "
                           "duration of requests and try again later."),
    "concurrency": ("0x80072326", "Number of concurrent requests exceeded the limit of 52."),
}
Measure = Literal["requests", "time", "concurrency"]


@dataclass
class Faults:
    """Injected faults, consumed by the next data requests (control endpoints never count)."""

    throttle_left: int = 0
    throttle_retry_after: int = 30
    throttle_measure: Measure = "requests"
    fail_left: int = 0
    fail_status: int = 503
    # A sliding-window request limit per token (None: off), like the 6000/300 s service protection.
    rate_limit: int | None = None
    rate_window_seconds: float = 300.0
    # Concurrency limit (None: off): requests beyond it get 429 0x80072326 at once.
    concurrency_limit: int | None = None
    latency_seconds: float = 0.0
    recent: dict[str, deque[float]] = field(default_factory=dict)
    in_flight: int = 0


class DataverseSimulator:
    """A Dataverse organization served over the Web API (see the package docstring)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        records: int = 20,
        switches: Switches | None = None,
        push: PushOptions | None = None,
        push_path: Path | None = None,
        clock: Clock | None = None,
        tokens: dict[str, float | None] | None = None,
        require_auth: bool = True,
        org_name: str = "simorg",
        org_url: str | None = None,
    ) -> None:
        self.state = DataverseState(seed=seed, switches=switches, clock=clock, org_name=org_name, org_url=org_url)
        populate(self.state, records)
        self.faults = Faults()
        self.require_auth = require_auth
        # token -> expiry (time.time() seconds) or None for never
        self.tokens: dict[str, float | None] = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: None}
        self.requests = 0
        self._lock = threading.Lock()
        self.push = PushEmitter(self.state, push or PushOptions(), path=push_path)
        self._churn_stop = threading.Event()
        self._churn: threading.Thread | None = None

    # ------------------------------------------------------------------------------- control API
    @property
    def switches(self) -> Switches:
        return self.state.switches

    def set_switches(self, **values: Any) -> None:
        with self.state.lock:
            self.state.switches.update(values)

    def throttle_next(self, count: int, *, retry_after: int = 30, measure: Measure = "requests") -> None:
        with self._lock:
            self.faults.throttle_left = count
            self.faults.throttle_retry_after = retry_after
            self.faults.throttle_measure = measure

    def fail_next(self, count: int, *, status: int = 503) -> None:
        with self._lock:
            self.faults.fail_left = count
            self.faults.fail_status = status

    def set_limits(self, *, rate_limit: int | None = None, rate_window_seconds: float = 300.0,
                   concurrency_limit: int | None = None, latency_seconds: float = 0.0) -> None:
        with self._lock:
            self.faults.rate_limit = rate_limit
            self.faults.rate_window_seconds = rate_window_seconds
            self.faults.concurrency_limit = concurrency_limit
            self.faults.latency_seconds = latency_seconds

    def add_token(self, token: str, expires_in: float | None = None) -> None:
        with self._lock:
            self.tokens[token] = None if expires_in is None else time.time() + expires_in

    def expire_tokens(self, token: str | None = None) -> None:
        """Bearer tokens expire (all, or one): their next request gets 401."""
        with self._lock:
            for name in [token] if token else list(self.tokens):
                if name in self.tokens:
                    self.tokens[name] = time.time() - 1

    def expire_delta_tokens(self, entity: str | None = None) -> None:
        self.state.expire_delta_tokens(entity)

    def set_read_depth(self, entity: str, depth: str) -> None:
        """The caller's Read privilege depth on a table: Global (organization), Deep, Local, Basic or None."""
        if depth not in {"Global", "Deep", "Local", "Basic", "None"}:
            raise ValueError(f"unknown privilege depth {depth!r}")
        with self.state.lock:
            self.state.entity(entity)
            self.state.read_depth[entity] = depth

    def truth(self, entity: str) -> dict[str, Values]:
        return self.state.truth(entity)

    def random_changes(self, count: int, seed: int | None = None) -> list[str]:
        rng = random.Random(seed) if seed is not None else None
        with self.state.lock:
            return random_changes(self.state, count, rng)

    def start_churn(self, per_second: float, seed: int | None = None) -> None:
        """Live changes in the background: about ``per_second`` random changes a second until
        :meth:`stop_churn` (for the demo and change-to-row latency measurements)."""
        self.stop_churn()
        if per_second <= 0:
            return
        rng = random.Random(seed)
        self._churn_stop = stop = threading.Event()

        def run() -> None:
            while not stop.wait(1.0 / per_second):
                with self.state.lock:
                    random_changes(self.state, 1, rng)

        self._churn = threading.Thread(target=run, name="dataverse-simulator-churn", daemon=True)
        self._churn.start()

    def stop_churn(self) -> None:
        self._churn_stop.set()
        if self._churn is not None:
            self._churn.join(timeout=5)
            self._churn = None

    # ------------------------------------------------------------------------------- request gate
    def check_auth(self, authorization: str | None) -> str:
        """The caller's token; SimError(401) when missing, unknown or expired."""
        if not self.require_auth:
            return "anonymous"
        org = self.state.organization
        challenge = (f"Bearer authorization_uri=https://login.microsoftonline.com/{org.organization_id}/oauth2/"
                     f"authorize, resource_id={org.url}/")
        if not authorization or not authorization.lower().startswith("bearer "):
            raise SimError(401, "0x80072560", "No bearer token was sent.", {"WWW-Authenticate": challenge})
        token = authorization[7:].strip()
        with self._lock:
            known = token in self.tokens
            expiry = self.tokens.get(token)
        if not known:
            raise SimError(401, "0x80072560", "The bearer token is not valid.",
                           {"WWW-Authenticate": f'{challenge}, error="invalid_token"'})
        if expiry is not None and expiry <= time.time():
            raise SimError(401, "0x80072560", "The access token has expired.",
                           {"WWW-Authenticate": f'{challenge}, error="invalid_token", '
                                                f'error_description="The access token expired"'})
        return token

    def admit(self, token: str) -> None:
        """Service protection and injected faults for one data request (after authentication)."""
        with self._lock:
            self.requests += 1
            faults = self.faults
            if faults.throttle_left > 0:
                faults.throttle_left -= 1
                raise self._throttled(faults.throttle_measure, faults.throttle_retry_after)
            if faults.fail_left > 0:
                faults.fail_left -= 1
                raise SimError(faults.fail_status, "0x80040216",
                               f"An unexpected error occurred (injected by the Dataverse simulator, "
                               f"status {faults.fail_status}).")
            if faults.concurrency_limit is not None and faults.in_flight >= faults.concurrency_limit:
                raise self._throttled("concurrency", 1)
            if faults.rate_limit is not None:
                now = time.monotonic()
                window = faults.recent.setdefault(token, deque())
                while window and window[0] <= now - faults.rate_window_seconds:
                    window.popleft()
                if len(window) >= faults.rate_limit:
                    wait = max(1, int(window[0] + faults.rate_window_seconds - now + 0.999))
                    raise self._throttled("requests", wait)
                window.append(now)
            faults.in_flight += 1

    def release(self) -> None:
        with self._lock:
            self.faults.in_flight = max(0, self.faults.in_flight - 1)

    @staticmethod
    def _throttled(measure: Measure, retry_after: int) -> SimError:
        code, message = THROTTLE[measure]
        return SimError(429, code, message, {"Retry-After": str(retry_after)})

    def close(self) -> None:
        self.stop_churn()
        self.push.close()
