"""`test-slow`: Telea after a fixed sleep per batch, so fault tests can kill things mid-run; with
`crash_on=ID` the batch holding ID kills its actor process every time (a poison row).

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
RUNNING_PREFIX = "running-"  # ... and running-<pid> while that actor is inside a call


@dataclass(frozen=True)
class SlowConfig(OpenCVInpaintConfig):
    seconds_per_batch: float = 0.5  # sleep before each batch call
    crash_on: str = ""  # an id whose batch kills the actor process every time (a poison row)


@register_method(SLOW_METHOD)
class SlowTelea(TeleaInpaint):
    """Telea, paced: real results, predictable duration."""

    Config = SlowConfig
    resources = MethodResources(num_cpus=1.0, num_gpus=0.0, batch_size=2)
    description = "test only: telea after a sleep per batch"

    def __call__(self, inputs: MethodInputs) -> MethodOutputs:
        running = Path(os.environ[CALLS_ENV], f"{RUNNING_PREFIX}{os.getpid()}") if os.environ.get(CALLS_ENV) else None
        if running:
            running.touch()  # a kill now lands on a batch this actor holds
        time.sleep(self.config.seconds_per_batch)
        if self.config.crash_on and self.config.crash_on in inputs.ids:
            os._exit(1)  # as a segfault or the OOM killer would: no exception, the process is gone
        outputs = super().__call__(inputs)
        if running:
            running.unlink(missing_ok=True)
            Path(os.environ[CALLS_ENV], f"{os.getpid()}-{time.monotonic_ns()}").touch()
        return outputs
