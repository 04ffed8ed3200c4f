"""Start a real Azurite (the Azure Storage emulator, npm ``azurite`` from ``node_modules``) for tests and the demo.

One starter for everyone: the pytest fixture (tests/support/azurite.py), the demo and the storage
benchmark all call :func:`running_azurite`. Azurite listens on free loopback ports chosen by the
OS (port 0, read back from its start-up lines, so two runs never race for a port), keeps its data
in a temporary ``--location`` and is stopped (and that folder removed) on exit.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
BIN_ENV = "DES_AZURITE_BIN"  # an azurite executable elsewhere (otherwise node_modules/.bin/azurite)
ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development account key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENS = re.compile(
    r"Azurite (Blob|Queue|Table) service (?:is )?successfully listen(?:s|ing) (?:on|at) https?://[^:/]+:(\d+)"
)


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not start."""


@dataclass(frozen=True)
class Azurite:
    """A running Azurite: where it listens and how to connect."""

    blob_port: int
    queue_port: int
    location: Path
    host: str = "127.0.0.1"

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{self.host}:{self.queue_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
        )


def azurite_executable() -> Path:
    """The azurite command: ``$DES_AZURITE_BIN`` or the project's ``node_modules/.bin/azurite``."""
    given = os.environ.get(BIN_ENV)
    path = Path(given) if given else ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise AzuriteError(
            f"Azurite is not installed at {path}: run `npm ci` in {ROOT} (scripts/setup.sh does it; "
            "package.json pins azurite), or point DES_AZURITE_BIN at an azurite executable"
        )
    if shutil.which("node") is None and not given:
        raise AzuriteError("Azurite needs Node.js (`node` is not on PATH): install nodejs and npm")
    return path


def _die_with_parent() -> None:
    """Linux: Azurite gets SIGTERM if the process that started it dies without stopping it (a killed test run)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own loopback Azurite
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP status (400/403) is an answer: the service is up
    except OSError:
        return False


@contextmanager
def running_azurite(location: Path | None = None, *, timeout: float = 60.0) -> Iterator[Azurite]:
    """Start Azurite (blob, queue and table services) and yield where it listens; stop it afterwards."""
    exe = azurite_executable()
    own_location = location is None
    workdir = Path(tempfile.mkdtemp(prefix="des-azurite-")) if location is None else location
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(exe),
        "--blobHost", "127.0.0.1", "--blobPort", "0",
        "--queueHost", "127.0.0.1", "--queuePort", "0",
        "--tableHost", "127.0.0.1", "--tablePort", "0",
        "--location", str(workdir),
        "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry",
    ]
    proc = subprocess.Popen(  # noqa: S603 - fixed arguments, our own executable
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - a single prctl call, nothing that can deadlock
    )
    ports: dict[str, int] = {}
    seen: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if len(seen) < 200:
                seen.append(line.rstrip())
            m = _LISTENS.search(line)
            if m:
                ports[m.group(1)] = int(m.group(2))
                if {"Blob", "Queue"} <= ports.keys():
                    ready.set()
        ready.set()  # the process ended: stop waiting

    reader = threading.Thread(target=drain, name="azurite-stdout", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        ready.wait(timeout)
        if not {"Blob", "Queue"} <= ports.keys():
            raise AzuriteError(f"Azurite did not start within {timeout:.0f} s: " + " | ".join(seen[-10:]))
        azurite = Azurite(ports["Blob"], ports["Queue"], workdir)
        while not _answers(f"http://127.0.0.1:{azurite.blob_port}/{ACCOUNT}?comp=list"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AzuriteError("Azurite started but does not answer: " + " | ".join(seen[-10:]))
            time.sleep(0.05)
        log.info("Azurite %s listening: blob %s, queue %s", exe, azurite.blob_port, azurite.queue_port)
        yield azurite
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        if own_location:
            shutil.rmtree(workdir, ignore_errors=True)
