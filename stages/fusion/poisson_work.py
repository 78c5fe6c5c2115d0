"""Per-thread work arrays kept between poisson_fuse calls of the same (or a smaller) size.

Why: a 1024^2 solve works on 120-150 MiB of planes.  Fresh arrays cost
page faults and zeroing on every call (15-25 ms of a 0.23 s call, see
docs/poisson.md); a batch of equal-size images can reuse the last call's
memory instead, and most planes need no zeroing at all (the kernels write
every point they later read, see poisson_dense).

Bounded: a thread keeps at most WORK_CACHE_BYTES; a request that would go
beyond it gets a fresh array that is not kept (2048^2 problems need ~4x the
1024^2 planes and are not kept with the default).  release_work_arrays()
frees what the calling thread keeps.  The arrays handed out are views into
the kept buffers: valid until the next request of the same name on the same
thread, so nothing that outlives one poisson_fuse call may hold them.
"""

from __future__ import annotations

import threading

import numpy as np

# Most a thread keeps between calls: a 1024^2 image keeps 124 MiB (NVIDIA masks) to
# 153 MiB (random 50 %: the crop is the whole image); 2048^2 ones keep what fits.
WORK_CACHE_BYTES = 160 << 20

_local = threading.local()


class WorkArrays:
    """Named flat buffers, each grown to the largest request that fits the budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._buffers: dict[str, np.ndarray] = {}

    @property
    def kept_bytes(self) -> int:
        return sum(buf.nbytes for buf in self._buffers.values())

    def get(self, name: str, shape: tuple[int, ...], dtype: type, zero: bool = False) -> np.ndarray:
        """A C-contiguous [shape] array of dtype; zero=False leaves the old contents."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < size:
            others = self.kept_bytes - (0 if buf is None else buf.nbytes)
            if others + size > self.budget:  # too big to keep: fresh, the old one stays
                return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
            buf = self._buffers[name] = np.empty(size, np.uint8)
        out = buf[:size].view(dtype).reshape(shape)
        if zero:
            out.fill(0)
        return out

    def clear(self) -> None:
        self._buffers.clear()


def work_arrays() -> WorkArrays:
    """The calling thread's work arrays (created on first use)."""
    arrays = getattr(_local, "arrays", None)
    if arrays is None:
        arrays = _local.arrays = WorkArrays(WORK_CACHE_BYTES)
    return arrays


def release_work_arrays() -> None:
    """Free the work arrays the calling thread keeps (e.g. after a batch)."""
    work_arrays().clear()
