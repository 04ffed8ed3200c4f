"""The in-process worker where no Functions host runs (``des api``, the demo): it drains the page
queue (Azurite, or the in-process queue) and calls the poll on the interval, the way the function
app's ``source_pages`` and ``source_poll`` functions do. A message that keeps failing is dropped
after ``max_dequeue`` attempts (the host's poison rule); the poll sends the table's unit again.
"""

from __future__ import annotations

import logging
import threading
import time

from shared.pull.work import SourceWork

log = logging.getLogger(__name__)


class LocalWorker:
    def __init__(
        self,
        work: SourceWork,
        *,
        poll_seconds: float,
        visibility_seconds: int = 60,
        max_dequeue: int = 5,
        idle_seconds: float = 0.1,
        batch: int = 16,
    ) -> None:
        self.work = work
        self.poll_seconds = poll_seconds
        self.visibility_seconds = visibility_seconds
        self.max_dequeue = max_dequeue
        self.idle_seconds = idle_seconds
        self.batch = batch
        self.units = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_poll = time.monotonic() + poll_seconds

    def run_once(self) -> int:
        """Handle what the queue holds now (one receive) and poll when due; returns units handled."""
        handled = 0
        for m in self.work.queue.receive(self.batch, self.visibility_seconds):
            if m.dequeue_count > self.max_dequeue:
                log.error("source worker: dropped a unit after %s attempts: %s", m.dequeue_count - 1, m.text[:200])
                self.work.queue.delete(m)
                continue
            try:
                self.work.handle_page(m.text)
            except Exception:
                log.exception("source worker: a unit failed; it comes again after its visibility timeout")
                continue
            self.work.queue.delete(m)
            handled += 1
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_seconds
            try:
                self.work.poll()
            except Exception:
                log.exception("source worker: the poll failed")
        self.units += handled
        return handled

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.run_once() == 0:
                    self._stop.wait(self.idle_seconds)
            except Exception:
                log.exception("source worker: receiving failed")
                self._stop.wait(1.0)

    def start(self) -> LocalWorker:
        self._thread = threading.Thread(target=self._loop, name="des-source-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> LocalWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
