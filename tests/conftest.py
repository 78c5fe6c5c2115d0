"""Shared fixtures: the dev data beside the repository, a local Ray, small synthetic inputs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import BENCH


@pytest.fixture(scope="session")
def bench_dev() -> Path:
    """`../shared/bench-dev`; tests that need real faces skip only when it is absent."""
    if not BENCH.is_dir():
        pytest.skip("../shared/bench-dev is not beside the repository")
    return BENCH


@pytest.fixture(scope="session")
def faces256(bench_dev: Path) -> list[Path]:
    return sorted((bench_dev / "faces" / "256").glob("*.png"))


@pytest.fixture(scope="session")
def nvidia_masks(bench_dev: Path) -> list[Path]:
    return sorted((bench_dev / "masks").glob("*.png"))


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for the in-process end-to-end tests (start-up costs seconds), started the way
    `pipeline run` starts its own for a 2-CPU plan."""
    import ray

    from pipeline.local_ray import size_local_ray, start_local_ray
    from pipeline.resources import plan_resources
    from workers.base import MethodResources

    if not ray.is_initialized():
        plan = plan_resources(2, 0, MethodResources(batch_size=8), n_rows=100, pixels_per_row=32 * 32)
        start_local_ray(size_local_ray(plan, 2, 0))
    yield ray
    ray.shutdown()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


os.environ.setdefault("RAY_DEDUP_LOGS", "0")
