"""Run the simulator's HTTP app on a loopback port: in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from shared.tools.dataverse_sim.app import create_app
from shared.tools.dataverse_sim.simulator import DEFAULT_TOKEN, DataverseSimulator

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator served on ``url``: ``api`` is its Web API root, ``token`` a bearer token it accepts."""

    sim: DataverseSimulator
    url: str
    base: str

    @property
    def environment_url(self) -> str:
        """What a profile's "Dataverse environment URL" is: the base whose /api/data/v9.2/ serves the API."""
        return f"{self.url}{self.base}"

    @property
    def api(self) -> str:
        return f"{self.url}{self.base}/api/data/v9.2/"

    @property
    def token(self) -> str:
        return DEFAULT_TOKEN if DEFAULT_TOKEN in self.sim.tokens else next(iter(self.sim.tokens))

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json", "OData-Version": "4.0",
                "OData-MaxVersion": "4.0", **extra}


@contextmanager
def run_simulator(sim: DataverseSimulator | None = None, *, port: int | None = None, base: str = "",
                  **kwargs: Any) -> Iterator[RunningSimulator]:
    """Serve ``sim`` (or a new ``DataverseSimulator(**kwargs)``) on 127.0.0.1 in a daemon thread.

    ``base`` is an optional path prefix (e.g. ``"/org1"``) to show that clients follow any base.
    """
    simulator = sim or DataverseSimulator(**kwargs)
    config = uvicorn.Config(create_app(simulator), host=HOST, port=port or free_port(), log_level="warning",
                            lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dataverse-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Dataverse simulator did not start")
        time.sleep(0.02)
    try:
        yield RunningSimulator(simulator, f"http://{HOST}:{config.port}", base.rstrip("/"))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        simulator.close()


def serve_forever(sim: DataverseSimulator, port: int) -> None:
    uvicorn.run(create_app(sim), host=HOST, port=port, log_level="info", access_log=False)
