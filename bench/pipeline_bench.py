"""Images/s of `pipeline run --method telea` against the same work in a plain single-process loop.

The ratio is the pipeline's overhead (or gain, with more cores). Both run in this process, in one
run, on the real dev faces with NVIDIA masks.

    .venv/bin/python bench/pipeline_bench.py [--sizes 256,512] [--repeat 4] [--num-cpus N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from manifests.build import BuildConfig, Pairing, build_manifest  # noqa: E402
from manifests.ids import output_stem  # noqa: E402
from manifests.io import write_manifest  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402
from pipeline.outputs import write_atomic  # noqa: E402
from pipeline.run import execute  # noqa: E402
from stages.fusion import paste_fuse  # noqa: E402
from stages.imageio import encode_png  # noqa: E402
from stages.load import LoadConfig, load_row  # noqa: E402
from stages.metrics import score_row  # noqa: E402
from workers.base import MethodInputs  # noqa: E402
from workers.registry import get_method  # noqa: E402

BENCH = REPO.parent / "shared" / "bench-dev"


def _manifest(size: int, repeat: int, path: Path) -> pa.Table:
    base = build_manifest(BuildConfig(images=BENCH / "faces" / str(size), masks=BENCH / "masks",
                                      pairing=Pairing.RANDOM, seed=0)).table
    tables = []
    for r in range(repeat):
        ids = pa.array([f"{i}_r{r}" for i in base["id"].to_pylist()])
        tables.append(base.set_column(0, "id", ids))
    table = pa.concat_tables(tables)
    write_manifest(table, path)
    return table


def plain_loop(table: pa.Table, out: Path) -> float:
    """The same work without Ray: decode, inpaint, fuse, score, encode, write. Returns seconds."""
    method = get_method("telea")()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for row in table.to_pylist():
        loaded = load_row(row["image"], row["mask"], row["gt"], LoadConfig())
        hole = loaded.hole.astype(bool)
        generated = method(MethodInputs([row["id"]], [loaded.image], [hole])).generated[0]
        result = paste_fuse(loaded.image, generated, hole)
        score_row(result, loaded.gt, hole, with_ms_ssim=True)  # as the score stage (LPIPS is off without its weights)
        write_atomic(out / f"{output_stem(row['id'], 0)}.png", encode_png(result))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeat", type=int, default=4, help="manifest = dev faces repeated N times")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()
    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            manifest = Path(tmp) / f"m{size}.parquet"
            table = _manifest(size, args.repeat, manifest)
            loop_s = plain_loop(table, Path(tmp) / f"loop{size}")
            summary = execute(RunConfig(manifest=manifest, out=Path(tmp) / f"run{size}", method="telea"),
                              progress=lambda _: None)
            assert summary.ok == len(table), summary
            rows.append((size, len(table), len(table) / loop_s, summary.ok / summary.seconds, loop_s / summary.seconds))
    ray.shutdown()
    print(f"\nRay start-up (once per job): {ray_start:.1f} s; CPUs given to Ray: {args.num_cpus}\n")
    print("| size | images | plain loop img/s | pipeline img/s | pipeline / loop |")
    print("|---:|---:|---:|---:|---:|")
    for size, n, loop, pipe, ratio in rows:
        print(f"| {size} | {n} | {loop:.1f} | {pipe:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
