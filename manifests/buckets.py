"""Mask-ratio buckets of the NVIDIA irregular-mask protocol, shared by runs and reports.

Any mask set gets bucketed the same way, whether it came from the NVIDIA test set or not, so reports
of different runs line up bucket by bucket.
"""
from __future__ import annotations

import math

# Half-open intervals [lo, hi): 0.10 belongs to "0.10-0.20", as in the NVIDIA test-set split.
BUCKET_EDGES: tuple[float, ...] = (0.01, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60)
BUCKET_BELOW = "<0.01"
BUCKET_ABOVE = ">0.60"
BUCKETS: tuple[str, ...] = (
    BUCKET_BELOW,
    *(f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(BUCKET_EDGES[:-1], BUCKET_EDGES[1:])),
    BUCKET_ABOVE,
)


def bucket_of(mask_ratio: float) -> str:
    """Name of the bucket holding `mask_ratio` (share of hole pixels, 0..1)."""
    if mask_ratio is None or math.isnan(mask_ratio):
        raise ValueError("mask_ratio is NaN")
    if mask_ratio < BUCKET_EDGES[0]:
        return BUCKET_BELOW
    for lo, hi in zip(BUCKET_EDGES[:-1], BUCKET_EDGES[1:]):
        if lo <= mask_ratio < hi:
            return f"{lo:.2f}-{hi:.2f}"
    return BUCKET_ABOVE


def bucket_order(name: str) -> int:
    """Sort key that puts buckets in ascending hole size (unknown names last)."""
    return BUCKETS.index(name) if name in BUCKETS else len(BUCKETS)
