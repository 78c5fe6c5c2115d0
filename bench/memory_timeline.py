"""How a `pipeline run`'s memory moves over time, not just its peak: tree PSS by tenth of the run,
and each process's anonymous / object-store / file-backed PSS early and late in the run.

A peak alone cannot tell a process that creeps from samples that happened to coincide; this shows
which process grows, and whether it is its heap (anon) or the object store's pages it maps (shmem).
The "peak so far" column is what a shorter run of the same plan would have peaked at: a long run's
first tenths stand in for a short run.
Uses scale_bench's synthetic faces and process roles.

    .venv/bin/python bench/memory_timeline.py --rows 60000 [--size 32] [--every 1] [--workdir /dev/shm]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_bench  # noqa: E402

ROLLUP_FIELDS = ("Pss", "Pss_Anon", "Pss_Shmem", "Pss_File")
Snapshot = dict[int, dict[str, int]]  # pid → smaps_rollup field → MiB


def rollup(pid: int) -> dict[str, int]:
    """The process's PSS fields in MiB, from /proc/PID/smaps_rollup (one read, no page walk in Python)."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ROLLUP_FIELDS:
                values[key] = int(rest.split()[0]) >> 10
    return values


def record(command: list[str], log: Path, every: float) -> tuple[list[tuple[float, Snapshot]], dict[int, str]]:
    """Runs `command`, snapshotting every process of its tree every `every` seconds."""
    series: list[tuple[float, Snapshot]] = []
    names: dict[int, str] = {}
    with open(log, "w") as handle:
        child = subprocess.Popen(command, cwd=scale_bench.REPO, stdout=handle, stderr=subprocess.STDOUT)
        root, start = psutil.Process(child.pid), time.perf_counter()
        while child.poll() is None:
            snapshot: Snapshot = {}
            for proc in scale_bench._tree(root):
                try:
                    snapshot[proc.pid] = rollup(proc.pid)
                    _, title = scale_bench.role(proc, child.pid)  # a non-worker's title is its role
                except (OSError, psutil.Error):
                    continue
                if "IDLE" in title:  # keep a worker's busiest title
                    names.setdefault(proc.pid, title)
                else:
                    names[proc.pid] = title
            series.append((time.perf_counter() - start, snapshot))
            time.sleep(every)
    if child.returncode != 0:
        raise SystemExit(f"pipeline run failed ({child.returncode}); see {log}")
    return series, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between snapshots")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        pairs = scale_bench.make_inputs(root / "inputs", 300, args.size)
        manifest = root / "m.parquet"
        scale_bench.make_manifest(manifest, args.rows, pairs)
        command = [sys.executable, "-m", "pipeline.cli", "run", "--manifest", str(manifest), "--out",
                   str(root / "out"), "--method", "telea", "--num-cpus", str(args.num_cpus)]
        series, names = record(command, root / "run.log", args.every)
        shutil.rmtree(root / "out")
    totals = [sum(v.get("Pss", 0) for v in snap.values()) for _, snap in series]
    peak = max(range(len(totals)), key=totals.__getitem__)
    print(f"{args.rows} rows of {args.size}×{args.size}: {series[-1][0]:.0f} s, peak tree PSS {totals[peak]} MiB "
          f"at {series[peak][0]:.0f} s\n")
    print("| tenth | from s | tree PSS MiB, median | 99th percentile | max | peak so far |\n"
          "|---:|---:|---:|---:|---:|---:|")
    n = len(series)
    for tenth in range(10):
        part = totals[tenth * n // 10:(tenth + 1) * n // 10] or [0]
        so_far = max(totals[:(tenth + 1) * n // 10] or [0])
        # Nearest rank: how high the tenth sits, where its single highest sample rises with the
        # number of samples however flat the run is.
        p99 = np.percentile(part, 99, method="inverted_cdf")
        print(f"| {tenth + 1} | {series[tenth * n // 10][0]:.0f} | {statistics.median(part):.0f} | "
              f"{p99:.0f} | {max(part)} | {so_far} |")
    early, late = series[int(0.15 * n)], series[int(0.85 * n)]
    print(f"\nper process, MiB at {early[0]:.0f} s → {late[0]:.0f} s (15 % and 85 % of the run)\n")
    print("| process | anon | object store (shmem) | file |\n|---|---:|---:|---:|")
    for pid in sorted(set(early[1]) | set(late[1]), key=lambda p: names.get(p, "")):
        a, b = early[1].get(pid, {}), late[1].get(pid, {})
        cells = [f"{a.get(k, '-')} → {b.get(k, '-')}" for k in ("Pss_Anon", "Pss_Shmem", "Pss_File")]
        print(f"| {names.get(pid, pid)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
