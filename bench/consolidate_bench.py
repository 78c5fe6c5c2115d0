"""Peak memory and time of the final results consolidation, against the number of results.

A finished run rewrites its results parts as one deduplicated part in manifest order
(`ResultsStore.consolidate`). Up to `KEY_BUCKET_ROWS` results it sorts their keys in memory; beyond,
it spills them by id hash into buckets on disk and merges the sorted buckets, so its memory stops
growing. This builds N synthetic results in parts of `--part-rows` (what a run's flushes write;
`--shuffled` writes the rows in random order) and consolidates a copy of them in a fresh process,
once with the buckets and once with every key in memory (`KEY_BUCKET_ROWS` above N: the baseline,
measured in the same run), sampling the process's anonymous memory every 20 ms.

    .venv/bin/python bench/consolidate_bench.py [--rows 100000,1000000,4000000] [--part-rows 6144]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from manifests import schema  # noqa: E402
from pipeline.results_store import ResultsStore  # noqa: E402

MIB = 1024 * 1024


def anonymous_mib() -> float:
    """This process's anonymous (heap and private mapping) PSS: what consolidation allocates."""
    total, counting = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                fields = line.split()
                name = fields[5] if len(fields) > 5 else ""
                counting = name in ("", "[heap]") or name.startswith("[anon")
            elif counting and line.startswith("Pss:"):
                total += int(line.split()[1])
    return total / 1024


def make_results(folder: Path, rows: int, part_rows: int, shuffled: bool, seed: int = 0) -> None:
    """`rows` results with the columns of a telea run, `part_rows` to a part."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows) if shuffled else np.arange(rows)
    store = ResultsStore(folder)
    for start in range(0, rows, part_rows):
        index = order[start:start + part_rows]
        n = len(index)
        columns = {field.name: pa.nulls(n, field.type) for field in schema.RESULT_SCHEMA}
        columns.update({
            schema.ID: pa.array([f"s{i:08d}" for i in index]), schema.ROW: pa.array(index.astype(np.int64)),
            schema.VARIANT: pa.array(np.zeros(n, np.int32)), schema.STATUS: pa.array(["ok"] * n),
            schema.OUTPUT: pa.array([f"images/s{i:08d}.png" for i in index]),
            schema.MASK_RATIO: pa.array(rng.random(n)), schema.BUCKET: pa.array(["0.20-0.30"] * n),
            schema.METHOD: pa.array(["telea"] * n), schema.CONFIG_HASH: pa.array(["7efbb81de7a9"] * n),
            "psnr": pa.array(rng.uniform(15, 35, n)), "ssim": pa.array(rng.random(n)),
            "l1": pa.array(rng.random(n) / 10), "psnr_hole": pa.array(rng.uniform(10, 30, n)),
            **{name: pa.array(rng.random(n) / 100) for name in schema.TIMING_COLUMNS},
        })
        store.append(pa.Table.from_pydict(columns, schema=schema.RESULT_SCHEMA))


def measure(folder: Path, bucket_rows: int | None) -> dict:
    """Consolidate `folder` in this process; its time and anonymous memory above the start."""
    import pipeline.results_store as results_store
    from pipeline.allocators import return_freed_memory

    return_freed_memory()  # the driver's allocator settings, as in `pipeline run`
    if bucket_rows is not None:
        results_store.KEY_BUCKET_ROWS = bucket_rows
    store = ResultsStore(folder)
    base = peak = anonymous_mib()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, anonymous_mib())
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    counts = store.consolidate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {"seconds": seconds, "added_mib": max(peak, anonymous_mib()) - base, "rows": counts.rows_total}


def run_child(source: Path, work: Path, bucket_rows: int | None) -> dict:
    """`measure` in a fresh interpreter on a copy of `source`."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); import consolidate_bench as b; "
            f"from pathlib import Path; print(json.dumps(b.measure(Path({str(work)!r}), {bucket_rows!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000,4000000", help="result counts, comma-separated")
    parser.add_argument("--part-rows", type=int, default=6144, help="rows per results part (a 5-s flush)")
    parser.add_argument("--shuffled", action="store_true", help="parts in random row order")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the synthetic results here")
    args = parser.parse_args()
    import pipeline.results_store as results_store

    root = args.workdir or Path(tempfile.mkdtemp(prefix="ffcons-"))
    print(f"consolidation, parts of {args.part_rows} rows{' in random order' if args.shuffled else ''}; "
          f"KEY_BUCKET_ROWS {results_store.KEY_BUCKET_ROWS}\n")
    print("| results | parts | in memory s | in memory +MiB | buckets | bucketed s | bucketed +MiB | memory ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in (int(r) for r in args.rows.split(",")):
        source = root / f"results-{rows}-{args.part_rows}{'-shuffled' if args.shuffled else ''}"
        if not source.exists():
            make_results(source, rows, args.part_rows, args.shuffled)
        memory = run_child(source, root / "work", bucket_rows=rows + 1)
        bucketed = run_child(source, root / "work", bucket_rows=None)
        assert memory["rows"] == bucketed["rows"] == rows
        buckets = max(1, -(-rows // results_store.KEY_BUCKET_ROWS))
        parts = len(list(source.iterdir()))
        print(f"| {rows:,} | {parts} | {memory['seconds']:.2f} | {memory['added_mib']:.0f} | {buckets} | "
              f"{bucketed['seconds']:.2f} | {bucketed['added_mib']:.0f} | "
              f"{bucketed['added_mib'] / max(memory['added_mib'], 1e-9):.2f} |", flush=True)
    shutil.rmtree(root / "work", ignore_errors=True)
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
