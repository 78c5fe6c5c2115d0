"""Size actor pools, CPU shares, batches and blocks from what the cluster has, so any machine size works.

Ray 2.60 deadlocks on a 2-core machine when two actors each hold a whole CPU and a task needs one:
actors must always leave CPU for the load/fuse/score/write tasks. The shares below come from
`bench/throughput_bench.py`; docs/scaling.md records the figures and the reasoning for GPU nodes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from stages.imageio import declared_pixels
from workers.base import MethodResources

# On machines this small, whole-CPU shares leave one task running beside an actor that is mostly
# waiting for it; half shares let load and write tasks overlap with the method (3× on 2 cores).
SMALL_CLUSTER_CPUS = 4
SMALL_CLUSTER_SHARE = 0.5
# A CPU-only method loops over its rows, so a bigger batch costs it nothing and spreads Ray Data's
# per-batch cost (task scheduling, block conversion) over more rows: up to 128 rows, as long as a
# batch's pixels stay under 32 MiB (about 16 bytes per pixel travel: image, hole, ground truth,
# generated, result), so large photos keep the method's own batch. 32 rather than 64 MiB: every
# task and the object store hold a few batches at once, so the batch's size sets the run's peak.
# 8,192 rows of 256×256 faces on 2 cores, batches of 32 against 64: 1,422 against 1,619 MiB at the
# peak, 212 against 195 s (the extra time is per batch; with windows of the same rows, 216 s).
CPU_METHOD_MAX_BATCH = 128
BATCH_PIXEL_BYTES = 32 * 1024 * 1024
BYTES_PER_PIXEL = 16
# Very large manifests get bigger blocks: each block is a read task (pipeline.todo_source) and a
# round of scheduling (about 20 ms on 2 cores), so for small images their number stays bounded, not
# their size; but a block never holds more pixels than a batch may (32 MiB), as the load stage turns
# a read block into one block of pixels. For small images that leaves the count bounded (32×32: up
# to 16 batches a block); for faces a block stays one batch however long the manifest (windows,
# below, bound what the driver holds). Paired runs of 1,920 rows of 256×256: in 256-row blocks, as a
# 100k-row manifest had them, 1,702-1,717 MiB at the peak and 16-19 images/s; in blocks of one batch
# 1,521-1,528 MiB and 23-24 images/s. 1M rows would have loaded 2,048-row blocks, 940 MB each.
MAX_BLOCKS = 500
# A long manifest runs as consecutive Ray Data datasets (windows) of at most this many blocks: Ray
# Data plans every read task of a dataset when it starts and keeps their input queued, and its
# executor's per-block records, for the whole execution, so one dataset over a 100k-row manifest of
# faces (1,563 blocks) held ~75 MiB more than a 5k-row run, and its scheduling loop slowed with the
# queue: 20 against 30-34 images/s steady on 2 cores. But every window leaves a little behind in
# Ray's own processes (the GCS, the raylet, the workers: about 0.5 MiB a window) and starts its own
# actor pool, and each start can bring an extra worker process: on a stand-in with the face plan's
# 32-row blocks, 49 windows of 8 blocks raised the medians 25 MiB, 13 of 256 blocks 9 MiB. A
# 256-block window holds ~3 MiB of per-block records at its end, so 256 blocks (8,192 faces, 13
# windows for 100k rows) is about the least of the two costs; still minutes of work a window. At
# 256x256 itself the medians were the same with 13 windows as with 49 (docs/scaling.md, fifteenth
# session): what a long run of faces holds more is not per window.
WINDOW_BLOCKS = 256
# Decoded batches Ray Data may hold in the object store at once. Its default budget is half the
# object store (30 % of RAM): a fast load stage then fills gigabytes with images waiting for the
# method, and every process that touches those pages grows with the run's length (measured: task
# workers +1 MiB/s, 100k rows ended 460 MiB above 5k). A few batches per actor keep every stage busy.
# The floor matters for small images only: a full 64 MiB of 32×32 rows kept ~50 MiB of store pages
# mapped after the first 20 s of a long run, 32 MiB ~28 MiB (100k rows −16 to −22 MiB at the peak,
# images/s within the run-to-run noise: 1,086 / 1,138 against 1,107 / 1,155); 16 MiB cost 3-4 %.
# Above the floor (large images), 4 batches rather than 8: on 1,000 rows of 256×256 (64-row batches,
# 64 MiB each) the store's pages mapped by the task workers grew to 131-162 MiB each as the run filled
# 512 MiB; with 256 MiB the peak fell from 1,809 to 1,476-1,489 MiB at 9.1-9.4 against 8.0 images/s.
INFLIGHT_BATCHES_PER_ACTOR = 4
MIN_INFLIGHT_BYTES = 32 * 1024 * 1024
# What the object store holds beside Ray Data's blocks (the driver's result batches, arguments being
# read) as a share of the budget. Ray Data's own default takes half the store for blocks; ours is
# sized as budget × (1 + headroom) (pipeline.local_ray), so Ray Data may fill it but for this share.
STORE_HEADROOM = 0.125
UNKNOWN_PIXELS_PER_ROW = 1024 * 1024  # no image header could be read: assume large photos


@dataclass(frozen=True)
class ResourcePlan:
    """Ray options for the method actors and the CPU tasks around them."""

    actors: int  # size of the method actor pool
    actor_cpus: float  # num_cpus per method actor
    actor_gpus: float  # num_gpus per method actor (0 on CPU-only clusters)
    task_cpus: float  # num_cpus per load/fuse/score/write task
    batch_size: int  # rows per method call
    rows_per_block: int  # rows per input block (one block spreads to one actor call or a few)
    rows_per_window: int = 0  # rows per dataset execution (pipeline.run); 0: the whole manifest at once
    inflight_bytes: int = MIN_INFLIGHT_BYTES  # object-store budget for the graph's blocks in flight


def plan_resources(cluster_cpus: float, cluster_gpus: float, method: MethodResources,
                   n_rows: int, actors: int | None = None, batch_size: int | None = None,
                   pixels_per_row: int | None = None) -> ResourcePlan:
    """Half the CPUs (at least one, never all) go to CPU method actors, the rest to tasks.

    GPU methods get one actor per `num_gpus` share of the cluster's GPUs, with one CPU each where
    that still leaves CPU for the tasks. On small machines (<= 4 CPUs) tasks and CPU actors take
    half a CPU each. CPU-only methods get batches of up to 128 rows (fewer when that would leave
    actors idle on a small job, or when `pixels_per_row`, the largest image in a sample of the
    manifest, makes a batch heavier than 32 MiB), never fewer than the method's own.
    """
    if cluster_cpus <= 0:
        raise ValueError("the Ray cluster reports no CPUs")
    small = cluster_cpus <= SMALL_CLUSTER_CPUS
    task_cpus = min(SMALL_CLUSTER_SHARE if small else 1.0, cluster_cpus / 2)
    use_gpu = method.num_gpus > 0 and cluster_gpus > 0
    if use_gpu:
        gpu_slots = max(1, int(cluster_gpus // method.num_gpus))
        pool = actors or gpu_slots
        actor_cpus = min(1.0, max(0.1, (cluster_cpus - task_cpus) / pool))
        actor_gpus = method.num_gpus
    else:
        budget = max(cluster_cpus - task_cpus, cluster_cpus / 2)
        actor_cpus = min(method.num_cpus, budget, SMALL_CLUSTER_SHARE if small else budget)
        pool = actors or max(1, int(math.floor(budget / 2 / actor_cpus)) if cluster_cpus > 2 else 1)
        if pool * actor_cpus > budget:  # user asked for more actors than fit: shrink their share
            actor_cpus = budget / pool
        actor_gpus = 0.0
    batch = batch_size or (method.cpu_batch_size if not use_gpu and method.cpu_batch_size else method.batch_size)
    if batch_size is None and method.num_gpus == 0 and n_rows:
        # Bigger batches, but each actor still gets at least two of them.
        fits = BATCH_PIXEL_BYTES // (BYTES_PER_PIXEL * pixels_per_row) if pixels_per_row else 0  # unknown: keep it
        batch = max(batch, min(CPU_METHOD_MAX_BATCH, fits, math.ceil(n_rows / (2 * pool))))
    pool = max(1, min(pool, math.ceil(n_rows / batch))) if n_rows else 1
    # Blocks of one batch spread work over the pool; very large manifests get blocks of several, as
    # many as stay under a batch's pixel cap.
    batch_bytes = batch * (pixels_per_row or UNKNOWN_PIXELS_PER_ROW) * BYTES_PER_PIXEL
    batches_by_count = math.ceil(max(batch, math.ceil(n_rows / MAX_BLOCKS)) / batch) if n_rows else 1
    rows_per_block = batch * min(batches_by_count, max(1, BATCH_PIXEL_BYTES // batch_bytes))
    inflight = max(MIN_INFLIGHT_BYTES, INFLIGHT_BATCHES_PER_ACTOR * pool * batch_bytes)
    return ResourcePlan(actors=pool, actor_cpus=actor_cpus, actor_gpus=actor_gpus,
                        task_cpus=task_cpus, batch_size=batch, rows_per_block=rows_per_block,
                        rows_per_window=rows_per_block * WINDOW_BLOCKS, inflight_bytes=inflight)


def sample_pixels(image_uris: list[str]) -> int | None:
    """The largest declared width × height among these images (headers only), None if none opens:
    enough to size batches, cheap enough to run on the driver before the job starts."""
    sizes = [declared_pixels(uri) for uri in image_uris]
    return max((size for size in sizes if size), default=None)
