"""What every fault test checks after the dust settles: each manifest id exactly once, all ok, and
every result image whole (it decodes, at the input's size), with no temp file left behind."""
from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from manifests.io import write_manifest


def build_manifest(tmp_path: Path, bench_dev: Path, rows: int) -> tuple[Path, Path]:
    """`rows` real 256² faces with NVIDIA masks; returns (manifest, out folder)."""
    faces = sorted((bench_dev / "faces/256").glob("*.png"))[:rows]
    masks = sorted((bench_dev / "masks").glob("*.png"))[::37][:rows]
    assert len(faces) == len(masks) == rows
    manifest = tmp_path / "m.parquet"
    write_manifest(pa.table({"id": [f"face-{i:03d}" for i in range(rows)], "image": [str(f) for f in faces],
                             "mask": [str(m) for m in masks], "gt": [str(f) for f in faces]}), manifest)
    return manifest, tmp_path / "out"


def finished_images(out: Path) -> int:
    folder = out / "images"
    return sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else 0


def wait_for_images(out: Path, at_least: int, deadline: float) -> int:
    """Wait until `at_least` result images exist; returns how many there are."""
    while time.time() < deadline and finished_images(out) < at_least:
        time.sleep(0.1)
    count = finished_images(out)
    assert count >= at_least, f"only {count} image(s) written before the deadline"
    return count


def assert_complete_run(out: Path, manifest: Path) -> pa.Table:
    """The results hold each manifest id exactly once, all ok, each image whole; returns them."""
    wanted = pq.read_table(manifest)
    table = pq.read_table(out / "results")
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == set(wanted["id"].to_pylist())
    assert set(table["status"].to_pylist()) == {"ok"}, table.filter(pa.compute.equal(table["status"], "error"))
    sizes = {row["id"]: Image.open(row["image"]).size for row in wanted.to_pylist()}
    for row in table.select(["id", "output"]).to_pylist():
        with Image.open(out / row["output"]) as image:
            image.load()  # raises on a truncated file
            assert image.size == sizes[row["id"]]
    leftovers = [p for p in (out / "images").iterdir() if p.name.startswith(".")]
    leftovers += [p for p in (out / "results").iterdir() if not p.name.startswith("part-")]
    assert not leftovers and len(list((out / "images").iterdir())) == len(ids)
    return table
