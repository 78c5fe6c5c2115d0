"""Images/s of `pipeline run --method telea` against actors, batch size and CPU shares, and where the time goes.

Every configuration runs the same synthetic manifest through `pipeline.run.execute` in one embedded
Ray (started once); the first row is the plan `pipeline/resources.py` picks by default, the
baseline the others are compared with. Each run starts its own actor pool (seconds: a fresh worker
imports the method), so besides the whole-run rate the table shows the steady rate after the first
results reached the driver — what a long job sees. Per-stage time comes from the results' own
t_load..t_write columns (wall seconds each row spent in each stage inside the Ray tasks and
actors, waits for fsync included); "busy" is their sum over (CPUs × run time), and the rest is idle
CPU: Ray Data's scheduling, serialisation and object-store hops, and start-up.

    .venv/bin/python bench/throughput_bench.py [--rows 3000] [--size 64] [--num-cpus 2] [--repeat 3] \
        [--workdir /dev/shm] [--configs "default; batch=128; actors=2; actor_cpus=1,task_cpus=1"]

A config is comma-separated overrides of the default plan: actors, batch (rows per method call;
also per block unless block is given), block (rows per input block: one Ray task each for the CPU
stages), actor_cpus, task_cpus. Repeats are interleaved and medians shown.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import pipeline.run as run_module  # noqa: E402
from manifests.schema import TIMING_COLUMNS  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402
from pipeline.resources import WINDOW_BLOCKS, ResourcePlan, plan_resources  # noqa: E402
from scale_bench import make_inputs, make_manifest  # noqa: E402

# The default plan, then the plan before tuning (whole-CPU shares, the method's batch of 8), then
# one change at a time from the default.
DEFAULT_CONFIGS = ("default; actor_cpus=1,task_cpus=1,batch=8; batch=8; batch=32; "
                   "actor_cpus=1,task_cpus=1; actors=2; task_cpus=0.25")
PROGRESS = re.compile(r"progress: \d+/\d+ rows \((\d+) ok")
FIELDS = {"actors": ("actors", int), "batch": ("batch_size", int), "actor_cpus": ("actor_cpus", float),
          "task_cpus": ("task_cpus", float), "block": ("rows_per_block", int)}


def parse_config(spec: str) -> dict:
    """'actors=2,batch=32' -> {'actors': 2, 'batch_size': 32}; 'default' -> {}."""
    overrides = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        if item == "default":
            continue
        key, _, value = item.partition("=")
        if key not in FIELDS:
            raise SystemExit(f"unknown config key '{key}' in '{spec}' (known: {', '.join(FIELDS)})")
        name, kind = FIELDS[key]
        overrides[name] = kind(value)
    return overrides


def planner(overrides: dict):
    """`plan_resources` with some fields forced; batch also sets the block size unless block is given,
    and windows keep their number of blocks."""
    def plan(*args, **kwargs) -> ResourcePlan:
        base = plan_resources(*args, **kwargs)
        if "batch_size" in overrides:
            overrides.setdefault("rows_per_block", overrides["batch_size"])
        if "rows_per_block" in overrides:
            overrides.setdefault("rows_per_window", overrides["rows_per_block"] * WINDOW_BLOCKS)
        return dataclasses.replace(base, **overrides)
    return plan


@dataclass
class Measured:
    """One run's figures."""

    rate: float  # ok images / run seconds, as `pipeline run` reports it
    steady: float  # images/s after the first results arrived (actor start-up excluded)
    first: float  # seconds until the first results reached the driver
    plan: ResourcePlan
    stages: dict[str, float]  # seconds per stage summed over rows, and "wall"


def run_config(manifest: Path, out: Path, overrides: dict) -> Measured:
    """One run of `execute` with the plan overridden, timing each progress line."""
    plan_used: list[ResourcePlan] = []
    ticks: list[tuple[float, int]] = []  # (time, ok rows so far) at each results batch
    start = time.perf_counter()

    def progress(line: str) -> None:
        match = PROGRESS.match(line)
        if match:
            ticks.append((time.perf_counter(), int(match.group(1))))

    def recording(*args, **kwargs) -> ResourcePlan:
        plan_used.append(planner(dict(overrides))(*args, **kwargs))
        return plan_used[-1]

    run_module.plan_resources = recording
    try:
        summary = run_module.execute(RunConfig(manifest=manifest, out=out, method="telea", lpips="off"),
                                     progress=progress)
    finally:
        run_module.plan_resources = plan_resources
    assert summary.errors == 0 and summary.ok > 0, summary
    results = pq.read_table(out / "results", columns=list(TIMING_COLUMNS))
    stages = {name: sum(v for v in results[name].to_pylist() if v) for name in TIMING_COLUMNS}
    (t_first, ok_first), (t_last, ok_last) = ticks[0], ticks[-1]
    steady = (ok_last - ok_first) / (t_last - t_first) if t_last > t_first else float("nan")
    return Measured(summary.ok / summary.seconds, steady, t_first - start, plan_used[-1],
                    {**stages, "wall": summary.seconds})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64, help="synthetic image side in pixels")
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="';'-separated plan overrides")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="inputs and outputs here (e.g. /dev/shm to take disk fsyncs out)")
    args = parser.parse_args()
    import ray

    specs = [s.strip() for s in args.configs.split(";") if s.strip()]
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    runs: dict[str, list[Measured]] = {s: [] for s in specs}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        manifest = root / "m.parquet"
        make_manifest(manifest, args.rows, make_inputs(root / "inputs", args.distinct, args.size))
        for r in range(args.repeat):
            for k, spec in enumerate(specs):
                measured = run_config(manifest, root / f"out{r}_{k}", parse_config(spec))
                runs[spec].append(measured)
                print(f"{spec}: {measured.rate:.0f} img/s, steady {measured.steady:.0f}", file=sys.stderr, flush=True)
    ray.shutdown()
    base = statistics.median(m.steady for m in runs[specs[0]])
    print(f"\n{args.rows} rows of {args.size}×{args.size} telea, embedded Ray with {args.num_cpus} CPUs, "
          f"median of {args.repeat}. images/s: whole run as `pipeline run` reports it; steady: after the "
          "first results (actor start-up excluded); stage columns: ms per row inside Ray tasks/actors\n")
    print("| config | actors × CPU | task CPU | batch | block | first result s | images/s | steady images/s | "
          "steady vs default | " + " | ".join(name.removeprefix("t_") for name in TIMING_COLUMNS) + " | busy |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(TIMING_COLUMNS) + "---:|")
    for spec in specs:
        plan, stages = runs[spec][0].plan, runs[spec][0].stages
        steady = statistics.median(m.steady for m in runs[spec])
        per_row = [f"{1000 * stages[name] / args.rows:.2f}" for name in TIMING_COLUMNS]
        busy = sum(stages[name] for name in TIMING_COLUMNS) / (stages["wall"] * args.num_cpus)
        print(f"| {spec} | {plan.actors} × {plan.actor_cpus:g} | {plan.task_cpus:g} | {plan.batch_size} | "
              f"{plan.rows_per_block} | {statistics.median(m.first for m in runs[spec]):.1f} | "
              f"{statistics.median(m.rate for m in runs[spec]):.0f} | {steady:.0f} | {steady / base:.2f} | "
              + " | ".join(per_row) + f" | {busy:.0%} |")

if __name__ == "__main__":
    main()
