"""The W+ encoder: its file format, random training masks, and training on a tiny generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.encoder_training import EncoderTrainConfig, random_hole, sample_wplus, train_encoder
from workers.nets.encoder import LatentEncoder, encoder_input_size, load_encoder
from workers.nets.stylegan2 import load_generator
from workers.nets.stylegan2_testing import make_tiny_checkpoint
from workers.weights_files import MissingWeightsError



@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("g") / "g.pt")


def test_untrained_encoder_predicts_the_mean_latent_and_round_trips(tmp_path):
    avg = torch.randn(16)
    enc = LatentEncoder(6, 16, input_size=32, backbone="resnet18", latent_avg=avg).eval()
    image = torch.rand(2, 3, 48, 48) * 2 - 1
    hole = torch.zeros(2, 1, 48, 48)
    hole[:, :, 10:30, 10:30] = 1
    inp = enc.prepare(image, hole)
    assert inp.shape == (2, 4, 32, 32)
    assert torch.equal(inp[:, 3].unique(), torch.tensor([0.0, 1.0]))
    out = enc(image, hole)
    assert out.shape == (2, 6, 16)
    torch.testing.assert_close(out, avg.expand(2, 6, 16))
    with torch.no_grad():
        enc.head.bias.normal_()
    path = enc.save(tmp_path / "e.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "config"}
    back = load_encoder(path)
    torch.testing.assert_close(back(image, hole), enc(image, hole))
    assert not any(p.requires_grad for p in back.parameters())
    assert encoder_input_size(1024) == 256 and encoder_input_size(32) == 32


def test_hole_pixels_do_not_reach_the_encoder():
    enc = LatentEncoder(4, 8, input_size=16, backbone="resnet18").eval()
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., 4:12, 4:12] = 1
    other = image.clone()
    other[..., 4:12, 4:12] = 1.0
    torch.testing.assert_close(enc.prepare(image, hole), enc.prepare(other, hole))


def test_imagenet_initialisation_keeps_rgb_filters_and_zeroes_the_mask_channel():
    from torchvision.models import resnet18

    state = resnet18(weights=None).state_dict()
    enc = LatentEncoder(4, 8, input_size=32, backbone="resnet18")
    enc.load_imagenet_trunk(state)
    w = enc.trunk.conv1.weight
    torch.testing.assert_close(w[:, :3], state["conv1.weight"])
    assert w[:, 3].abs().max() == 0
    torch.testing.assert_close(enc.trunk.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])
    with pytest.raises(ValueError, match="lacks"):
        enc.load_imagenet_trunk({"conv1.weight": state["conv1.weight"]})


def test_random_holes_cover_up_to_the_maximum_ratio():
    rng = np.random.default_rng(0)
    holes = [random_hole(32, rng, 0.6) for _ in range(60)]
    ratios = np.array([h.mean() for h in holes])
    assert all(h.dtype == bool and h.shape == (32, 32) for h in holes)
    assert ratios.min() < 0.05 and ratios.max() > 0.4
    assert ratios.max() < 0.9  # the last stroke or box may overshoot the target a little


def test_mixed_wplus_switches_latent_once(tiny_ckpt):
    g = load_generator(tiny_ckpt)
    gen = torch.Generator().manual_seed(0)
    wplus = sample_wplus(g, 16, 1.0, gen, torch.device("cpu"))
    assert wplus.shape == (16, g.n_latent, g.style_dim)
    changes = (wplus[:, 1:] != wplus[:, :-1]).any(-1).sum(1)
    assert (changes == 1).all()
    same = sample_wplus(g, 4, 0.0, gen, torch.device("cpu"))
    assert (same == same[:, :1]).all()


def test_training_reduces_the_latent_loss_and_saves_a_loadable_file(tiny_ckpt, tmp_path):
    cfg = EncoderTrainConfig(generator=str(tiny_ckpt), out=str(tmp_path / "enc.pt"), steps=24,
                             batch_size=8, lr=2e-3, backbone="resnet18", device="auto",
                             log_every=0)
    path = train_encoder(cfg)
    enc = load_encoder(path)
    assert enc.config["train_loss_last"] < 0.7 * enc.config["train_loss_first"]
    g = load_generator(tiny_ckpt)
    assert (enc.config["n_latent"], enc.config["style_dim"]) == (g.n_latent, g.style_dim)
    torch.testing.assert_close(enc.latent_avg, g.mean_latent())


def test_training_reports_every_missing_file_first(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = EncoderTrainConfig(generator="nope-gen.pt", out=str(tmp_path / "e.pt"),
                             imagenet_init="imagenet")
    with pytest.raises(MissingWeightsError) as err:
        train_encoder(cfg)
    assert "nope-gen.pt" in str(err.value) and "resnet50-11ad3fa6.pth" in str(err.value)
    assert not (tmp_path / "e.pt").exists()
