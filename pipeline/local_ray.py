"""Start or join the Ray a run uses; an embedded Ray is sized from the run's plan before it starts.

Ray's defaults suit a long-lived shared cluster, not one job on one machine, and four of them made
a local run's memory grow with the run's length (measured with bench/scale_bench.py, see
docs/scaling.md, "Streaming, and what still grows with the manifest"):

* The object store reserves 30 % of RAM. Ray Data keeps at most the plan's in-flight budget there
  (pipeline.resources), but the store's allocator spreads successive blocks over the whole
  reservation, so every process that maps a block touches more distinct shared pages the longer
  the run goes (the method actor 10 → 33 MiB over a 100k-row run, still growing). Even a store of
  twice the budget kept filling: at 256×256 its pages mapped by the workers went 95 → 242 MiB over
  1,500 rows and a 40k-row run peaked 94 MiB above a 5k-row one. The store is now the budget plus
  an eighth, and preallocated: its pages are all there from the start, so what a run holds in the
  store is the same at its first block and its millionth.
* Idle workers above `num_workers_soft_limit` (default: the CPU count) are killed after 1 s. Ray
  Data's own actors and the method actor count towards that limit, so on a small machine the task
  workers were killed whenever the method was the bottleneck and started again (a Python process
  importing the stages, about 1 CPU-second) a moment later: how many were alive at the peak
  depended on chance, so longer runs saw one or two more. The limit now covers every worker the
  plan can keep busy at once.
* Ray's workers keep Arrow's default allocator (mimalloc) and glibc's growing mmap threshold, which
  hold on to what they freed: each task worker's heap kept climbing for the first half-minute of
  a run. They get the driver's settings (pipeline.allocators) through the environment the raylet
  starts them with: Arrow's system pool and a fixed 64 KiB mmap threshold, so freed block buffers
  go back to the system (task workers 159-162 → 139-143 MiB at the peak of a 100k-row run).
* Every process reports each task's state changes to the GCS, which keeps them for the dashboard
  and `ray list tasks` (up to 100,000 tasks, a few hundred bytes each). An embedded run starts no
  dashboard and nobody can list its tasks, yet the GCS grew all run long (+6 MiB over 100k rows,
  and a job of millions of rows would fill the 100,000): task events are off.
* Ray Data's stats actor records a Prometheus gauge series for every metric of every operator of
  every dataset, and keeps each series for the session. A long manifest runs as one dataset per
  window (pipeline.run), so the actor grew about 200 KiB a window (+32 MiB over 157 windows, 98 →
  130 MiB), and by the end of a 100k-row run of faces it was 6 MiB larger. An embedded run has no
  dashboard and no Prometheus to read them: metrics collection is off, and the actor stays at 99-100 MiB.

A cluster given with `--address` keeps its own settings (ray_cluster.yaml).
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from pipeline.allocators import WORKER_ALLOCATOR_ENV
from pipeline.resources import STORE_HEADROOM, ResourcePlan

# Ray Data 2.60 runs three actors of its own beside a job's: _StatsActor, _AutoscalingCoordinatorActor
# and ActorLocationTracker (counted in the scale benchmark's process list).
RAY_DATA_SERVICE_ACTORS = 3
# The object store holds the in-flight blocks plus the headroom Ray Data leaves (pipeline.resources),
# never less than Ray's own minimum.
MIN_OBJECT_STORE_BYTES = 75 * 1024 * 1024  # ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES
RAY_DEFAULT_STORE_SHARE = 0.3  # Ray's own default: 30 % of RAM; ours is never larger
RAY_INIT_OPTIONS = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
# Ray settings every embedded run gets: no task state events (0 turns their recording off), the
# store's pages touched once at start (mmap with MAP_POPULATE), so its footprint is fixed, and no
# metrics, which nothing reads without a dashboard.
EMBEDDED_SYSTEM_CONFIG = {"task_events_report_interval_ms": 0, "preallocate_plasma_memory": True,
                          "enable_metrics_collection": False}


@dataclass(frozen=True)
class LocalRay:
    """How a run's embedded Ray is started; recorded in run.json."""

    num_cpus: int
    num_gpus: int
    object_store_bytes: int
    worker_soft_limit: int  # Ray's num_workers_soft_limit: idle workers up to this many are kept


def local_resources(num_cpus: int | None) -> tuple[int, int]:
    """CPUs and GPUs an embedded Ray on this machine would report: `num_cpus` or Ray's own count
    (which honours container CPU quotas), and the GPUs Ray counts (CUDA_VISIBLE_DEVICES applies)."""
    if num_cpus is None:
        try:
            from ray._private.utils import get_num_cpus  # the count ray.init would use
            num_cpus = int(get_num_cpus())
        except (ImportError, AttributeError):  # a Ray without it: plain affinity
            num_cpus = len(os.sched_getaffinity(0))
    return max(1, num_cpus), local_gpus()


def local_gpus() -> int:
    """NVIDIA GPUs ray.init would report here: NVML's count, capped by CUDA_VISIBLE_DEVICES, as Ray's
    own resource detection does. Not torch.cuda: importing torch costs the driver about 240 MiB of
    private memory for the rest of the run, and only a GPU method's actors need it."""
    try:
        from ray._private.accelerators.nvidia_gpu import NvidiaGPUAcceleratorManager as Nvidia
    except ImportError:  # a Ray without it: ask torch
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    count = Nvidia.get_current_node_num_accelerators()
    visible = Nvidia.get_current_process_visible_accelerator_ids()
    return count if visible is None else min(count, len(visible))


def concurrent_workers(plan: ResourcePlan, num_cpus: float) -> int:
    """Processes the plan keeps busy at once: the method actors and as many CPU tasks as the CPUs
    left beside them hold."""
    task_slots = max(1, math.floor((num_cpus - plan.actors * plan.actor_cpus) / plan.task_cpus + 1e-9))
    return plan.actors + task_slots


def size_local_ray(plan: ResourcePlan, num_cpus: int, num_gpus: int, memory_bytes: int | None = None) -> LocalRay:
    """An embedded Ray for this plan: a store of the in-flight budget and its headroom (at least
    Ray's minimum, at most Ray's default share of RAM) and every worker the plan can use kept alive."""
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    store = max(MIN_OBJECT_STORE_BYTES, math.ceil((1 + STORE_HEADROOM) * plan.inflight_bytes))
    store = min(store, max(MIN_OBJECT_STORE_BYTES, int(RAY_DEFAULT_STORE_SHARE * memory_bytes)))
    return LocalRay(num_cpus=num_cpus, num_gpus=num_gpus, object_store_bytes=store,
                    worker_soft_limit=concurrent_workers(plan, num_cpus) + RAY_DATA_SERVICE_ACTORS)


def start_local_ray(local: LocalRay) -> None:
    """A fresh embedded Ray ("local" never joins a stale cluster named in /tmp/ray)."""
    import ray

    with _environment(WORKER_ALLOCATOR_ENV):  # inherited by the raylet, hence by every worker it starts
        ray.init(address="local", num_cpus=local.num_cpus, num_gpus=local.num_gpus,
                 object_store_memory=local.object_store_bytes,
                 _system_config={**EMBEDDED_SYSTEM_CONFIG, "num_workers_soft_limit": local.worker_soft_limit},
                 **RAY_INIT_OPTIONS)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """These environment variables while Ray's processes start, the caller's own afterwards. Not the
    job's runtime_env: Ray prestarts workers without it, which then sit idle beside new ones."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def join_ray(address: str) -> None:
    import ray

    ray.init(address=address, **RAY_INIT_OPTIONS)
