"""Hostile input end to end: ONE `pipeline run` over a manifest holding every hostile row beside good
ones; each bad row gets its own clear error and every good row still lands. Whole-manifest problems
(not Parquet, missing columns) stop the run before Ray starts, naming the file and the fix."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifests.io import write_manifest
from pipeline.cli import app
from tests.helpers import disk_mask, save_png
from tests.hostile_files import bomb_png, encoded, exif_rotated_jpeg, png16, write

SIZE = 48


def _face(rng: np.random.Generator, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    base = np.stack([yy * 3, xx * 3, (yy + xx) * 2], axis=-1) % 256
    return (base + rng.integers(0, 20, base.shape)).clip(0, 255).astype(np.uint8)


def _hostile_rows(folder: Path, rng: np.random.Generator) -> tuple[list[dict], dict[str, tuple[str, str]]]:
    """Manifest rows, and for each processed id its expected (status, error or warning fragment)."""
    face = _face(rng)
    good = save_png(folder / "good.png", face)
    mask = save_png(folder / "mask.png", disk_mask(SIZE))
    tall = _face(rng, SIZE, SIZE // 2)  # stored 24 wide × 48 tall; EXIF 6 shows it 48 wide × 24 tall
    files = {
        "truncated": write(folder / "truncated.png", good.read_bytes()[:150]),
        "corrupt": write(folder / "corrupt.png", good.read_bytes()[:40] + rng.bytes(600)),
        "zero": write(folder / "zero.png", b""),
        "bomb": write(folder / "bomb.png", bomb_png()),
        "text": write(folder / "readme.png", b"# not an image, only named like one\n" * 10),
        "gray": write(folder / "gray.png", encoded(face[..., 0])),
        "rgba": write(folder / "rgba.png", encoded(np.dstack([face, np.full((SIZE, SIZE), 128, np.uint8)]))),
        "deep16": write(folder / "deep16.png", png16(face.astype(np.uint16) * 257)),
        "cmyk": write(folder / "cmyk.jpg", encoded(face, "JPEG", mode="CMYK", quality=95)),
        "exif": write(folder / "exif.jpg", exif_rotated_jpeg(tall)),
        "exif_mask": str(save_png(folder / "exif_mask.png", disk_mask(SIZE)[:SIZE // 2])),
        "small_mask": str(save_png(folder / "small_mask.png", disk_mask(SIZE // 2))),
        "no_hole": str(save_png(folder / "no_hole.png", np.zeros((SIZE, SIZE), np.uint8))),
        "all_hole": str(save_png(folder / "all_hole.png", np.full((SIZE, SIZE), 255, np.uint8))),
        "text_mask": write(folder / "mask.txt.png", b"hole: everywhere\n"),
    }
    image_rows = {  # id: (image, mask, expected status, expected fragment)
        "good": (str(good), str(mask), "ok", None),
        "truncated": (files["truncated"], str(mask), "error", f"load: image {files['truncated']}: corrupt or truncated image"),
        "corrupt": (files["corrupt"], str(mask), "error", f"load: image {files['corrupt']}: "),
        "zero-bytes": (files["zero"], str(mask), "error", f"load: image {files['zero']}: file is empty (0 bytes)"),
        "bomb": (files["bomb"], str(mask), "error",
                 f"load: image {files['bomb']}: declared size 100000x100000 exceeds the 64,000,000-pixel limit"),
        "text-named-png": (files["text"], str(mask), "error", f"load: image {files['text']}: not a decodable image"),
        "missing": (str(folder / "nope.png"), str(mask), "error", "no such file"),
        "grayscale": (files["gray"], str(mask), "ok", None),
        "rgba": (files["rgba"], str(mask), "ok", None),
        "16-bit": (files["deep16"], str(mask), "ok", None),
        "cmyk": (files["cmyk"], str(mask), "ok", None),
        "exif-rotated": (files["exif"], files["exif_mask"], "ok", None),
        "mask-size": (str(good), files["small_mask"], "ok", "mask 24x24 resized to image 48x48 (nearest)"),
        "no-hole": (str(good), files["no_hole"], "error", f"load: mask {files['no_hole']}: mask has no hole pixels"),
        "all-hole": (str(good), files["all_hole"], "error", f"load: mask {files['all_hole']}: every pixel is hole"),
        "mask-not-image": (str(good), files["text_mask"], "error", f"load: mask {files['text_mask']}: not a decodable image"),
        "a/b/../../../etc/passwd": (str(good), str(mask), "ok", None),
        "..": (str(good), str(mask), "ok", None),
        "/abs/id": (str(good), str(mask), "ok", None),
        "back\\slash": (str(good), str(mask), "ok", None),
    }
    rows = [{"id": row_id, "image": image, "mask": m, "gt": image if status == "ok" else None}
            for row_id, (image, m, status, _) in image_rows.items()]
    rows[0]["gt"] = str(good)
    rows.append({"id": "good", "image": files["gray"], "mask": str(mask), "gt": None})  # duplicate id
    rows.append({"id": "", "image": str(good), "mask": str(mask), "gt": None})  # empty id
    expected = {row_id: (status, fragment) for row_id, (_, _, status, fragment) in image_rows.items()}
    return rows, expected


@pytest.mark.slow
def test_one_run_over_every_hostile_row(tmp_path, ray_local, rng):
    rows, expected = _hostile_rows(tmp_path / "in", rng)
    manifest, out = tmp_path / "m.parquet", tmp_path / "out"
    write_manifest(pa.Table.from_pylist(rows), manifest)
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    by_id = {r["id"]: r for r in pq.read_table(out / "results").to_pylist()}
    assert sorted(by_id) == sorted(expected), "every processed id exactly once"
    for row_id, (status, fragment) in expected.items():
        row = by_id[row_id]
        assert row["status"] == status, (row_id, row["error"])
        if status == "error":
            assert fragment in row["error"], (row_id, row["error"])
            assert row["output"] is None
        else:
            output = (out / row["output"]).resolve()
            assert output.parent == (out / "images").resolve(), f"{row_id!r} escaped to {output}"
            assert (fragment in (row["warning"] or "")) if fragment else row["warning"] is None, row_id
    assert by_id["good"]["psnr"] is not None and by_id["good"]["row"] == 0
    # EXIF orientation applied: the result has the displayed size, matching the mask.
    assert Image.open(out / by_id["exif-rotated"]["output"]).size == (SIZE, SIZE // 2)
    # Path-like ids map to distinct files inside images/.
    outputs = [by_id[i]["output"] for i in ("a/b/../../../etc/passwd", "..", "/abs/id", "back\\slash", "good")]
    assert len(set(outputs)) == len(outputs)
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    assert rejected == [
        {"row": 20, "id": "good", "error": "duplicate id 'good' (first used on row 0); row skipped"},
        {"row": 21, "id": None, "error": "empty id"},
    ]
    assert "2 rejected" in result.output


def _run_manifest(tmp_path: Path, manifest: Path):
    return CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(tmp_path / "out")])


def test_a_manifest_that_is_not_parquet_stops_the_run(tmp_path):
    csv = tmp_path / "m.parquet"
    csv.write_text("id,image,mask\na,a.png,m.png\n")
    result = _run_manifest(tmp_path, csv)
    assert result.exit_code == 2
    assert f"error: manifest {csv}: not a readable Parquet file" in result.output
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    assert "not a readable Parquet file" in _run_manifest(tmp_path, empty).output
    assert f"manifest {tmp_path / 'absent.parquet'}: no such file" in _run_manifest(tmp_path, tmp_path / "absent.parquet").output


def test_missing_columns_stop_the_run_naming_them(tmp_path):
    manifest = tmp_path / "m.parquet"
    write_manifest(pa.table({"id": ["a"], "picture": ["a.png"]}), manifest)
    result = _run_manifest(tmp_path, manifest)
    assert result.exit_code == 2
    assert ("error: manifest is missing required column(s) image, mask; it has id, picture "
            "(required: id, image, mask)") in result.output


def test_max_pixels_flag_is_checked(tmp_path):
    result = CliRunner().invoke(app, ["run", "--manifest", str(tmp_path / "m.parquet"), "--out",
                                      str(tmp_path / "out"), "--max-pixels", "0"])
    assert result.exit_code == 2 and "--max-pixels must be > 0" in result.output
