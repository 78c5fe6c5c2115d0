import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from manifests.buckets import bucket_of
from manifests.nvidia import NvidiaConfig, build_nvidia_manifest, mask_ratios, parse_buckets
from pipeline.cli import app


def test_parse_buckets():
    assert len(parse_buckets("nvidia")) == 6
    assert parse_buckets("nvidia:0.10-0.20,0.50-0.60") == ("0.10-0.20", "0.50-0.60")
    with pytest.raises(ValueError, match="unknown bucket"):
        parse_buckets("nvidia:0.1-0.2")


def test_one_mask_per_image_and_bucket_reproducibly(bench_dev):
    config = NvidiaConfig(images=bench_dev / "faces/256", masks=bench_dev / "masks",
                          buckets=("0.10-0.20", "0.30-0.40", "0.50-0.60"), seed=4)
    table = build_nvidia_manifest(config)
    assert len(table) == 95 * 3 and table.equals(build_nvidia_manifest(config))
    ratios = {str(p.resolve()): r for p, r in mask_ratios(bench_dev / "masks").items()}
    for row in table.to_pylist():
        assert row["id"].endswith("@" + row["mask_bucket"]) and bucket_of(ratios[row["mask"]]) == row["mask_bucket"]
        assert row["gt"] == row["image"]
    per_bucket = [r["mask"] for r in table.to_pylist() if r["mask_bucket"] == "0.30-0.40"]
    assert len(set(per_bucket)) == 95  # 250 masks per bucket: no repeats


def test_ratios_computed_without_index(tmp_path):
    from tests.helpers import save_png

    mask = np.zeros((10, 10), np.uint8)
    mask[:3] = 255
    save_png(tmp_path / "a.png", mask)
    assert list(mask_ratios(tmp_path).values()) == [pytest.approx(0.3)]


def test_cli_mask_kind_nvidia(tmp_path, bench_dev):
    out = tmp_path / "m.parquet"
    result = CliRunner().invoke(app, ["manifest", "build", "--images", str(bench_dev / "faces/256"), "--masks",
                                      str(bench_dev / "masks"), "--mask-kind", "nvidia:0.50-0.60", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert len(table) == 95 and set(table["mask_bucket"].to_pylist()) == {"0.50-0.60"}
    assert "@" not in table["id"][0].as_py()
