"""`pipeline run --method stylegan-inv` end to end through Ray, on dev faces, with a tiny generator
checkpoint and a random VGG16 the test creates in the real file formats."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from manifests.io import write_manifest
from pipeline.cli import app
from stages.masks import fit_to_image
from tests.helpers import save_random_torchvision
from workers.nets.stylegan2_testing import make_tiny_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture
def weights_home(tmp_path, monkeypatch):
    folder = tmp_path / "home" / "weights"
    folder.mkdir(parents=True)
    make_tiny_checkpoint(folder / "tiny.pt")
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), folder / "vgg16-397923af.pth")
    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return folder


def test_stylegan_inv_runs_through_ray_with_variants(tmp_path, bench_dev, weights_home, ray_local):
    faces = sorted((bench_dev / "faces/256").glob("*.png"))[:3]
    masks = sorted((bench_dev / "masks").glob("*.png"))[500:503]
    manifest = tmp_path / "m.parquet"
    write_manifest(pa.table({"id": [f.stem for f in faces], "image": [str(f) for f in faces],
                             "mask": [str(m) for m in masks], "gt": [str(f) for f in faces]}), manifest)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out), "--method",
                                      "stylegan-inv", "--method-opt", "generator=tiny.pt", "--method-opt",
                                      "iterations=3", "--variants", "2", "--edit-strength", "2"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "results")
    assert len(table) == 6 and set(table["status"].to_pylist()) == {"ok"}
    assert table["variant"].to_pylist() == [0, 1] * 3
    assert all(np.isfinite(table["final_loss"].to_numpy())) and table["method"][0].as_py() == "stylegan-inv"
    for row, face, mask in zip(table.to_pylist()[::2], faces, masks):
        output = np.asarray(Image.open(out / row["output"]))
        original = np.asarray(Image.open(face).convert("RGB"))
        hole, _ = fit_to_image(np.asarray(Image.open(mask)) > 0, 256, 256)
        assert output.shape == original.shape
        assert np.array_equal(output[~hole], original[~hole]), "Poisson fusion keeps known pixels"
    assert '"fusion": "poisson"' in (out / "run.json").read_text()
    save_random_torchvision(weights_home, "alexnet")  # the variants' diversity needs an LPIPS trunk
    reported = CliRunner().invoke(app, ["report", str(out), "--no-fid", "--diversity", "--bootstrap", "50"])
    assert reported.exit_code == 0, reported.output
    diversity = json.loads((out / "report" / "report.json").read_text())["overall"]["lpips_diversity"]
    assert diversity["n"] == 3 and diversity["mean"] > 0, "edited variants differ inside the hole"


def test_missing_generator_stops_before_work(tmp_path, weights_home):
    manifest = tmp_path / "m.parquet"
    write_manifest(pa.table({"id": ["a"], "image": ["/x.png"], "mask": ["/m.png"]}), manifest)
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                                      "--method", "stylegan-inv"])
    assert result.exit_code == 2 and "stylegan2-ffhq-1024.pt" in result.output
    assert "pipeline weights import" in result.output


def test_train_encoder_command_on_a_tiny_generator(tmp_path, weights_home):
    out = tmp_path / "enc.pt"
    result = CliRunner().invoke(app, ["train-encoder", "--generator", str(weights_home / "tiny.pt"), "--out",
                                      str(out), "--steps", "3", "--batch-size", "2", "--backbone", "resnet18",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert torch.load(out, weights_only=True)["config"]["n_latent"] == 8
