"""pipeline.fid: FID/KID per bucket from a results folder, with a random-weight Inception file.

The Inception file is torch-fidelity's own architecture with random (Kaiming) conv weights, saved
as a state dict in the real file's format, so the real loading path runs without any download.
Most checks use the small "64" feature layer (fast extraction, 64x64 covariances); one runs the
default 2048-d path.
"""
from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
import torch

from manifests import schema
from manifests.io import write_manifest
from pipeline import fid
from pipeline.results_store import ResultsStore
from tests.helpers import BENCH, save_png
from workers.weights_files import MissingWeightsError

FAST = fid.FidConfig(device="cpu", feature_layer="64", kid_subsets=20)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    """A random-weight InceptionV3 state dict named like the real file."""
    import torch_fidelity.feature_extractor_inceptionv3 as inc

    torch.manual_seed(0)
    with mock.patch.object(inc, "load_state_dict_from_url", side_effect=AssertionError("no download")), \
            mock.patch.object(inc.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
            mock.patch.object(inc.torch, "load", return_value={}):
        net = inc.FeatureExtractorInceptionV3(fid.FEATURE_EXTRACTOR, ["2048"], feature_extractor_weights_path="x")
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):  # keep activations from vanishing through the depth
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("home") / "weights" / fid.INCEPTION_WEIGHTS
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def home(inception_file: Path, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("FACEFILL_HOME", str(inception_file.parents[1]))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return inception_file


def _faces(n: int) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((BENCH / "faces" / "256").glob("*.png"))[:n]
    if len(files) < n:
        pytest.skip("bench-dev faces are not beside the repository")
    return [np.asarray(Image.open(f).convert("RGB"))[64:192, 64:192] for f in files]



def _features(images: list[np.ndarray], tmp: Path, tag: str, config: fid.FidConfig) -> torch.Tensor:
    uris = [str(save_png(tmp / tag / f"{i}.png", im)) for i, im in enumerate(images)]
    feats = fid.extract_features(uris, fid.inception_extractor(config), config)
    return torch.stack([feats[u] for u in uris])


def _noisy(images: list[np.ndarray], sigma: float, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8) for im in images]


def test_self_fid_is_zero_and_grows_with_noise(home, tmp_path):
    faces = _faces(10)
    clean = _features(faces, tmp_path, "clean", FAST)
    small = _features(_noisy(faces, 4), tmp_path, "small", FAST)
    large = _features(_noisy(faces, 40), tmp_path, "large", FAST)
    same = fid.fid_kid_from_features(clean, clean, FAST)
    assert abs(same["fid"]) < 1e-3  # (KID of a set against itself is not 0: its cross term keeps the diagonal)
    f_small = fid.fid_kid_from_features(small, clean, FAST)
    f_large = fid.fid_kid_from_features(large, clean, FAST)
    assert 0 < f_small["fid"] < f_large["fid"]
    assert f_small["kid_mean"] < f_large["kid_mean"]


def test_default_2048_features_self_fid_zero(home, tmp_path):
    config = fid.FidConfig(device="cpu", kid_subsets=5)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    feats = _features(images, tmp_path, "x", config)
    assert feats.shape == (3, 2048)
    same = fid.fid_kid_from_features(feats, feats, config)
    assert abs(same["fid"]) < 1e-3


def test_matches_torch_fidelity_calculate_metrics(home, tmp_path):
    """Features once + torch-fidelity's formulas == torch-fidelity's calculate_metrics on the same sets."""
    import torch_fidelity

    faces = _faces(6)
    a, b = faces[:3] + _noisy(faces[:3], 20), faces[3:] + _noisy(faces[3:], 10, seed=2)
    config = fid.FidConfig(device="cpu", feature_layer="64", kid_subsets=10, kid_subset_size=4)
    ours = fid.fid_kid_from_features(_features(a, tmp_path, "a", config), _features(b, tmp_path, "b", config), config)

    class Images(torch.utils.data.Dataset):
        def __init__(self, images):
            self.images = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).contiguous() for im in images]

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i]

    theirs = torch_fidelity.calculate_metrics(
        input1=Images(a), input2=Images(b), fid=True, kid=True, cuda=False, cache=False, verbose=False,
        feature_extractor_weights_path=str(home), feature_layer_fid="64", feature_layer_kid="64",
        kid_subsets=10, kid_subset_size=4, batch_size=3, save_cpu_ram=True)
    assert ours["kid_subset_size"] == 4
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4, abs=1e-6)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4, abs=1e-6)


def test_kid_subset_size_adapts():
    config = fid.FidConfig()
    assert fid.kid_subset_size_for(5000, config) == 1000
    assert fid.kid_subset_size_for(37, config) == 37
    assert fid.kid_subset_size_for(3, fid.FidConfig(kid_subset_size=2)) == 2


