"""`--lpips` resolution: decided once on the driver, against the installed weights."""
from __future__ import annotations

import pytest

from pipeline.config import RunConfig
from pipeline.scoring import ScoringError, resolve_scoring
from tests.helpers import save_random_torchvision


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "home" / "weights"


def test_auto_is_off_with_a_note_until_alexnet_is_installed(weights):
    off = resolve_scoring("auto")
    assert off.lpips == "off" and off.config.lpips_net is None and off.config.ms_ssim
    assert "alexnet-owt-7be5be79.pth" in off.note and "pipeline weights fetch" in off.note
    path = save_random_torchvision(weights, "alexnet")
    on = resolve_scoring("auto")
    assert on.lpips == "alex" and on.config.lpips_backbone == str(path) and on.note is None


def test_an_explicit_trunk_without_weights_stops_with_the_fix(weights):
    with pytest.raises(ScoringError, match="vgg16-397923af.pth") as err:
        resolve_scoring("vgg")
    assert "pipeline weights import" in str(err.value)
    with pytest.raises(ScoringError, match="alex, vgg, off"):
        resolve_scoring("squeeze")
    assert resolve_scoring("off").config.lpips_net is None


def test_lpips_enters_the_config_hash_only_when_on(tmp_path):
    base = RunConfig(manifest=tmp_path / "m.parquet", out=tmp_path / "o")
    assert base.config_hash() == RunConfig(manifest=base.manifest, out=base.out, lpips="off").config_hash()
    assert base.config_hash() != RunConfig(manifest=base.manifest, out=base.out, lpips="alex").config_hash()
