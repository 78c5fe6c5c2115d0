"""Peak memory and throughput of `pipeline run` on a small and a very large manifest.

Streaming means the large run's peak memory stays at the small run's: nothing on the driver or in
Ray may grow with the manifest. Each manifest points at a few hundred distinct synthetic 64×64
faces and masks (files reused under distinct ids, so every row is its own result and image), and
each size runs `pipeline run --method telea` in a fresh embedded Ray in a child process. Every
0.5 s the sampler sums memory over that process's whole tree (driver, GCS, raylet, Ray workers):
RSS counts the object store's shared pages once per process that maps them, PSS splits them
between those processes, so the PSS sum is the memory the job really holds.

    .venv/bin/python bench/scale_bench.py [--rows 5000,100000] [--num-cpus 2] [--distinct 300] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from manifests.io import write_manifest  # noqa: E402

MIB = 1024 * 1024


def synthetic_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth face-like picture: background gradient, skin ellipse, eyes, mouth, sensor noise."""
    yy, xx = np.mgrid[:size, :size] / size
    background = rng.uniform(40, 200, 3)
    image = background[None, None, :] * (0.7 + 0.3 * yy[..., None])
    skin = rng.uniform([150, 100, 80], [240, 190, 160])
    face = ((xx - 0.5) / 0.33) ** 2 + ((yy - 0.52) / 0.42) ** 2 < 1
    image[face] = skin * (0.85 + 0.15 * xx[face, None])
    for cx in (0.37, 0.63):
        image[((xx - cx) / 0.07) ** 2 + ((yy - 0.42) / 0.04) ** 2 < 1] = (30, 30, 40)
    image[((xx - 0.5) / 0.14) ** 2 + ((yy - 0.72) / 0.035) ** 2 < 1] = (150, 50, 60)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """0/255 mask of a few random rectangles and discs covering roughly 5-50 % of the image."""
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(rng.integers(1, 5)):
        if rng.random() < 0.5:
            y, x = rng.integers(0, size - 8, 2)
            h, w = rng.integers(4, size // 2, 2)
            mask[y:y + h, x:x + w] = 255
        else:
            cy, cx = rng.integers(0, size, 2)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(4, size // 4) ** 2] = 255
    return mask


def make_inputs(folder: Path, distinct: int, size: int, seed: int = 0) -> list[tuple[str, str]]:
    """`distinct` (image, mask) PNG pairs under `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(distinct):
        image, mask = folder / f"face{i:04d}.png", folder / f"mask{i:04d}.png"
        Image.fromarray(synthetic_face(rng, size)).save(image)
        Image.fromarray(synthetic_mask(rng, size)).save(mask)
        pairs.append((str(image), str(mask)))
    return pairs


def make_manifest(path: Path, rows: int, pairs: list[tuple[str, str]]) -> None:
    """`rows` rows with distinct ids cycling over `pairs`; the image is its own ground truth."""
    images = [pairs[i % len(pairs)][0] for i in range(rows)]
    masks = [pairs[i % len(pairs)][1] for i in range(rows)]
    write_manifest(pa.table({"id": [f"s{i:07d}" for i in range(rows)], "image": images, "mask": masks,
                             "gt": images}), path)


@dataclass
class Peak:
    """Largest values seen by the sampler."""

    driver_rss: int = 0
    tree_rss: int = 0
    tree_pss: int = 0
    processes: int = 0
    samples: int = 0
    roles: dict[str, int] = field(default_factory=dict)  # peak PSS summed per process role
    largest: dict[str, int] = field(default_factory=dict)  # peak PSS of the role's largest process
    counts: dict[str, int] = field(default_factory=dict)  # most processes of the role at once
    at_peak: list[tuple[str, int]] = field(default_factory=list)  # (process title, PSS) at the PSS peak


def role(proc: psutil.Process, driver: int) -> tuple[str, str]:
    """Which part of the job a process is (the driver, Ray's GCS, raylet, its other daemons, or a
    worker: task or actor process), so the table shows where memory grows; and its title for the
    process list (a worker's Ray title such as `ray::IDLE` or `ray::MapWorker(...)`, else the role)."""
    if proc.pid == driver:
        return "driver", "driver"
    try:
        command = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other", "other"
    joined = " ".join(command)
    for name in ("gcs_server", "raylet"):
        if name in joined:
            return name, name
    if joined.startswith("ray::") or "default_worker.py" in joined:
        return "worker", command[0][:60]
    return "ray daemons", "ray daemons"


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def sample(pid: int, peak: Peak, stop: threading.Event, every: float = 0.5) -> None:
    """Until `stop`: the driver's RSS and the sums of RSS and PSS over its process tree."""
    root = psutil.Process(pid)
    while not stop.is_set():
        rss = pss = 0
        procs = _tree(root)
        titles: list[tuple[str, int]] = []
        by_role: dict[str, int] = {}
        count: dict[str, int] = {}
        for proc in procs:
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += info.rss
            pss += info.pss
            name, title = role(proc, pid)
            titles.append((title, info.pss))
            by_role[name] = by_role.get(name, 0) + info.pss
            count[name] = count.get(name, 0) + 1
            peak.largest[name] = max(peak.largest.get(name, 0), info.pss)
            if proc.pid == pid:
                peak.driver_rss = max(peak.driver_rss, info.rss)
        if pss > peak.tree_pss:
            peak.at_peak = sorted(titles, key=lambda item: -item[1])
        peak.tree_rss, peak.tree_pss = max(peak.tree_rss, rss), max(peak.tree_pss, pss)
        peak.processes = max(peak.processes, len(procs))
        for name, value in by_role.items():
            peak.roles[name] = max(peak.roles.get(name, 0), value)
            peak.counts[name] = max(peak.counts.get(name, 0), count[name])
        peak.samples += 1
        stop.wait(every)


def run_once(manifest: Path, out: Path, num_cpus: int, extra: list[str]) -> tuple[float, Peak, dict]:
    """One `pipeline run` in a child process, sampled; returns wall seconds, peaks and run.json."""
    command = [sys.executable, "-m", "pipeline.cli", "run", "--manifest", str(manifest), "--out", str(out),
               "--method", "telea", "--num-cpus", str(num_cpus), *extra]
    log = out.parent / f"{out.name}.log"
    peak, stop = Peak(), threading.Event()
    start = time.perf_counter()
    with open(log, "w") as handle:
        child = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=sample, args=(child.pid, peak, stop), daemon=True)
        sampler.start()
        code = child.wait()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"pipeline run failed ({code}); last lines of {log}:\n"
                         + "\n".join(log.read_text().splitlines()[-20:]))
    return wall, peak, json.loads((out / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="5000,100000", help="manifest sizes, comma-separated")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--distinct", type=int, default=300, help="distinct image/mask files")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--workdir", type=Path, default=None, help="keep inputs and outputs here")
    parser.add_argument("--detail", action="store_true", help="list every process at each run's PSS peak")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every size this many times (sizes alternate), then summarise the peaks")
    parser.add_argument("run_args", nargs="*", help="extra `pipeline run` options after --")
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        pairs = make_inputs(root / "inputs", args.distinct, args.size)
        table = []
        sizes = [int(r) for r in args.rows.split(",")]
        for rows in sizes:
            make_manifest(root / f"m{rows}.parquet", rows, pairs)
        for attempt, rows in ((a, r) for a in range(args.repeat) for r in sizes):
            out = root / f"out{rows}-{attempt}"
            wall, peak, record = run_once(root / f"m{rows}.parquet", out, args.num_cpus, args.run_args)
            shutil.rmtree(out)
            results = record["results"]
            assert results == {"rows_total": rows, "ok": rows, "error": 0}, results
            table.append((rows, wall, record["this_run"]["seconds"], record["this_run"]["images_per_second"],
                          peak, record["resources"]))
            print(f"{rows} rows: {wall:.0f} s, peak PSS {peak.tree_pss / MIB:.0f} MiB", file=sys.stderr, flush=True)
    resources = table[0][5]
    print(f"\n{args.size}×{args.size} telea, {args.distinct} distinct files, embedded Ray with {args.num_cpus} CPUs; "
          f"{resources['actors']} actor(s), batch {resources['batch_size']}\n")
    print("| rows | wall s (incl. Ray start) | run s | images/s | peak driver RSS MiB | "
          "peak tree RSS MiB | peak tree PSS MiB | processes | samples |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows, wall, seconds, rate, peak, _ in table:
        print(f"| {rows} | {wall:.0f} | {seconds:.0f} | {rate:.0f} | {peak.driver_rss / MIB:.0f} | "
              f"{peak.tree_rss / MIB:.0f} | {peak.tree_pss / MIB:.0f} | {peak.processes} | {peak.samples} |")
    roles = sorted({name for row in table for name in row[4].roles})
    print("\npeak PSS MiB per process role: sum over the role's processes (largest sample) / its largest "
          "process / most processes at once; the largest process shows\n"
          "whether any one of them grows with the manifest.\n")
    print("| rows | " + " | ".join(roles) + " |")
    print("|---:|" + "---:|" * len(roles))
    for rows, *_, peak, _ in table:
        cells = [f"{peak.roles.get(n, 0) / MIB:.0f} / {peak.largest.get(n, 0) / MIB:.0f} / {peak.counts.get(n, 0)}"
                 for n in roles]
        print(f"| {rows} | " + " | ".join(cells) + " |")

    if args.repeat > 1:
        print(f"\npeak tree PSS MiB over {args.repeat} runs of each size: median (min-max); peak driver RSS MiB: median\n")
        print("| rows | peak tree PSS MiB | peak driver RSS MiB |")
        print("|---:|---:|---:|")
        for rows in sizes:
            peaks = [row[4] for row in table if row[0] == rows]
            pss = [p.tree_pss / MIB for p in peaks]
            print(f"| {rows} | {statistics.median(pss):.0f} ({min(pss):.0f}-{max(pss):.0f}) | "
                  f"{statistics.median(p.driver_rss / MIB for p in peaks):.0f} |")
    if args.detail:
        for rows, *_, peak, _ in table:
            print(f"\nprocesses at the {rows}-row run's PSS peak (MiB): "
                  + ", ".join(f"{name} {pss / MIB:.0f}" for name, pss in peak.at_peak))


if __name__ == "__main__":
    main()