def test_device_is_explicit():
    assert fid.FidConfig(device="cpu").use_cuda() is False
    with pytest.raises(ValueError):
        fid.FidConfig(device="tpu").use_cuda()


def _results_folder(out: Path) -> Path:
    """Two buckets (3 ok each), one error row, one ok row without ground truth, one lone bucket."""
    rng = np.random.default_rng(3)
    manifest_rows, result_rows = [], []
    plan = [("a0", "0-10", "ok"), ("a1", "0-10", "ok"), ("a2", "0-10", "ok"),
            ("b0", "10-20", "ok"), ("b1", "10-20", "ok"), ("b2", "10-20", "ok"),
            ("e0", "10-20", "error"), ("n0", "0-10", "ok"), ("c0", "20-30", "ok")]
    for row, (id_, bucket, status) in enumerate(plan):
        gt = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        gt_path = save_png(out.parent / "data" / f"{id_}.png", gt)
        output = None
        if status == "ok":
            save_png(out / "images" / f"{id_}.png", np.clip(gt + rng.normal(0, 10, gt.shape), 0, 255).astype(np.uint8))
            output = f"images/{id_}.png"
        manifest_rows.append({"id": id_, "image": str(gt_path), "mask": str(gt_path),
                              "gt": None if id_ == "n0" else str(gt_path)})
        result_rows.append({"id": id_, "variant": 0, "row": row, "status": status,
                            "error": "boom" if status == "error" else None, "output": output,
                            "bucket": bucket, "method": "test", "config_hash": "h"})
    manifest = out.parent / "manifest.parquet"
    write_manifest(pa.Table.from_pylist(manifest_rows, schema=schema.MANIFEST_SCHEMA), manifest)
    ResultsStore(out / "results").append(pa.Table.from_pylist(result_rows, schema=schema.RESULT_SCHEMA))
    (out / "run.json").write_text(json.dumps({"config": {"manifest": str(manifest)}}))
    return out


def test_bucket_fid_kid_on_results_folder(home, tmp_path):
    out = _results_folder(tmp_path / "out")
    report = fid.bucket_fid_kid(out, FAST)
    assert list(report) == ["all", "0-10", "10-20", "20-30", "no_ground_truth"]
    assert report["no_ground_truth"] == {"n": 1}
    assert report["all"]["n"] == 7 and report["0-10"]["n"] == 3 and report["10-20"]["n"] == 3
    for bucket in ("all", "0-10", "10-20"):
        entry = report[bucket]
        assert entry["fid"] is not None and entry["fid"] > 0 and np.isfinite(entry["kid_mean"])
        assert entry["kid_subset_size"] == entry["n"]
        assert "biased" in entry["warning"]
    lone = report["20-30"]
    assert lone["n"] == 1 and lone["fid"] is None and lone["kid_mean"] is None and "at least 2" in lone["warning"]
    assert sorted(p.name for p in out.iterdir()) == ["images", "results", "run.json"]  # nothing cached


def test_missing_inception_raises_before_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = _results_folder(tmp_path / "out")
    with mock.patch.object(fid, "extract_features", side_effect=AssertionError("computed")), \
            mock.patch.object(fid, "_pairs", side_effect=AssertionError("read results")):
        with pytest.raises(MissingWeightsError, match=fid.INCEPTION_WEIGHTS):
            fid.bucket_fid_kid(out, FAST)


@pytest.mark.slow
def test_report_cli_adds_fid_table_when_weights_present(home, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = _results_folder(tmp_path / "out")
    result = CliRunner().invoke(app, ["report", str(out), "--fid", "--device", "cpu", "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    md = (out / "report" / "report.md").read_text()
    assert "## FID / KID" in md and "| 20-30 | 1 | – | – |" in md
    saved = json.loads((out / "report" / "report.json").read_text())
    assert saved["fid"]["all"]["n"] == 7 and saved["fid"]["all"]["fid"] > 0
    overall = saved["overall"]  # FID/KID also as summaries, which plots and --compare read
    assert overall["fid"]["low"] < overall["fid"]["mean"] == saved["fid"]["all"]["fid"] < overall["fid"]["high"]
    assert overall["kid"]["low"] < overall["kid"]["mean"] < overall["kid"]["high"]
    assert saved["buckets"]["0-10"]["fid"]["n"] == 3 and "fid" not in saved["buckets"]["20-30"]


def test_report_without_inception_says_how_to_enable(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = _results_folder(tmp_path / "out")
    result = CliRunner().invoke(app, ["report", str(out), "--bootstrap", "10"])
    assert result.exit_code == 0 and "FID/KID not computed" in result.output
    forced = CliRunner().invoke(app, ["report", str(out), "--fid"])
    assert forced.exit_code == 2 and "pipeline weights import" in forced.output
