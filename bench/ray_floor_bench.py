"""Peak memory of a bare Ray Data graph shaped like `pipeline run`, on a small and a large dataset.

`bench/scale_bench.py` finds a long run's peak a few per cent above a short one's. This asks how
much of that Ray itself brings: the same embedded Ray (`pipeline.local_ray`, sized from the same
plan), the same in-flight budget, batch size and CPU shares, and a graph of the same shape (read →
CPU tasks make the pixels → one actor copies them → CPU tasks drop them → result rows to the
driver), with none of our stages: no files, no decoding, no inpainting, no Parquet. Every 0.5 s
it sums PSS over the whole process tree, as `scale_bench.py` does.

    .venv/bin/python bench/ray_floor_bench.py [--rows 5000,100000] [--size 32] [--repeat 2] [--method-ms-per-row 0.9]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scale_bench import MIB, Peak, sample  # noqa: E402


def make_pixels(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """What the load stage hands the method: image, hole and ground truth for every row."""
    n = len(batch["id"])
    rng = np.random.default_rng(int(batch["id"][0]))
    image = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return {"id": batch["id"], "image": image, "hole": rng.random((n, size, size)) < 0.3, "gt": image.copy()}


class CopyMethod:
    """The method actor's share of the graph: one generated image per row, after `seconds_per_row`
    of sleep (so the graph runs at about the pipeline's rate rather than Ray's fastest)."""

    def __init__(self, seconds_per_row: float) -> None:
        self.seconds_per_row = seconds_per_row

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.seconds_per_row * len(batch["id"]))
        return {**batch, "generated": 255 - batch["image"]}


def drop_pixels(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What fuse, score and write leave for the driver: a small result row, no pixels."""
    error = np.abs(batch["generated"].astype(np.int16) - batch["gt"]).mean(axis=(1, 2, 3))
    return {"id": batch["id"], "l1": error}


def child(rows: int, size: int, num_cpus: int, seconds_per_row: float) -> None:
    """The bare graph in this process, in an embedded Ray sized as `pipeline run` sizes it."""
    import os

    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # as pipeline.run does
    import ray

    from pipeline.allocators import return_freed_memory
    from pipeline.local_ray import local_resources, size_local_ray, start_local_ray
    from pipeline.resources import plan_resources
    from workers.opencv_inpaint import TeleaInpaint

    return_freed_memory()
    cpus, gpus = local_resources(num_cpus)
    plan = plan_resources(cpus, gpus, TeleaInpaint.resources, rows, None, None, pixels_per_row=size * size)
    start_local_ray(size_local_ray(plan, cpus, gpus))
    blocks = max(1, -(-rows // plan.rows_per_block))
    ds = ray.data.range(rows, override_num_blocks=blocks)  # fused with the next map, which sets its CPUs
    options = ds.context.execution_options
    options.resource_limits = options.resource_limits.copy(object_store_memory=plan.inflight_bytes)
    ds = ds.map_batches(make_pixels, fn_kwargs={"size": size}, batch_size=plan.batch_size, num_cpus=plan.task_cpus)
    ds = ds.map_batches(CopyMethod, fn_constructor_kwargs={"seconds_per_row": seconds_per_row},
                        batch_size=plan.batch_size, compute=ray.data.ActorPoolStrategy(size=plan.actors),
                        num_cpus=plan.actor_cpus)
    ds = ds.map_batches(drop_pixels, batch_size=plan.batch_size, num_cpus=plan.task_cpus)
    started, done = time.perf_counter(), 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        done += len(batch["id"])
    assert done == rows, (done, rows)
    print(f"RATE {rows / (time.perf_counter() - started):.0f}", flush=True)
    ray.shutdown()


def run_once(rows: int, size: int, num_cpus: int, ms_per_row: float) -> tuple[Peak, float]:
    peak, stop = Peak(), threading.Event()
    process = subprocess.Popen([sys.executable, __file__, "--child", str(rows), "--size", str(size),
                                "--num-cpus", str(num_cpus), "--method-ms-per-row", str(ms_per_row)],
                               cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    sampler = threading.Thread(target=sample, args=(process.pid, peak, stop), daemon=True)
    sampler.start()
    output, _ = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"bare graph failed ({process.returncode}) on {rows} rows")
    rate = float(next(line.split()[1] for line in output.splitlines() if line.startswith("RATE")))
    return peak, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="5000,100000", help="dataset sizes, comma-separated")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs of every size (sizes alternate)")
    parser.add_argument("--method-ms-per-row", type=float, default=0.9,
                        help="the actor sleeps this long per row (0.9: about a 32×32 telea run's rate)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.size, args.num_cpus, args.method_ms_per_row / 1000)
        return
    sizes = [int(r) for r in args.rows.split(",")]
    peaks: dict[int, list[float]] = {rows: [] for rows in sizes}
    rates: dict[int, list[float]] = {rows: [] for rows in sizes}
    for rows in (r for _ in range(args.repeat) for r in sizes):
        peak, rate = run_once(rows, args.size, args.num_cpus, args.method_ms_per_row)
        peaks[rows].append(peak.tree_pss / MIB)
        rates[rows].append(rate)
        print(f"{rows} rows: peak tree PSS {peak.tree_pss / MIB:.0f} MiB, {rate:.0f} rows/s, "
              f"{peak.processes} processes", file=sys.stderr, flush=True)
    base = statistics.median(peaks[sizes[0]])
    print(f"\nbare Ray Data graph, {args.size}×{args.size} pixels, the actor {args.method_ms_per_row:g} ms per row, "
          f"embedded Ray with {args.num_cpus} CPUs, {args.repeat} run(s) of each size\n")
    print(f"| rows | peak tree PSS MiB, median (min–max) | vs {sizes[0]:,} rows | rows/s |")
    print("|---:|---:|---:|---:|")
    for rows in sizes:
        median = statistics.median(peaks[rows])
        print(f"| {rows:,} | {median:.0f} ({min(peaks[rows]):.0f}–{max(peaks[rows]):.0f}) | "
              f"{median - base:+.0f} MiB ({(median / base - 1) * 100:+.1f} %) | {statistics.median(rates[rows]):.0f} |")


if __name__ == "__main__":
    main()
