"""Benchmark poisson_fuse against spsolve, pyamg and cv2.seamlessClone (one core).

Run from the repository root:
    .venv/bin/python bench/poisson_bench.py [--sizes 256,512,1024,2048] [--repeats 5]
Prints one Markdown table.  Deviations are max |method - exact| over the hole
pixels, exact = spsolve of Delta f = Delta g (before rounding, clipped to
[0, 255]); uint8 outputs therefore carry up to 0.5 of rounding.  "ours" is
timed twice: the first call on fresh work arrays (release_work_arrays() just
before it) and the median of the repeats that follow on the same input, which
reuse the arrays of the call before when they fit poisson_work's budget.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stages.fusion.poisson import poisson_fuse, poisson_fuse_float  # noqa: E402
from stages.fusion.poisson_work import release_work_arrays  # noqa: E402
from stages.fusion.poisson_reference import exact_poisson, system  # noqa: E402

SHARED = ROOT.parent / "shared" / "bench-dev"
cv2.setNumThreads(1)


def run_spsolve(image, generated, hole) -> np.ndarray:
    """Exact reference (float, unrounded); timed including assembly."""
    return exact_poisson(image, generated, hole)


def run_pyamg(image, generated, hole) -> np.ndarray:
    """pyamg smoothed aggregation + CG, rtol 1e-10 per channel; timed with setup."""
    import pyamg

    a, rhs = system(image, generated, hole)
    ml = pyamg.smoothed_aggregation_solver(a)
    out = image.astype(np.float64)
    out[hole] = np.stack([ml.solve(np.ascontiguousarray(rhs[:, c]), tol=1e-10, accel="cg",
                                   maxiter=500) for c in range(3)], axis=1)
    return out


def run_seamless(image, generated, hole) -> np.ndarray | None:
    """cv2.seamlessClone NORMAL_CLONE with the mask's bounding box centred in place."""
    mask = hole.astype(np.uint8) * 255
    x, y, w, h = cv2.boundingRect(mask)
    try:
        return cv2.seamlessClone(generated, image, mask, (x + w // 2, y + h // 2),
                                 cv2.NORMAL_CLONE)
    except cv2.error:
        return None


def timed(fn: Callable, args: tuple, repeats: int) -> tuple[float, object]:
    """Median wall time over `repeats` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def nvidia_mask(target: float, size: int) -> tuple[str, np.ndarray]:
    """Shared NVIDIA mask closest to the target hole ratio, nearest-resized."""
    rows = [line.split(",") for line in (SHARED / "masks.csv").read_text().splitlines()[1:]]
    name = min(rows, key=lambda r: abs(float(r[1]) - target))[0]
    mask = cv2.imread(str(SHARED / "masks" / name), cv2.IMREAD_GRAYSCALE)
    return name, cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST) > 127


def images(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two different faces: known image and a mismatched 'generated' one."""
    faces = sorted((SHARED / "faces" / "512").glob("*.png"))
    a, b = (cv2.resize(cv2.imread(str(f)), (size, size), interpolation=cv2.INTER_CUBIC)
            for f in (faces[0], faces[1]))
    return a, b


def deviation(result: np.ndarray | None, ref: np.ndarray, hole: np.ndarray) -> str:
    """Max |clip(result) - clip(ref)| over the hole, or 'error'."""
    if result is None:
        return "error"
    ours = np.clip(result[hole].astype(np.float64), 0, 255)
    return f"{np.abs(ours - np.clip(ref[hole], 0, 255)).max():.3f}"


def bench_case(size: int, kind: str, hole: np.ndarray, repeats: int, slow_repeats: int) -> str:
    """One table row."""
    image, generated = images(size)
    n = int(hole.sum())
    release_work_arrays()
    t_first, _ = timed(poisson_fuse, (image, generated, hole), 1)
    t_ours, ours = timed(poisson_fuse, (image, generated, hole), repeats)
    t_sp, ref = timed(run_spsolve, (image, generated, hole), slow_repeats)
    t_amg, amg = timed(run_pyamg, (image, generated, hole), slow_repeats)
    t_sc, sc = timed(run_seamless, (image, generated, hole), repeats)
    err = np.abs(poisson_fuse_float(image, generated, hole)[hole] - ref[hole]).max()
    return (f"| {size} | {kind} | {n} | {t_ours:.3f} | {t_first:.3f} | {1e6 * t_ours / n:.3f} | "
            f"{t_sp:.3f} | "
            f"{t_amg:.3f} | {t_sc:.3f} | {deviation(ours, ref, hole)} | {err:.1e} | "
            f"{deviation(amg, ref, hole)} | {deviation(sc, ref, hole)} | "
            f"{t_sc / t_ours:.2f} | {t_sp / t_ours:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024,2048")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow-repeats-2048", type=int, default=1,
                        help="repeats for spsolve/pyamg at 2048 (they take tens of seconds)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    image, generated = images(64)
    blob = np.zeros((64, 64), bool)
    blob[8:56, 10:50] = True
    for warm_hole in (rng.random((64, 64)) < 0.5, blob):  # load the jit cache of both paths
        poisson_fuse(image, generated, warm_hole)
    print("| size | mask | hole px | ours s | ours 1st call s | ours µs/hole px | spsolve s | "
          "pyamg s | "
          "seamlessClone s | dev ours (uint8) | ours float err | dev pyamg | "
          "dev seamlessClone (uint8) | seamlessClone/ours | spsolve/ours |")
    print("|" + "---|" * 15)
    for size in (int(s) for s in args.sizes.split(",")):
        slow = args.slow_repeats_2048 if size >= 2048 else args.repeats
        cases = []
        for target in (0.2, 0.5):
            name, hole = nvidia_mask(target, size)
            cases.append((f"NVIDIA {name} ({hole.mean():.0%})", hole))
        for ratio in (0.2, 0.5):
            cases.append((f"random {ratio:.0%}", rng.random((size, size)) < ratio))
        for kind, hole in cases:
            print(bench_case(size, kind, hole, args.repeats, slow), flush=True)
    print(f"\nmedian of {args.repeats} runs (ours: after its first call, timed alone); "
          f"spsolve/pyamg at 2048: {args.slow_repeats_2048} run(s). Single thread.")


if __name__ == "__main__":
    main()
