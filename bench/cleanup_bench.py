"""Clean-up benchmark: repair the 60 stamped dev faces (watermark / subtitle / logo) with every CPU
method through `pipeline run`, and score inside the stamp's mask against the clean face.

Prints a Markdown table: per stamp kind, mean PSNR and masked SSIM inside the mask, per method, with
the stamped input's own scores as the baseline (what you get by doing nothing).

    .venv/bin/python bench/cleanup_bench.py [--methods telea,ns] [--num-cpus N] [--out DIR]

- `psnr_hole`: PSNR (dB) over the mask's pixels and RGB channels (the pipeline's `psnr_hole`).
- `ssim_hole`: masked SSIM, the SSIM map of the whole image (11x11 Gaussian window, sigma 1.5, per
  RGB channel then averaged, as the pipeline's `ssim`) averaged over the mask's pixels only
  (`stages.metrics.ssim_hole`).
Both are computed from the written result images, so they score what a user gets. Methods needing a
GPU are skipped on machines without one, and methods whose weights are missing are skipped; the
script says which and why.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from manifests.io import write_manifest  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402
from pipeline.run import RunError, execute  # noqa: E402
from stages.metrics import psnr_hole, ssim_hole  # noqa: E402
from workers.registry import available_methods, build_config  # noqa: E402

BENCH = REPO.parent / "shared" / "bench-dev"
KINDS = ("watermark", "subtitle", "logo")


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def build(path: Path) -> list[dict]:
    """The manifest of all cleanup.csv rows (id, image = stamped input, mask, gt, kind)."""
    with open(BENCH / "cleanup.csv", newline="") as handle:
        items = list(csv.DictReader(handle))
    rows = [{"id": r["id"], "image": str(BENCH / r["input"]), "mask": str(BENCH / r["mask"]),
             "gt": str(BENCH / r["gt"]), "kind": r["kind"]} for r in items]
    write_manifest(pa.Table.from_pylist(rows), path)
    return rows


def score(rows: list[dict], outputs: dict[str, Path]) -> dict[str, list[tuple[float, float]]]:
    """(psnr_hole, ssim_hole) per row, by kind; `outputs` maps id to the image to score."""
    by_kind: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
    for row in rows:
        gt = _rgb(Path(row["gt"]))
        hole = np.asarray(Image.open(row["mask"]).convert("L")) > 0
        image = _rgb(outputs[row["id"]])
        by_kind[row["kind"]].append((psnr_hole(image, gt, hole), ssim_hole(image, gt, hole)))
    return by_kind


def pick_methods(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """Methods to run and messages for the ones skipped."""
    import torch

    run, skipped = [], []
    for name, cls in available_methods().items():
        if name.startswith("test-") or (requested and name not in requested):
            continue
        missing = cls.missing_weights(build_config(cls, {}))
        if missing:
            skipped.append(f"{name}: weights missing ({missing[0].splitlines()[0]})")
        elif cls.resources.num_gpus > 0 and not torch.cuda.is_available() and not requested:
            skipped.append(f"{name}: needs a GPU (none here); ask for it with --methods {name}")
        else:
            run.append(name)
    return run, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", help="comma-separated; default: every CPU method with its weights")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep run folders here (default: a temp dir)")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="cleanup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = build(work / "cleanup.parquet")
    methods, skipped = pick_methods(args.methods.split(",") if args.methods else None)

    table: dict[str, dict[str, list[tuple[float, float]]]] = {
        "stamped input (baseline)": score(rows, {r["id"]: Path(r["image"]) for r in rows})}
    speed: dict[str, str] = {"stamped input (baseline)": "–"}
    for name in methods:
        out = work / name
        config = RunConfig(manifest=work / "cleanup.parquet", out=out, method=name, num_cpus=args.num_cpus)
        start = time.perf_counter()
        try:
            summary = execute(config, progress=lambda line: None, overwrite=True)
        except RunError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        seconds = time.perf_counter() - start
        results = pq.read_table(out / "results").to_pylist()
        failed = [r["id"] for r in results if r["status"] != "ok"]
        if failed:
            skipped.append(f"{name}: {len(failed)} row(s) failed, e.g. {failed[0]}; not scored")
            continue
        table[name] = score(rows, {r["id"]: out / r["output"] for r in results})
        speed[name] = f"{summary.ok / seconds:.1f}"

    header = ["method"] + [f"{k} {m}" for k in (*KINDS, "all") for m in ("PSNR", "SSIM")] + ["img/s"]
    counts = {k: sum(r["kind"] == k for r in rows) for k in KINDS}
    lines = [f"Clean-up benchmark: {len(rows)} stamped 512 px dev faces "
             f"({', '.join(f'{counts[k]} {k}' for k in KINDS)}); mean inside the mask vs the clean face.",
             "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, by_kind in table.items():
        cells = []
        for kind in (*KINDS, "all"):
            values = [v for k in KINDS for v in by_kind[k]] if kind == "all" else by_kind[kind]
            cells += [f"{np.mean([v[0] for v in values]):.2f}", f"{np.mean([v[1] for v in values]):.4f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {speed[name]} |")
    lines += ["", "PSNR: `psnr_hole`, dB over the mask's pixels. SSIM: masked SSIM, the 11x11 Gaussian "
              "(sigma 1.5) SSIM map averaged over RGB and over the mask's pixels. img/s: whole "
              "`pipeline run` incl. Ray start-up."]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
