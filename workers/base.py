"""The method interface every inpainting method implements.

A method is a class with a frozen `Config` dataclass, declared `resources`, `setup(device)` that loads
weights once per actor, and `__call__(inputs) -> outputs`. It knows nothing of Ray: `pipeline/`
turns `resources` into actor options, and `workers.runner` isolates per-row failures.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class MethodResources:
    """What one actor of the method needs."""

    num_cpus: float = 1.0  # CPUs per actor (the pipeline may scale this down on small machines)
    num_gpus: float = 0.0  # GPUs per actor when the cluster has GPUs; 0 = CPU-only method
    batch_size: int = 8  # rows per call
    cpu_batch_size: int | None = None  # rows per call when a GPU method runs on CPUs (None: batch_size)


@dataclass(frozen=True)
class MethodInputs:
    """The rows a method is asked to repair (failed rows are never passed in)."""

    ids: list[str]
    images: list[np.ndarray]  # each [H,W,3] uint8 with hole pixels zeroed
    holes: list[np.ndarray]  # each [H,W] bool, True = hole


@dataclass
class MethodOutputs:
    """One generated image per output row; `source[k]` is the input index of output row k.

    Methods producing several variants per input repeat the source index with variant 0..K-1.
    """

    generated: list[np.ndarray]  # each [H,W,3] uint8 at the input's size
    source: list[int] = field(default_factory=list)
    variant: list[int] = field(default_factory=list)
    extras: dict[str, list[Any]] = field(default_factory=dict)  # e.g. latents, per output row

    def __post_init__(self) -> None:
        n = len(self.generated)
        if not self.source:
            self.source = list(range(n))
        if not self.variant:
            self.variant = [0] * n
        if len(self.source) != n or len(self.variant) != n:
            raise ValueError("MethodOutputs: generated, source and variant differ in length")


class InpaintMethod(ABC):
    """Base class of registered methods."""

    name: ClassVar[str]
    Config: ClassVar[type]  # a frozen dataclass; fields are settable with --method-opt key=value
    resources: ClassVar[MethodResources] = MethodResources()
    generates_whole_image: ClassVar[bool] = False  # True: Poisson fusion is the default
    description: ClassVar[str] = ""
    # The square side the method works at (None: any size, e.g. telea). Images whose long side is
    # more than twice this are repaired crop by crop around the holes (`stages/crops.py`). A class
    # default; a method that learns it from its weights sets `self.native_size` in `setup`.
    native_size: int | None = None

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def missing_weights(cls, config: Any) -> list[str]:
        """Messages for weight files the method would need and cannot find (empty: all present).

        The pipeline calls this on the driver before any work starts, so a run never fails half-way
        for a missing checkpoint.
        """
        return []

    def setup(self, device: str) -> None:
        """Load weights once per actor; `device` is 'cuda' or 'cpu'."""

    @abstractmethod
    def __call__(self, inputs: MethodInputs) -> MethodOutputs:
        """Repair a batch of images."""
