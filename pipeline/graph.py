"""The Ray Data graph: manifest rows → load → inpaint (method actors) → fuse → score → write.

All Ray wiring lives here; each step is a pure batch function from `stages/` or `workers/`.
"""
from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import ray

from pipeline.outputs import write_batch
from pipeline.resources import ResourcePlan
from stages.fusion import fuse_batch
from stages.load import LoadConfig, load_batch
from stages.metrics import score_batch
from workers.runner import MethodRunner

MANIFEST_FIELDS = ("id", "row", "image", "mask", "gt")
OPTIONAL_MANIFEST_FIELDS = ("mask_dilate",)  # sent to the load stage when the manifest has them
# Where weights live, as the driver sees it; actors (possibly on other nodes) get the same setting.
WEIGHT_ENV_VARS = ("FACEFILL_HOME", "TORCH_HOME")


def _actor_runtime_env() -> dict | None:
    env = {name: os.environ[name] for name in WEIGHT_ENV_VARS if name in os.environ}
    return {"env_vars": env} if env else None


def input_dataset(table: pa.Table, rows_per_block: int) -> ray.data.Dataset:
    """Slice the manifest into blocks ourselves: one small Parquet file would read as one block
    and feed a single actor."""
    table = table.select([*MANIFEST_FIELDS, *(f for f in OPTIONAL_MANIFEST_FIELDS if f in table.column_names)])
    blocks = [table.slice(start, rows_per_block) for start in range(0, len(table), rows_per_block)]
    return ray.data.from_arrow(blocks)


def build_graph(table: pa.Table, plan: ResourcePlan, method: str, method_config: Any,
                fusion: str, load_config: LoadConfig, out_dir: str,
                output_format: str = "png") -> ray.data.Dataset:
    """The lazy dataset whose batches are finished result rows (no pixels).

    Ray Data restarts a dead method actor and retries its tasks by default (max_restarts=-1), and
    every stage is safe to retry: writes are atomic and results are keyed by id.
    """
    ds = input_dataset(table, plan.rows_per_block)
    ds = ds.map_batches(load_batch, fn_kwargs={"config": load_config}, batch_size=plan.batch_size,
                        batch_format="numpy", num_cpus=plan.task_cpus)
    ds = ds.map_batches(MethodRunner, fn_constructor_kwargs={"method_name": method, "config": method_config},
                        batch_size=plan.batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=plan.actors),
                        num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus or None,
                        runtime_env=_actor_runtime_env())
    for fn, kwargs in ((fuse_batch, {"fusion": fusion}), (score_batch, {}),
                       (write_batch, {"out_dir": out_dir, "output_format": output_format})):
        ds = ds.map_batches(fn, fn_kwargs=kwargs, batch_size=plan.batch_size, batch_format="numpy",
                            num_cpus=plan.task_cpus)
    return ds
