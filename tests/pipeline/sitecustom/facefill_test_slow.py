"""`test-slow`: Telea after a fixed sleep per batch, so fault tests can kill things mid-run.

Registered in every process of a test cluster (driver and Ray workers) by `sitecustomize.py` beside it,
which the tests put on PYTHONPATH; the project itself never imports this module.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from workers.base import MethodInputs, MethodOutputs, MethodResources
from workers.opencv_inpaint import OpenCVInpaintConfig, TeleaInpaint
from workers.registry import register_method

SLOW_METHOD = "test-slow"
CALLS_ENV = "FACEFILL_TEST_SLOW_CALLS"  # a folder: one file per finished batch call, for the tests to watch


@dataclass(frozen=True)
class SlowConfig(OpenCVInpaintConfig):
    seconds_per_batch: float = 0.5  # sleep before each batch call


@register_method(SLOW_METHOD)
class SlowTelea(TeleaInpaint):
    """Telea, paced: real results, predictable duration."""

    Config = SlowConfig
    resources = MethodResources(num_cpus=1.0, num_gpus=0.0, batch_size=2)
    description = "test only: telea after a sleep per batch"

    def __call__(self, inputs: MethodInputs) -> MethodOutputs:
        time.sleep(self.config.seconds_per_batch)
        outputs = super().__call__(inputs)
        if os.environ.get(CALLS_ENV):
            Path(os.environ[CALLS_ENV], f"{os.getpid()}-{time.monotonic_ns()}").touch()
        return outputs
