"""The driver's allocator settings give freed memory back to the system (pipeline.allocators)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO

MIB = 1024 * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_heap_returns_the_free_pages_inside_the_heap():
    """100 MiB of small buffers freed behind one kept buffer cannot shrink the heap from its top; only
    malloc_trim gives those pages back. A fresh interpreter, so other tests' heaps do not interfere."""
    script = textwrap.dedent("""
        import os
        from pipeline.allocators import trim_heap

        def rss() -> int:
            return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        buffers = [bytearray(1000) for _ in range(100_000)]
        kept = buffers[-1]
        del buffers
        before = rss()
        trim_heap()
        print(before - rss())
    """)
    freed = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout)
    assert freed > 50 * MIB
