"""Helpers for the `dict[str, np.ndarray]` batches that travel between stages.

Ray Data hands a pixel column either as one stacked array (all rows the same shape) or as an object
array of per-row arrays (ragged); these helpers let stage code treat both as a list of rows.
"""
from __future__ import annotations

from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]

EMPTY_IMAGE = np.zeros((0, 0, 3), np.uint8)  # placeholder pixels for rows that failed
EMPTY_HOLE = np.zeros((0, 0), np.uint8)


def batch_len(batch: Batch) -> int:
    """Number of rows in a batch."""
    return len(next(iter(batch.values()))) if batch else 0


def to_column(values: list[Any]) -> np.ndarray:
    """A batch column from per-row values; arrays go in an object array so shapes may differ."""
    if values and all(isinstance(v, np.ndarray) for v in values):
        column = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            column[i] = value
        return column
    if values and all(isinstance(v, (float, int, np.floating, np.integer)) for v in values):
        return np.asarray(values)
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def take_rows(batch: Batch, indices: list[int]) -> Batch:
    """Rows `indices` of `batch` (repeats allowed), every column kept."""
    return {name: to_column([column[i] for i in indices]) for name, column in batch.items()}


def is_ok(batch: Batch, i: int) -> bool:
    """Whether row `i` has not failed in an earlier stage."""
    return str(batch["status"][i]) == "ok"


def has_pixels(value: Any) -> bool:
    """False for the empty placeholder a failed or gt-less row carries."""
    return isinstance(value, np.ndarray) and value.size > 0
