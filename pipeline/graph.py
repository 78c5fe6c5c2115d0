"""The Ray Data graph: todo rows (pipeline.todo) → load → inpaint (method actors) → fuse → score → write.

All Ray wiring lives here; each step is a pure batch function from `stages/` or `workers/`.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import ray

from pipeline.outputs import write_batch
from pipeline.resources import STORE_HEADROOM, ResourcePlan
from pipeline.todo import Todo
from pipeline.todo_source import TodoSource
from stages.batch import Batch, batch_len, to_column
from stages.fusion import fuse_batch
from stages.load import LoadConfig, load_batch
from stages.metrics import ScoreConfig, score_batch
from workers.runner import MethodRunner

MANIFEST_FIELDS = ("id", "row", "image", "mask", "gt")
OPTIONAL_MANIFEST_FIELDS = ("mask_dilate",)  # sent to the load stage when the manifest has them
# Where weights live, as the driver sees it; actors (possibly on other nodes) get the same setting.
WEIGHT_ENV_VARS = ("FACEFILL_HOME", "TORCH_HOME")


# Fault tolerance (see docs/design.md, Graph). A method actor that dies (its process or its node) is
# restarted without limit, so the pool keeps its size through any number of node losses; the batch
# it was running is retried on the restarted actor, but at most ACTOR_TASK_RETRIES times, so a batch
# that kills its actor every time (a poison row that segfaults or runs out of memory) stops the run
# instead of looping forever. CPU tasks retry the same way after a worker or node death. Only
# system failures are retried: stages turn every per-row exception into an error row, so an
# exception escaping a stage is a bug that a retry would only repeat. Retries are safe because
# every stage is idempotent: images are written atomically under names fixed by id, and results are
# keyed by id on the driver.
ACTOR_RESTARTS = -1
ACTOR_TASK_RETRIES = 4
TASK_RETRIES = 4
NODE_COLUMN = "node"  # the Ray node id whose method actor repaired the row


class NodeRecordingRunner(MethodRunner):
    """The method runner as a Ray actor; records which node ran each row, for cluster users
    (which machine produced a bad result, which node is slow)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: Batch) -> Batch:
        out = super().__call__(batch)
        out[NODE_COLUMN] = to_column([self.node] * batch_len(out))
        return out


def _actor_runtime_env() -> dict | None:
    env = {name: os.environ[name] for name in WEIGHT_ENV_VARS if name in os.environ}
    return {"env_vars": env} if env else None


def input_dataset(todo: Todo, plan: ResourcePlan, rows: range) -> ray.data.Dataset:
    """These rows of the todo, read lazily from the spill file a block at a time
    (pipeline.todo_source): one block per `rows_per_block` rows, since a block feeds one task."""
    columns = [*MANIFEST_FIELDS, *(f for f in OPTIONAL_MANIFEST_FIELDS if f in todo.columns)]
    source = TodoSource(str(todo.spill), rows, plan.rows_per_block, columns)
    return ray.data.read_datasource(source, override_num_blocks=source.num_blocks(),
                                    ray_remote_args={"num_cpus": plan.task_cpus, "max_retries": TASK_RETRIES})


def build_graph(todo: Todo, plan: ResourcePlan, method: str, method_config: Any,
                fusion: str, load_config: LoadConfig, out_dir: str,
                output_format: str = "png", score_config: ScoreConfig = ScoreConfig(),
                rows: range | None = None) -> ray.data.Dataset:
    """The lazy dataset whose batches are finished result rows (no pixels), for the todo's `rows`
    (all of them by default; `pipeline.run` passes one window at a time).

    Dead actors are restarted and their batches retried (ACTOR_RESTARTS, ACTOR_TASK_RETRIES); every
    stage is safe to retry: writes are atomic and results are keyed by id.
    """
    with warnings.catch_warnings():
        # Ray 2.60 takes retry and restart limits only as extra remote args, which it flags as
        # deprecated (for 2.64) without a named replacement yet; the limits are deliberate.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        # Ray's own DataContext defaults set fields it has deprecated; nothing for a user to act on.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray.data.context")
        return _build(todo, plan, method, method_config, fusion, load_config, out_dir, output_format,
                      score_config, range(todo.rows) if rows is None else rows)


def _build(todo: Todo, plan: ResourcePlan, method: str, method_config: Any, fusion: str,
           load_config: LoadConfig, out_dir: str, output_format: str, score_config: ScoreConfig,
           rows: range) -> ray.data.Dataset:
    ds = input_dataset(todo, plan, rows)
    options = ds.context.execution_options  # this dataset's copy of Ray Data's context
    options.resource_limits = options.resource_limits.copy(object_store_memory=plan.inflight_bytes)
    # Ray Data takes the lesser of that and a share of the store (half by default, which in a store
    # sized to the budget would halve the budget and a quarter of the throughput at 256×256).
    ds.context.override_object_store_memory_limit_fraction = 1 / (1 + STORE_HEADROOM)
    ds = ds.map_batches(load_batch, fn_kwargs={"config": load_config}, batch_size=plan.batch_size,
                        batch_format="numpy", num_cpus=plan.task_cpus, max_retries=TASK_RETRIES)
    ds = ds.map_batches(NodeRecordingRunner, fn_constructor_kwargs={"method_name": method, "config": method_config},
                        batch_size=plan.batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=plan.actors),
                        num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus or None,
                        max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_TASK_RETRIES,
                        runtime_env=_actor_runtime_env())
    for fn, kwargs in ((fuse_batch, {"fusion": fusion}), (score_batch, {"config": score_config}),
                       (write_batch, {"out_dir": out_dir, "output_format": output_format})):
        ds = ds.map_batches(fn, fn_kwargs=kwargs, batch_size=plan.batch_size, batch_format="numpy",
                            num_cpus=plan.task_cpus, max_retries=TASK_RETRIES)
    return ds
