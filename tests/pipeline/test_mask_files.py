import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.mask_files import row_seed
from tests.helpers import save_png


def test_masks_generate_is_reproducible_and_indexed(tmp_path):
    args = ["masks", "generate", "--kind", "noise:30", "--height", "40", "--width", "60", "--count", "3"]
    for name in ("a", "b"):
        assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / name)]).exit_code == 0
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "a" / f"{i:05d}.png"))
        assert a.shape == (40, 60) and set(np.unique(a)) == {0, 255} and (a > 0).mean() == 0.3
        assert np.array_equal(a, np.asarray(Image.open(tmp_path / "b" / f"{i:05d}.png")))
    assert (tmp_path / "a" / "masks.csv").read_text().splitlines()[1].startswith("00000.png,0.3000000,0.30-0.40")
    bad = CliRunner().invoke(app, ["masks", "generate", "--kind", "brush:50", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "brush:LO-HI" in bad.output


def test_manifest_build_with_mask_kind_matches_each_image(tmp_path):
    save_png(tmp_path / "img" / "wide.png", np.zeros((30, 50, 3), np.uint8))
    save_png(tmp_path / "img" / "tall.png", np.zeros((50, 30, 3), np.uint8))
    result = CliRunner().invoke(app, ["manifest", "build", "--images", str(tmp_path / "img"), "--masks",
                                      str(tmp_path / "gen"), "--mask-kind", "center", "--seed", "7",
                                      "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert [r["id"] for r in rows] == ["tall", "wide"]
    for row in rows:
        image = Image.open(row["image"])
        mask = np.asarray(Image.open(row["mask"]))
        assert mask.shape == (image.height, image.width) and (mask > 0).mean() == 0.25
        assert row["gt"] == row["image"] and row["mask_kind"] == "center"
        assert row["mask_seed"] == row_seed(7, row["id"])
