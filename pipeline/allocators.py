"""Allocator settings that give freed bulk buffers back to the system, for the driver and Ray's workers.

pyarrow's default pool (mimalloc) keeps what it freed for reuse, and glibc raises its mmap threshold
as a process frees large blocks, after which buffers of that size stay in its heap. In a long run
both make a process's size follow how much it has handled, not what it holds: the driver +116 MiB
after reading and validating a 200,000-row manifest, task workers climbing for the first half-minute
of every run (docs/scaling.md). With Arrow's system pool and a fixed 64 KiB threshold every buffer
above 64 KiB gets its own mapping and is unmapped on free. glibc also gives every thread that
allocates its own arena (up to 8 per core), and what a thread frees stays in its arena: Ray's and
Ray Data's threads in every process (block prefetching, gRPC, metrics) grew a few MiB each over the
first minute of a run. Two arenas bound that (a 100k-row run: −7 to −10 MiB over the whole job).
The work in these processes is bookkeeping and block conversion, so the faster allocators bought
nothing measurable (bench/scale_bench.py).
"""
from __future__ import annotations

import ctypes

import pyarrow as pa

MMAP_THRESHOLD_BYTES = 64 * 1024
MALLOC_ARENAS = 2
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter for the size above which allocations get their own mapping
_M_ARENA_MAX = -8  # glibc's mallopt parameter for the most arenas threads share

# The same settings for a process that has not started yet, read by pyarrow and glibc at start-up.
WORKER_ALLOCATOR_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
                        "MALLOC_ARENA_MAX": str(MALLOC_ARENAS)}


def return_freed_memory() -> None:
    """This process (the driver) from now on: Arrow's system pool, glibc's fixed mmap threshold, and
    threads started from now on (Ray's) sharing two arenas."""
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc: its own allocator's policy stands
        pass


def trim_heap() -> None:
    """Give the free pages inside glibc's heaps back to the system (malloc_trim): what a results
    part's conversion freed would otherwise stay in this process until reused (the driver, −3 to
    −6 MiB over a 100k-row run). A few milliseconds, once per results part."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
