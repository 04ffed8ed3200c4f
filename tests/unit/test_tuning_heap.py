"""tune_for_throughput keeps the heap: buffers of a batch's size come from it and stay with it, so a
replay does not fault the same pages in again batch after batch (BENCHMARKS.md, issue 14)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

PROGRAM = textwrap.dedent(
    """
    import resource, sys
    from shared.tuning import keep_heap
    applied = keep_heap() if sys.argv[1] == "keep" else None
    sizes = [2**20 + i * 2**16 for i in range(60)]  # each batch's buffer a little larger: 1 to ~4.7 MiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for size in sizes:
        buffer = b"x" * size  # written: every page touched
        del buffer
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True).stdout
    applied, count = out.split()
    return applied, int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_big_buffers_reuse_the_heap_once_tuned() -> None:
    applied, kept = faults("keep")
    assert applied == "True"
    _, default = faults("default")
    # 60 buffers of 1-4.7 MiB are ~43,000 pages: by default each is a fresh mapping (larger than any
    # freed so far), once tuned the heap's own, reused (it only grows by the difference)
    assert kept < 5000 < default, (kept, default)
