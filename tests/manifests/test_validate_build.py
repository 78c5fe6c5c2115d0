from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from manifests.build import BuildConfig, Pairing, build_manifest
from manifests.io import ManifestError, read_manifest, write_manifest
from manifests.validate import validate_manifest
from tests.helpers import disk_mask, save_png


def test_missing_column_is_a_whole_manifest_error():
    with pytest.raises(ManifestError, match="missing required column.*mask"):
        validate_manifest(pa.table({"id": ["a"], "image": ["x.png"]}))


def test_not_parquet_is_named(tmp_path):
    bad = tmp_path / "m.parquet"
    bad.write_text("id,image,mask\n")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        read_manifest(bad)
    with pytest.raises(ManifestError, match="no such file"):
        read_manifest(tmp_path / "absent.parquet")


def test_rows_with_problems_are_rejected_with_their_row_number(tmp_path):
    table = pa.table({"id": ["a", "b", "a", "", "c"], "image": ["i.png", "j.png", "k.png", "l.png", ""],
                      "mask": ["m.png"] * 5, "note": ["x", "y", "z", "w", "v"]})
    validated = validate_manifest(table, base=tmp_path)
    assert validated.table["id"].to_pylist() == ["a", "b"]
    assert validated.table["row"].to_pylist() == [0, 1]
    assert validated.table["image"].to_pylist()[0] == str(tmp_path / "i.png")
    assert validated.extra_columns == ["note"]
    assert [(r.row, r.id) for r in validated.rejected] == [(2, "a"), (3, None), (4, "c")]
    assert "duplicate id 'a' (first used on row 0)" in validated.rejected[0].error


def test_non_string_ids_are_cast():
    validated = validate_manifest(pa.table({"id": [1, 2], "image": ["/a", "/b"], "mask": ["/m", "/m"]}))
    assert validated.table["id"].to_pylist() == ["1", "2"]


def _folders(tmp_path: Path, n: int = 4) -> tuple[Path, Path]:
    images, masks = tmp_path / "img", tmp_path / "msk"
    for i in range(n):
        save_png(images / f"f{i}.png", np.full((16, 16, 3), i * 10, np.uint8))
        save_png(masks / f"f{i}.png", disk_mask(16))
    save_png(masks / "extra.png", disk_mask(16))
    return images, masks


def test_same_name_pairing_and_unmatched(tmp_path):
    images, masks = _folders(tmp_path)
    save_png(images / "lonely.png", np.zeros((16, 16, 3), np.uint8))
    result = build_manifest(BuildConfig(images=images, masks=masks))
    assert result.table["id"].to_pylist() == ["f0", "f1", "f2", "f3"]
    assert all(Path(m).stem == i for i, m in zip(result.table["id"].to_pylist(), result.table["mask"].to_pylist()))
    assert result.table["gt"].to_pylist() == [None] * 4
    assert len(result.unmatched) == 1 and "lonely.png" in result.unmatched[0]


def test_random_pairing_is_reproducible_and_uses_image_as_gt(tmp_path):
    images, masks = _folders(tmp_path)
    a = build_manifest(BuildConfig(images=images, masks=masks, pairing=Pairing.RANDOM, seed=3)).table
    b = build_manifest(BuildConfig(images=images, masks=masks, pairing=Pairing.RANDOM, seed=3)).table
    c = build_manifest(BuildConfig(images=images, masks=masks, pairing=Pairing.RANDOM, seed=4)).table
    assert a.equals(b)
    assert a["gt"].to_pylist() == a["image"].to_pylist()
    assert len(set(a["mask"].to_pylist())) == 4  # enough masks: drawn without replacement
    assert a["mask"].to_pylist() != c["mask"].to_pylist()


def test_gt_folder_by_stem(tmp_path):
    images, masks = _folders(tmp_path, 2)
    gts = tmp_path / "gt"
    save_png(gts / "f0.png", np.zeros((16, 16, 3), np.uint8))
    result = build_manifest(BuildConfig(images=images, masks=masks, gt=gts))
    assert result.table["id"].to_pylist() == ["f0"] and "f1.png" in result.unmatched[0]


def test_write_then_read_round_trip(tmp_path):
    images, masks = _folders(tmp_path, 2)
    table = build_manifest(BuildConfig(images=images, masks=masks)).table
    write_manifest(table, tmp_path / "sub" / "m.parquet")
    assert read_manifest(tmp_path / "sub" / "m.parquet").equals(table)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no image files"):
        build_manifest(BuildConfig(images=tmp_path / "empty", masks=tmp_path / "empty"))


def test_columnar_validation_names_each_bad_row_and_resolves_only_relative_paths():
    table = pa.table({"id": ["a", "b", "a", "", "c", "d"],
                      "image": ["x.png", "/abs/y.png", "z", "w", "", "s3://b/k.png"],
                      "mask": ["m.png"] * 5 + [""], "gt": ["g.png", None, "", "g", "g", "g"],
                      "mask_dilate": [1, None, 2, 3, -1, 0]})
    validated = validate_manifest(table, base=Path("/data"))
    assert validated.table.to_pylist() == [
        {"id": "a", "image": "/data/x.png", "mask": "/data/m.png", "gt": "/data/g.png", "mask_dilate": 1, "row": 0},
        {"id": "b", "image": "/abs/y.png", "mask": "/data/m.png", "gt": None, "mask_dilate": 0, "row": 1}]
    assert [(r.row, r.id, r.error) for r in validated.rejected] == [
        (2, "a", "duplicate id 'a' (first used on row 0); row skipped"), (3, None, "empty id"),
        (4, "c", "empty 'image' path"), (5, "d", "empty 'mask' path")]
    negative = validate_manifest(pa.table({"id": ["e"], "image": ["i"], "mask": ["m"], "mask_dilate": [-2]}))
    assert negative.rejected[0].error == "negative 'mask_dilate' (-2)"


def test_id_check_matches_a_first_seen_reference_on_random_ids():
    from manifests.validate import check_ids

    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 50, 400):
        ids = [None if r < 0.05 else "" if r < 0.1 else f"k{int(r * 1000) % 37}" for r in rng.random(n)]
        checked = check_ids(pa.array(ids, pa.string()))
        first: dict[str, int] = {}
        expected = []
        for row, value in enumerate(ids):
            if not value:
                expected.append((row, None, "empty id"))
            elif value in first:
                expected.append((row, value, f"duplicate id '{value}' (first used on row {first[value]}); row skipped"))
            else:
                first[value] = row
        assert [(r.row, r.id, r.error) for r in checked.rejected] == expected
        assert checked.bad.tolist() == [row in {e[0] for e in expected} for row in range(n)]
