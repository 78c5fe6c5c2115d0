"""Where one poisson_fuse call spends its time: wall time per kernel (one core).

Run from the repository root:
    .venv/bin/python bench/poisson_profile.py [--size 1024] [--mask nvidia50|nvidia20|random20|random50] [--cold]
Prints one Markdown table (kernel, calls, total ms, ms per call) for a single
call after a warm-up call (which also leaves its work arrays to reuse; --cold
releases them first, as for the first image of a size); outer entries (solve,
refine, inner_pcg) include the kernels below them.  Same inputs as
bench/poisson_bench.py.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
import poisson_bench  # noqa: E402
from stages.fusion import poisson, poisson_dense, poisson_pcg  # noqa: E402
from stages.fusion.poisson_work import release_work_arrays  # noqa: E402


def timed_wrapper(name: str, fn: Callable, totals: dict[str, list[float]]) -> Callable:
    """fn, adding its wall time and call count to totals[name]."""
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            entry = totals.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - start
    return run


def instrument(totals: dict[str, list[float]]) -> None:
    """Wrap every numba kernel of poisson_dense and the driver steps of poisson_pcg."""
    for name in dir(poisson_dense):
        fn = getattr(poisson_dense, name)
        if not name.startswith("_") and hasattr(fn, "py_func"):
            setattr(poisson_dense, name, timed_wrapper(name, fn, totals))
    for name in ("solve", "build_hierarchy", "DenseLevels", "refine", "inner_pcg",
                 "dense_coarse_cycle"):
        setattr(poisson_pcg, name, timed_wrapper(name, getattr(poisson_pcg, name), totals))
    poisson.solve = poisson_pcg.solve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--mask", default="nvidia50",
                        choices=["nvidia20", "nvidia50", "random20", "random50"])
    parser.add_argument("--cold", action="store_true", help="fresh work arrays for the call")
    args = parser.parse_args()
    ratio = int(args.mask[-2:]) / 100
    if args.mask.startswith("nvidia"):
        _, hole = poisson_bench.nvidia_mask(ratio, args.size)
    else:
        hole = np.random.default_rng(0).random((args.size, args.size)) < ratio
    image, generated = poisson_bench.images(args.size)
    poisson.poisson_fuse(image, generated, hole)  # load the jit cache
    totals: dict[str, list[float]] = {}
    instrument(totals)
    if args.cold:
        release_work_arrays()
    start = time.perf_counter()
    poisson.poisson_fuse(image, generated, hole)
    total = time.perf_counter() - start
    print(f"{args.size}², {args.mask}, {int(hole.sum())} hole px, "
          f"{'fresh' if args.cold else 'reused'} work arrays: {total * 1e3:.1f} ms\n")
    print("| kernel | calls | total ms | ms per call |\n|---|---:|---:|---:|")
    for name, (calls, seconds) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        print(f"| {name} | {calls} | {seconds * 1e3:.1f} | {seconds * 1e3 / calls:.2f} |")


if __name__ == "__main__":
    main()
