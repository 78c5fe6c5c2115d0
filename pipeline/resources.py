"""Size actor pools and CPU requests from what the cluster has, so any machine size works.

Ray 2.60 deadlocks on a 2-core machine when two actors each hold a whole CPU and a task needs one:
actors must always leave CPU for the load/fuse/score/write tasks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from workers.base import MethodResources


@dataclass(frozen=True)
class ResourcePlan:
    """Ray options for the method actors and the CPU tasks around them."""

    actors: int  # size of the method actor pool
    actor_cpus: float  # num_cpus per method actor
    actor_gpus: float  # num_gpus per method actor (0 on CPU-only clusters)
    task_cpus: float  # num_cpus per load/fuse/score/write task
    batch_size: int  # rows per method call
    rows_per_block: int  # rows per input block (one block spreads to one actor call or a few)


def plan_resources(cluster_cpus: float, cluster_gpus: float, method: MethodResources,
                   n_rows: int, actors: int | None = None, batch_size: int | None = None) -> ResourcePlan:
    """Half the CPUs (at least one, never all) go to CPU method actors, the rest to tasks.

    GPU methods get one actor per `num_gpus` share of the cluster's GPUs, with one CPU each where
    that still leaves CPU for the tasks.
    """
    if cluster_cpus <= 0:
        raise ValueError("the Ray cluster reports no CPUs")
    batch = batch_size or method.batch_size
    task_cpus = min(1.0, cluster_cpus / 2)
    use_gpu = method.num_gpus > 0 and cluster_gpus > 0
    if use_gpu:
        gpu_slots = max(1, int(cluster_gpus // method.num_gpus))
        pool = actors or gpu_slots
        actor_cpus = min(1.0, max(0.1, (cluster_cpus - task_cpus) / pool))
        actor_gpus = method.num_gpus
    else:
        budget = max(cluster_cpus - task_cpus, cluster_cpus / 2)
        actor_cpus = min(method.num_cpus, budget)
        pool = actors or max(1, int(math.floor(budget / 2 / actor_cpus)) if cluster_cpus > 2 else 1)
        if pool * actor_cpus > budget:  # user asked for more actors than fit: shrink their share
            actor_cpus = budget / pool
        actor_gpus = 0.0
    pool = max(1, min(pool, math.ceil(n_rows / batch))) if n_rows else 1
    # Blocks of one batch spread work over the pool; very large manifests get bigger blocks.
    rows_per_block = max(batch, math.ceil(n_rows / 2000)) if n_rows else batch
    return ResourcePlan(actors=pool, actor_cpus=actor_cpus, actor_gpus=actor_gpus,
                        task_cpus=task_cpus, batch_size=batch, rows_per_block=rows_per_block)
