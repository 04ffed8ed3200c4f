"""Process-wide runtime tuning for throughput-oriented processes: `des replay`, `des demo` and `des bench`
(and the replay workers they fork). The function app does not call it (its worker is not tuned).

The sync path allocates thousands of short-lived container objects per batch (parsed notifications,
attribute dicts, rows). They are acyclic and freed by reference counting, yet every 700 allocations
CPython's cyclic collector runs, and its older generations re-traverse every long-lived object made
at start-up (modules, pydantic schemas, SQL caches). ``gc.freeze()`` moves what exists after
start-up out of the collector's sight, and a larger young-generation threshold lets a batch finish
between collections. Cycles are still collected. Measured with callgrind on the bench stream: the
collector's share of instructions fell from 6.4% to under 1% (BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 50_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100

_tuned = False

# glibc's malloc: buffers up to this size come from the heap rather than a mapping of their own, and
# the heap keeps up to M_TRIM_THRESHOLD bytes free at its top rather than giving them back at once.
# A replay batch allocates and frees a few buffers of its size (the lines joined, their translation
# for the long-number check) and thousands of objects: by default each big buffer was a fresh
# mapping and every freed top of the heap went back to the kernel, so the next batch faulted the
# same pages in again (92k page faults per 200k notifications, 0.2 s of system time; 14k with these).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's upper limit for this option on 64-bit
TRIM_THRESHOLD_BYTES = 64 * 2**20


def keep_heap() -> bool:
    """Apply the malloc thresholds above (glibc on Linux only); whether they were applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def tune_for_throughput() -> None:
    """Freeze start-up objects, raise the collector's thresholds, keep the heap (:func:`keep_heap`);
    idempotent."""
    global _tuned  # noqa: PLW0603
    if _tuned:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    heap = keep_heap()
    _tuned = True
    log.debug(
        "gc frozen %s start-up objects; thresholds %s; malloc thresholds %s",
        gc.get_freeze_count(), gc.get_threshold(), "set" if heap else "left to the C library",
    )
