"""Clean-up jobs end to end through the CLI and Ray: stamped dev faces (watermark / subtitle / logo)
with exact masks, and photos of mixed sizes and formats with one logo mask and no ground truth."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifests.io import write_manifest
from pipeline.cli import app
from stages.metrics import psnr_hole

pytestmark = pytest.mark.slow


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_cleanup_items_through_ray_beat_the_stamped_input(tmp_path, bench_dev, ray_local):
    with open(bench_dev / "cleanup.csv", newline="") as handle:
        items = list(csv.DictReader(handle))
    picked = [row for kind in ("watermark", "subtitle", "logo") for row in
              [r for r in items if r["kind"] == kind][:2]]
    rows = [{"id": r["id"], "image": str(bench_dev / r["input"]), "mask": str(bench_dev / r["mask"]),
             "gt": str(bench_dev / r["gt"]), "kind": r["kind"]} for r in picked]
    manifest, out = tmp_path / "m.parquet", tmp_path / "out"
    write_manifest(pa.Table.from_pylist(rows), manifest)
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out), "--method", "telea"])
    assert result.exit_code == 0, result.output
    by_id = {r["id"]: r for r in pq.read_table(out / "results").to_pylist()}
    assert sorted(by_id) == sorted(r["id"] for r in rows)
    for row in rows:
        res = by_id[row["id"]]
        assert res["status"] == "ok" and res["kind"] == row["kind"] and res["warning"] is None
        stamped, gt = _rgb(Path(row["image"])), _rgb(Path(row["gt"]))
        hole = np.asarray(Image.open(row["mask"]).convert("L")) > 0
        output = _rgb(out / res["output"])
        assert output.shape == stamped.shape
        assert np.array_equal(output[~hole], stamped[~hole]), "known pixels equal the input exactly"
        assert np.array_equal(stamped[~hole], gt[~hole])  # the data's own promise
        repaired, baseline = psnr_hole(output, gt, hole), psnr_hole(stamped, gt, hole)
        assert repaired > baseline, f"{row['id']}: {repaired:.2f} dB <= stamped {baseline:.2f} dB"
        assert abs(res["psnr_hole"] - repaired) < 1e-9


def _gradient(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), np.full_like(xx, 70)], 2).astype(np.uint8)


def test_one_logo_mask_mixed_sizes_and_formats_no_ground_truth(tmp_path, ray_local):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_gradient(60, 90)).save(photos / "a.png")
    Image.fromarray(_gradient(120, 180)).save(photos / "b.jpg", quality=95)
    logo = np.zeros((60, 90), np.uint8)
    logo[45:52, 70:84] = 255
    Image.fromarray(logo).save(tmp_path / "logo.png")
    manifest, out = tmp_path / "m.parquet", tmp_path / "out"
    built = CliRunner().invoke(app, ["manifest", "build", "--images", str(photos), "--mask",
                                     str(tmp_path / "logo.png"), "--dilate", "1", "--out", str(manifest)])
    assert built.exit_code == 0, built.output
    ran = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out), "--dilate", "2",
                                   "--format", "same"])
    assert ran.exit_code == 0, ran.output
    by_id = {r["id"]: r for r in pq.read_table(out / "results").to_pylist()}
    assert {i: r["status"] for i, r in by_id.items()} == {"a": "ok", "b": "ok"}
    assert by_id["a"]["output"].endswith(".png") and by_id["b"]["output"].endswith(".jpg")
    assert by_id["a"]["warning"] is None and "resized to image 180x120" in by_id["b"]["warning"]
    assert by_id["a"]["mask_dilate"] == 2 and by_id["a"]["psnr"] is None and by_id["b"]["psnr"] is None
    output_a = _rgb(out / by_id["a"]["output"])
    hole = np.zeros((60, 90), bool)
    hole[43:54, 68:86] = True  # the logo grown by 2 px covers at most this box
    assert np.array_equal(output_a[~hole], _gradient(60, 90)[~hole]), "PNG keeps known pixels bit-identical"
    assert by_id["a"]["mask_ratio"] > (7 * 14) / (60 * 90), "the hole was grown"
    output_b = Image.open(out / by_id["b"]["output"])
    assert output_b.format == "JPEG" and output_b.size == (180, 120)

    # No ground truth: the report shows "–", not zeros, and says why.
    reported = CliRunner().invoke(app, ["report", str(out)])
    assert reported.exit_code == 0, reported.output
    md = (out / "report" / "report.md").read_text()
    all_row = next(line for line in md.splitlines() if line.startswith("| **all**"))
    assert all_row == "| **all** | 2 | 2 | 0 | 0 | – | – | – | – | – | – |"  # no ground truth: no metric at all
    assert "2 ok row(s) have no ground truth" in md and "not zeros" in md

    # Resuming with another dilation is refused: the holes, and so the results, would differ.
    other = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out), "--dilate", "3",
                                     "--format", "same"])
    assert other.exit_code == 2 and "different configuration" in other.output
