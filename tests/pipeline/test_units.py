"""Unit tests of pipeline/ pieces that need no Ray."""
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from manifests import schema
from pipeline.outputs import write_atomic, write_batch
from pipeline.report import bootstrap_interval
from pipeline.resources import plan_resources
from pipeline.results_store import ResultsStore
from stages.batch import EMPTY_IMAGE, to_column
from workers.base import MethodResources


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 8, 16, 64])
def test_cpu_plans_always_leave_cpu_for_tasks(cpus):
    plan = plan_resources(cpus, 0, MethodResources(num_cpus=1), n_rows=10_000)
    assert plan.actors * plan.actor_cpus + plan.task_cpus <= cpus + 1e-9
    assert plan.actors >= 1 and plan.task_cpus > 0 and plan.actor_gpus == 0


def test_gpu_plan_uses_one_actor_per_gpu_share():
    on_cpu = plan_resources(2, 0, MethodResources(num_cpus=1, num_gpus=1, batch_size=4, cpu_batch_size=1), n_rows=1000)
    assert on_cpu.batch_size == 1 and on_cpu.actor_gpus == 0  # a GPU method without GPUs: its CPU batch
    assert plan_resources(2, 0, MethodResources(num_gpus=1, batch_size=4, cpu_batch_size=1), n_rows=10,
                          batch_size=3).batch_size == 3
    plan = plan_resources(16, 4, MethodResources(num_cpus=1, num_gpus=1, batch_size=4, cpu_batch_size=1), n_rows=1000)
    assert (plan.actors, plan.actor_gpus, plan.batch_size) == (4, 1, 4)
    cpu_fallback = plan_resources(2, 0, MethodResources(num_cpus=1, num_gpus=1), n_rows=1000)
    assert cpu_fallback.actor_gpus == 0 and cpu_fallback.actors == 1


def test_small_jobs_do_not_start_idle_actors_and_blocks_spread():
    plan = plan_resources(64, 0, MethodResources(batch_size=8), n_rows=10)
    assert plan.actors == 2 and plan.rows_per_block == 8
    big = plan_resources(2, 0, MethodResources(batch_size=8), n_rows=100_000, pixels_per_row=64 * 64)
    assert big.batch_size == 128 and big.rows_per_block == 256  # whole batches, at most 500 blocks


def test_long_manifests_get_blocks_of_several_batches_only_while_their_pixels_fit_a_batch():
    def block(rows: int, side: int) -> tuple[int, int]:
        plan = plan_resources(2, 0, MethodResources(batch_size=8), n_rows=rows, pixels_per_row=side * side)
        return plan.batch_size, plan.rows_per_block

    assert block(5_000, 32) == (128, 128) and block(1_000_000, 32) == (128, 2048)  # 500 blocks
    assert block(1_000_000, 64) == (128, 512)  # 4 batches of 64×64 are 32 MiB: 1,954 blocks
    # Faces: a batch is 32 MiB already, so a block stays one batch however long the manifest.
    assert block(5_000, 256) == block(100_000, 256) == block(1_000_000, 256) == (32, 32)
    assert block(100_000, 512) == (8, 8)


