"""`pipeline run --address` on a real two-node Ray cluster on this machine: work lands on both nodes,
and a method actor killed mid-run, or the second node lost mid-run, loses and duplicates nothing;
a batch that kills its actor every time stops the run after a bounded number of retries.

One cluster serves the module (starting one costs 10-25 s); the node-loss test runs last. The
method is `test-slow` (Telea after a sleep per batch, `sitecustom/`), so kills land mid-run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.graph import ACTOR_TASK_RETRIES
from tests.pipeline.fault_checks import assert_complete_run, build_manifest
from tests.pipeline.local_cluster import LocalCluster, RayNode, pipeline_cli, start_cluster

pytestmark = pytest.mark.slow

# 5 CPUs in all size the pool to 2 actors, spread one per node; the head's 3 CPUs leave room for a
# restarted actor beside the tasks once the second node is gone (2 actors + 1 task).
NODES = [("node_head", 3), ("node_second", 2)]
ROWS, BATCH = 24, 2
RUN_SECONDS = 240


@pytest.fixture(scope="module")
def cluster():
    cluster = start_cluster(NODES)
    try:
        yield cluster
    finally:
        cluster.stop()


def _start_run(cluster: LocalCluster, manifest: Path, out: Path, seconds_per_batch: float,
               *extra: str) -> subprocess.Popen:
    args = ["run", "--manifest", str(manifest), "--out", str(out), "--address", cluster.address,
            "--method", "test-slow", "--method-opt", f"seconds_per_batch={seconds_per_batch}",
            "--batch-size", str(BATCH), *extra]
    return subprocess.Popen([*pipeline_cli(), *args], env=cluster.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=out.parent)


def _wait_for_actor(node: RayNode, deadline: float, old: set[int]) -> int:
    """A method actor of this run on `node` (`old`: actor pids of earlier runs, maybe still exiting)."""
    while time.time() < deadline and not set(node.actor_pids()) - old:
        time.sleep(0.1)
    pids = sorted(set(node.actor_pids()) - old)
    assert pids, f"no method actor was placed on {node.name}"
    return pids[0]


def _wait_for_calls(cluster: LocalCluster, at_least: int, deadline: float) -> int:
    """Wait until `at_least` batch calls finished on the cluster; returns how many."""
    while time.time() < deadline and cluster.slow_calls() < at_least:
        time.sleep(0.05)
    assert cluster.slow_calls() >= at_least, "the run made no progress"
    return cluster.slow_calls()


def _finish(proc: subprocess.Popen, cluster: LocalCluster) -> str:
    try:
        log, _ = proc.communicate(timeout=RUN_SECONDS)
    finally:
        proc.kill()
    assert proc.returncode == 0, log[-4000:] + cluster.logs()
    return log


def test_work_runs_on_both_nodes(tmp_path, bench_dev, cluster):
    manifest, out = build_manifest(tmp_path, bench_dev, rows=ROWS)
    log = _finish(_start_run(cluster, manifest, out, 0.3), cluster)
    assert "2 actor(s)" in log and f"done: {ROWS} ok" in log
    table = assert_complete_run(out, manifest)
    ids = cluster.node_ids()
    by_node = {name: table["node"].to_pylist().count(node_id) for name, node_id in ids.items()}
    assert by_node["node_head"] > 0 and by_node["node_second"] > 0, by_node
    assert sum(by_node.values()) == ROWS


def test_killed_method_actor_is_restarted_and_nothing_is_lost(tmp_path, bench_dev, cluster):
    manifest, out = build_manifest(tmp_path, bench_dev, rows=ROWS)
    head = cluster.nodes[0]
    old_actors, old_calls = set(head.actor_pids()), cluster.slow_calls()
    proc = _start_run(cluster, manifest, out, 0.5)
    deadline = time.time() + RUN_SECONDS
    victim = _wait_for_actor(head, deadline, old_actors)
    _wait_for_calls(cluster, old_calls + 2, deadline)
    while time.time() < deadline and not cluster.in_call(victim):  # it holds a batch: Ray must resubmit it
        time.sleep(0.01)
    done = cluster.slow_calls() - old_calls
    os.kill(victim, signal.SIGKILL)
    log = _finish(proc, cluster)
    assert done < ROWS // BATCH, "the kill must land mid-run"
    assert victim not in head.actor_pids()
    assert "retries remaining" in log  # Ray resubmitted what the dead actor held
    assert_complete_run(out, manifest)


def test_a_batch_that_kills_its_actor_every_time_stops_the_run_keeping_results(tmp_path, bench_dev, cluster):
    manifest, out = build_manifest(tmp_path, bench_dev, rows=12)
    proc = _start_run(cluster, manifest, out, 0.1, "--method-opt", "crash_on=face-011")
    log, _ = proc.communicate(timeout=RUN_SECONDS)
    assert proc.returncode == 2, log[-4000:]
    assert "error: Ray gave up on a batch" in log and "died on the same batch 5 times" in log
    assert log.count("retries remaining") >= ACTOR_TASK_RETRIES  # bounded, not forever
    kept = pq.read_table(out / "results")
    assert 0 < len(kept) < 12 and "face-011" not in kept["id"].to_pylist()
    assert len(set(kept["id"].to_pylist())) == len(kept) and set(kept["status"].to_pylist()) == {"ok"}


def test_losing_the_second_node_mid_run_loses_nothing(tmp_path, bench_dev, cluster):
    manifest, out = build_manifest(tmp_path, bench_dev, rows=ROWS)
    second = cluster.nodes[1]
    old_actors, old_calls = set(second.actor_pids()), cluster.slow_calls()
    proc = _start_run(cluster, manifest, out, 0.5)
    deadline = time.time() + RUN_SECONDS
    victim = _wait_for_actor(second, deadline, old_actors)
    _wait_for_calls(cluster, old_calls + 2, deadline)
    while time.time() < deadline and not cluster.in_call(victim):  # it holds a batch: the loss strands it
        time.sleep(0.01)
    done = cluster.slow_calls() - old_calls
    second.kill()  # its raylet, object store and workers at once, as when a machine is lost
    log = _finish(proc, cluster)
    assert done < ROWS // BATCH, "the kill must land mid-run"
    assert "marked dead" in log
    assert_complete_run(out, manifest)
