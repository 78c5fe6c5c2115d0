"""`manifest build --mask ONE.png --dilate N` and the `mask_dilate` column."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from manifests.build import BuildConfig, Pairing, build_manifest
from manifests.io import ManifestError, read_manifest
from manifests.validate import validate_manifest
from pipeline.cli import app
from pipeline.config import RunConfig
from tests.helpers import save_png


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    save_png(folder / "a.png", np.zeros((40, 60, 3), np.uint8))
    save_png(folder / "b.jpg.png", np.zeros((80, 120, 3), np.uint8))
    save_png(tmp_path / "logo.png", np.full((40, 60), 255, np.uint8))
    return folder


def test_one_mask_for_every_image_and_dilation_column(tmp_path, photos):
    result = build_manifest(BuildConfig(images=photos, masks=None, mask_file=tmp_path / "logo.png", dilate=3))
    rows = result.table.to_pylist()
    assert [r["id"] for r in rows] == ["a", "b.jpg"] and not result.unmatched
    assert {r["mask"] for r in rows} == {str((tmp_path / "logo.png").resolve())}
    assert all(r["gt"] is None and r["mask_dilate"] == 3 for r in rows)
    plain = build_manifest(BuildConfig(images=photos, masks=None, mask_file=tmp_path / "logo.png"))
    assert "mask_dilate" not in plain.table.column_names
    with pytest.raises(ManifestError, match="either a folder of masks or one mask file"):
        build_manifest(BuildConfig(images=photos, masks=photos, mask_file=tmp_path / "logo.png"))
    with pytest.raises(ManifestError, match="at random"):
        build_manifest(BuildConfig(images=photos, masks=None, mask_file=tmp_path / "logo.png",
                                   pairing=Pairing.RANDOM))
    with pytest.raises(ManifestError, match="no such mask file"):
        build_manifest(BuildConfig(images=photos, masks=None, mask_file=tmp_path / "nope.png"))


def test_cli_build_with_one_mask(tmp_path, photos):
    out = tmp_path / "m.parquet"
    result = CliRunner().invoke(app, ["manifest", "build", "--images", str(photos), "--mask",
                                      str(tmp_path / "logo.png"), "--dilate", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = read_manifest(out)
    assert table["mask_dilate"].to_pylist() == [2, 2]
    neither = CliRunner().invoke(app, ["manifest", "build", "--images", str(photos), "--out", str(out)])
    assert neither.exit_code == 2 and "--masks DIR" in neither.output


def test_validation_reads_mask_dilate_as_int_and_rejects_negative():
    table = pa.table({"id": ["a", "b", "c"], "image": ["x", "y", "z"], "mask": ["m", "m", "m"],
                      "mask_dilate": pa.array([2, None, -1], pa.int32())})
    checked = validate_manifest(table)
    assert checked.table["mask_dilate"].to_pylist() == [2, 0]
    assert [r.row for r in checked.rejected] == [2] and "negative" in checked.rejected[0].error
    with pytest.raises(ManifestError, match="whole pixel counts"):
        validate_manifest(table.set_column(3, "mask_dilate", pa.array(["x", "y", "z"])))


def test_run_dilate_and_format_enter_the_config_hash_only_when_set(tmp_path):
    base = RunConfig(manifest=tmp_path / "m.parquet", out=tmp_path / "o")
    assert "dilate" not in base.compute_key() and "output_format" not in base.compute_key()
    hashes = {RunConfig(manifest=base.manifest, out=base.out, dilate=d).config_hash() for d in (None, 0, 3)}
    assert len(hashes) == 3
    assert RunConfig(manifest=base.manifest, out=base.out, output_format="jpg").config_hash() != base.config_hash()