def test_long_manifests_run_in_windows_of_a_bounded_number_of_blocks():
    from pipeline.resources import WINDOW_BLOCKS
    from pipeline.run import windows

    def window(rows: int, side: int) -> int:
        plan = plan_resources(2, 0, MethodResources(batch_size=8), n_rows=rows, pixels_per_row=side * side)
        assert plan.rows_per_window == WINDOW_BLOCKS * plan.rows_per_block
        return plan.rows_per_window

    # Faces: 32-row blocks, so a 100k-row manifest is 13 windows of 8,192 rows and a 5k-row one a single window.
    assert window(5_000, 256) == window(100_000, 256) == 32 * WINDOW_BLOCKS
    assert len(windows(100_000, window(100_000, 256))) == -(-100_000 // (32 * WINDOW_BLOCKS)) == 13
    assert len(windows(5_000, window(5_000, 256))) == 1
    assert window(1_000_000, 32) == 2048 * WINDOW_BLOCKS  # small images: few, long windows
    assert windows(10, 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert windows(10, 0) == [range(0, 10)] and windows(0, 4) == []


def test_small_machines_use_half_cpu_shares_and_gpu_batches_stay_the_methods():
    two = plan_resources(2, 0, MethodResources(num_cpus=1, batch_size=8), n_rows=5000, pixels_per_row=64 * 64)
    assert (two.actors, two.actor_cpus, two.task_cpus, two.batch_size) == (1, 0.5, 0.5, 128)
    # Batches of big images stay under 32 MiB of pixels, but never below the method's own batch;
    # unknown sizes keep the method's batch.
    sizes = {side: plan_resources(2, 0, MethodResources(batch_size=8), 5000, pixels_per_row=side * side).batch_size
             for side in (256, 512, 4000)}
    assert sizes == {256: 32, 512: 8, 4000: 8}
    assert plan_resources(2, 0, MethodResources(batch_size=8), n_rows=5000).batch_size == 8
    big = plan_resources(32, 0, MethodResources(num_cpus=1, batch_size=8), n_rows=5000)
    assert (big.actor_cpus, big.task_cpus) == (1, 1)
    assert plan_resources(2, 0, MethodResources(batch_size=8), n_rows=5000, batch_size=8).batch_size == 8
    gpu = plan_resources(16, 2, MethodResources(num_cpus=1, num_gpus=1, batch_size=4), n_rows=5000)
    # 4 rows of unknown size (assumed 1 megapixel) are 64 MiB, over a batch's cap: blocks of one batch.
    assert (gpu.actors, gpu.batch_size, gpu.rows_per_block) == (2, 4, 4)


def test_inflight_budget_is_a_few_batches_per_actor_with_a_floor():
    from pipeline.resources import INFLIGHT_BATCHES_PER_ACTOR, MIN_INFLIGHT_BYTES

    tiny = plan_resources(2, 0, MethodResources(batch_size=8), n_rows=5000, pixels_per_row=32 * 32)
    assert tiny.inflight_bytes == MIN_INFLIGHT_BYTES  # 128 tiny images a batch: the floor
    gpu = plan_resources(16, 2, MethodResources(num_cpus=1, num_gpus=1, batch_size=4), n_rows=5000,
                         pixels_per_row=1024 * 1024)
    assert gpu.inflight_bytes == INFLIGHT_BATCHES_PER_ACTOR * 2 * 4 * 1024 * 1024 * 16  # 2 actors × 4 rows
    unknown = plan_resources(16, 2, MethodResources(num_cpus=1, num_gpus=1, batch_size=4), n_rows=5000)
    assert unknown.inflight_bytes == gpu.inflight_bytes  # no readable header: sized for large photos


def _rows(ids, status="ok", hash_="h"):
    n = len(ids)
    data = {f.name: [None] * n for f in schema.RESULT_SCHEMA}
    data.update(id=ids, variant=[0] * n, row=list(range(n)), status=[status] * n, method=["m"] * n,
                config_hash=[hash_] * n)
    return pa.Table.from_pydict(data, schema=schema.RESULT_SCHEMA)


def test_results_store_newest_part_wins_and_consolidates(tmp_path):
    store = ResultsStore(tmp_path / "results")
    store.append(_rows(["a", "b"], "error"))
    store.append(_rows(["b", "c"]))
    table = store.read()
    assert sorted(zip(table["id"].to_pylist(), table["status"].to_pylist())) == [
        ("a", "error"), ("b", "ok"), ("c", "ok")]
    store.consolidate()
    assert len(store.parts()) == 1 and store.read().equals(table)


def test_interrupted_consolidation_is_finished_by_recover(tmp_path):
    store = ResultsStore(tmp_path / "results")
    store.append(_rows(["a"]))
    store.append(_rows(["a", "b"]))
    old = store.parts()
    backup = {p.name: p.read_bytes() for p in old}
    store.consolidate()
    for name, data in backup.items():  # as if the process died before deleting the old parts
        (tmp_path / "results" / name).write_bytes(data)
    (tmp_path / "results" / ".part-x.tmp").write_bytes(b"half")
    fresh = ResultsStore(tmp_path / "results")
    fresh.recover()
    assert len(fresh.parts()) == 1 and not list((tmp_path / "results").glob(".*.tmp"))
    assert sorted(fresh.read()["id"].to_pylist()) == ["a", "b"]


def test_write_batch_writes_atomically_inside_out(tmp_path, rng):
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    batch = {"id": to_column(["../../escape", "bad"]), "variant": to_column([0, 0]),
             "status": to_column(["ok", "error"]), "error": to_column([None, "load: x"]),
             "result": to_column([image, EMPTY_IMAGE]), "image": to_column([image, EMPTY_IMAGE])}
    (tmp_path / "images").mkdir()
    out = write_batch(batch, str(tmp_path))
    assert "result" not in out and "image" not in out
    written = tmp_path / out["output"][0]
    assert written.parent == tmp_path / "images" and written.exists() and out["output"][1] is None
    assert not list((tmp_path / "images").glob(".*"))


def test_write_atomic_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing-dir" / "x.png", b"data")
    assert not list(tmp_path.rglob("*.tmp"))


def test_bootstrap_interval_contains_mean_and_is_reproducible():
    values = np.random.default_rng(1).normal(30, 2, size=200)
    a = bootstrap_interval(values, 500, np.random.default_rng(0))
    b = bootstrap_interval(values, 500, np.random.default_rng(0))
    assert a == b and a.low < a.mean < a.high and a.high - a.low < 1.0
    single = bootstrap_interval(np.array([5.0, np.nan]), 500, np.random.default_rng(0))
    assert (single.n, single.mean, single.low) == (1, 5.0, None)


def test_stages_workers_manifests_do_not_import_ray():
    code = ("import sys, stages.load, stages.fusion, stages.metrics, workers.runner, workers.opencv_inpaint, "
            "manifests.build, manifests.validate; sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
