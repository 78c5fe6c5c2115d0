"""The embedded Ray is sized from the run's plan: object store from the in-flight budget, every
worker the plan keeps busy exempt from Ray's idle-worker killing."""
from __future__ import annotations

import pytest

from pipeline.local_ray import (MIN_OBJECT_STORE_BYTES, RAY_DATA_SERVICE_ACTORS, concurrent_workers, local_resources,
                                size_local_ray)
from pipeline.resources import STORE_HEADROOM, plan_resources
from workers.base import MethodResources

GIB = 1024 ** 3


def test_a_two_core_plan_keeps_the_actor_and_three_task_workers():
    plan = plan_resources(2, 0, MethodResources(batch_size=8), n_rows=100_000, pixels_per_row=32 * 32)
    assert (plan.actors, plan.actor_cpus, plan.task_cpus) == (1, 0.5, 0.5)
    assert concurrent_workers(plan, 2) == 1 + 3  # 1.5 CPUs left beside the actor: three half-CPU tasks
    local = size_local_ray(plan, 2, 0, memory_bytes=24 * GIB)
    assert local.worker_soft_limit == 4 + RAY_DATA_SERVICE_ACTORS
    assert local.object_store_bytes == MIN_OBJECT_STORE_BYTES  # a 32 MiB budget: Ray's minimum store, not 7 GiB


def test_gpu_node_plan_counts_its_actors_and_whole_cpu_tasks():
    plan = plan_resources(16, 4, MethodResources(num_cpus=1, num_gpus=1, batch_size=4), n_rows=10_000,
                          pixels_per_row=1024 * 1024)
    assert (plan.actors, plan.actor_cpus, plan.task_cpus) == (4, 1.0, 1.0)
    assert concurrent_workers(plan, 16) == 4 + 12


def test_the_store_follows_the_inflight_budget_but_never_exceeds_rays_default():
    plan = plan_resources(16, 0, MethodResources(batch_size=8), n_rows=100_000, pixels_per_row=256 * 256)
    assert plan.inflight_bytes > MIN_OBJECT_STORE_BYTES
    roomy = size_local_ray(plan, 16, 0, memory_bytes=512 * GIB)
    assert roomy.object_store_bytes == plan.inflight_bytes * (1 + STORE_HEADROOM) == plan.inflight_bytes * 9 // 8
    tight = size_local_ray(plan, 16, 0, memory_bytes=2 * GIB)
    assert tight.object_store_bytes == int(0.3 * 2 * GIB) < plan.inflight_bytes
    tiny_machine = size_local_ray(plan, 16, 0, memory_bytes=GIB // 8)
    assert tiny_machine.object_store_bytes == MIN_OBJECT_STORE_BYTES


def test_local_resources_take_the_given_cpus_and_count_them_otherwise():
    assert local_resources(3)[0] == 3
    cpus, gpus = local_resources(None)
    assert cpus >= 1 and gpus >= 0


@pytest.mark.slow
def test_the_embedded_ray_of_the_tests_got_its_store(ray_local):
    """conftest starts its Ray through start_local_ray: the store Ray reports is the one we asked for."""
    assert ray_local.cluster_resources()["object_store_memory"] == pytest.approx(MIN_OBJECT_STORE_BYTES, rel=0.01)


@pytest.mark.slow
def test_the_embedded_rays_workers_return_freed_buffers(ray_local):
    """Workers start with Arrow's system pool and glibc's fixed mmap threshold (pipeline.allocators)."""
    @ray_local.remote(num_cpus=0.5)
    def allocator() -> tuple[str, str | None, str | None]:
        import os

        import pyarrow as pa
        return (pa.default_memory_pool().backend_name, os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                os.environ.get("MALLOC_ARENA_MAX"))

    assert ray_local.get(allocator.remote()) == ("system", str(64 * 1024), "2")


@pytest.mark.slow
def test_the_embedded_rays_store_is_resident_from_the_start(ray_local):
    """The store's pages are touched when it starts, so a run's footprint does not grow with its
    blocks: the raylet (which holds the store) already maps all of it, before any object exists."""
    raylet = ray_local._private.worker._global_node.all_processes["raylet"][0].process.pid
    with open(f"/proc/{raylet}/status") as status:
        resident_shmem = next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssShmem:"))
    assert resident_shmem >= MIN_OBJECT_STORE_BYTES


@pytest.mark.slow
def test_the_embedded_ray_records_no_task_events(ray_local):
    """The GCS keeps no task state events (Ray refuses settings it does not know, so this one took)."""
    assert ray_local._private.worker._global_node._config["task_events_report_interval_ms"] == 0


@pytest.mark.slow
def test_the_embedded_ray_collects_no_metrics(ray_local):
    """No gauge series pile up in Ray Data's stats actor, one set per window of a long run."""
    assert ray_local._private.worker._global_node._config["enable_metrics_collection"] is False
