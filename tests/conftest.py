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

    from pipeline.local_ray import MIN_OBJECT_STORE_BYTES, LocalRay, start_local_ray

    if not ray.is_initialized():
        start_local_ray(LocalRay(num_cpus=2, num_gpus=0, object_store_bytes=MIN_OBJECT_STORE_BYTES, worker_soft_limit=7))
    yield ray
    ray.shutdown()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


os.environ.setdefault("RAY_DEDUP_LOGS", "0")
