"""The registered ``stylegan-inv`` method end to end on a 32 px tiny generator, random backbones."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from workers.base import MethodInputs
from workers.nets.encoder import LatentEncoder
from workers.nets.stylegan2 import load_generator
from workers.nets.stylegan2_testing import make_tiny_checkpoint
from workers.registry import build_config, get_method
from workers.stylegan_inv import StyleGANInversion, StyleGANInvConfig
from workers.weights_files import MissingWeightsError

VGG = "vgg16-397923af.pth"



@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A FACEFILL_HOME with the tiny generator and a random VGG16 in torchvision's real format."""
    import torchvision

    home = tmp_path_factory.mktemp("facefill")
    folder = home / "weights"
    folder.mkdir()
    make_tiny_checkpoint(folder / "tiny.pt")
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), folder / VGG)
    return home


@pytest.fixture
def env(weights, monkeypatch, tmp_path):
    monkeypatch.setenv("FACEFILL_HOME", str(weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return weights / "weights"


def _method(**options) -> StyleGANInversion:
    method = StyleGANInversion(StyleGANInvConfig(generator="tiny.pt", **options))
    method.setup("cpu")
    return method


def _inputs(images: list[np.ndarray]) -> MethodInputs:
    holes = []
    for im in images:
        h, w = im.shape[:2]
        hole = np.zeros((h, w), bool)
        hole[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
        im[hole] = 0
        holes.append(hole)
    return MethodInputs(ids=[str(i) for i in range(len(images))], images=images, holes=holes)


def _random_images(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def test_registered_with_typed_frozen_config():
    cls = get_method("stylegan-inv")
    assert cls is StyleGANInversion and cls.generates_whole_image
    assert cls.resources.num_gpus == 1 and cls.resources.batch_size == 4
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    cfg = build_config(cls, {"iterations": "7", "amp": "false", "lambda_lpips": "50",
                             "directions": "a.npy"})
    assert (cfg.iterations, cfg.amp, cfg.lambda_lpips, cfg.directions) == (7, False, 50.0, "a.npy")
    d = StyleGANInvConfig()
    assert (d.lambda_vgg, d.lambda_logcosh, d.lambda_msssim, d.lambda_lpips) == (0.4, 1.5, 100, 100)
    assert d.iterations == 100 and d.variants == 1


def test_required_weights_follow_the_config():
    assert StyleGANInversion.required_weights() == ["stylegan2-ffhq-1024.pt", VGG]
    cfg = StyleGANInvConfig(encoder="enc.pt", lpips_net="alex")
    assert StyleGANInversion.required_weights(cfg) == [
        "stylegan2-ffhq-1024.pt", "enc.pt", VGG, "alexnet-owt-7be5be79.pth"]
    no_nets = StyleGANInvConfig(lambda_vgg=0, lambda_lpips=0)
    assert StyleGANInversion.required_weights(no_nets) == ["stylegan2-ffhq-1024.pt"]


def test_setup_names_every_missing_file_before_loading_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def boom(*args, **kwargs):
        raise AssertionError("loaded a network before checking the weights")

    monkeypatch.setattr("workers.nets.stylegan2.load_generator", boom)
    method = StyleGANInversion(StyleGANInvConfig(encoder="my-encoder.pt", lpips_net="alex"))
    with pytest.raises(MissingWeightsError) as err:
        method.setup("cpu")
    for name in ("stylegan2-ffhq-1024.pt", "my-encoder.pt", VGG, "alexnet-owt-7be5be79.pth"):
        assert name in str(err.value)
    assert str(tmp_path / "weights") in str(err.value)


def test_end_to_end_returns_whole_images_at_input_sizes(env):
    method = _method(iterations=2)
    images = _random_images([(48, 48), (20, 30)])
    out = method(_inputs(images))
    assert [g.shape for g in out.generated] == [(48, 48, 3), (20, 30, 3)]
    assert all(g.dtype == np.uint8 for g in out.generated)
    assert out.source == [0, 1] and out.variant == [0, 0]
    assert set(out.extras) >= {"final_loss", "iterations"}
    for key, column in out.extras.items():
        assert len(column) == 2 and all(isinstance(v, (int, float)) for v in column), key
    assert out.extras["iterations"] == [2, 2]
    assert all(np.isfinite(out.extras["final_loss"]))


def test_inversion_fills_an_in_range_hole(env):
    g = load_generator(env / "tiny.pt")
    w = g.truncate(g.mapping(torch.randn(1, g.style_dim, generator=torch.Generator().manual_seed(4))),
                   0.8)
    with torch.no_grad():
        face = ((g.synthesis(w)[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0)
    face = face.numpy()
    inputs = _inputs([face.copy()])
    hole = inputs.holes[0]

    def hole_error(method):
        out = method(inputs).generated[0].astype(float)
        return np.abs(out[hole] - face[hole].astype(float)).mean()

    before = hole_error(_method(iterations=0))
    after = hole_error(_method(iterations=30, lr=0.08))
    assert after < 0.35 * before, (before, after)  # measured ~57 -> ~11 grey levels


def test_variants_are_distinct_edits_of_each_input(env):
    method = _method(iterations=1, variants=3, edit_strength=4.0)
    images = _random_images([(32, 32), (40, 40)], seed=1)
    out = method(_inputs(images))
    assert out.source == [0, 0, 0, 1, 1, 1] and out.variant == [0, 1, 2, 0, 1, 2]
    assert out.extras["edit_coef"] == [0.0, 4.0, -4.0] * 2
    for i, shape in ((0, (32, 32, 3)), (1, (40, 40, 3))):
        group = [out.generated[k] for k in range(6) if out.source[k] == i]
        assert all(g.shape == shape for g in group)
        for a in range(3):
            for b in range(a + 1, 3):
                assert np.abs(group[a].astype(int) - group[b].astype(int)).mean() > 1.0
    assert out.extras["final_loss"][0] == out.extras["final_loss"][1]


def test_encoder_and_direction_files(env, tmp_path):
    g = load_generator(env / "tiny.pt")
    enc = LatentEncoder(g.n_latent, g.style_dim, 32, "resnet18", g.mean_latent())
    enc_path = enc.save(tmp_path / "enc.pt")
    np.save(tmp_path / "smile.npy", np.ones(g.style_dim, np.float32) / g.style_dim ** 0.5)
    method = _method(iterations=1, encoder=str(enc_path), variants=2,
                     directions=str(tmp_path / "smile.npy"))
    out = method(_inputs(_random_images([(32, 32)])))
    assert len(out.generated) == 2 and out.variant == [0, 1]

    np.save(tmp_path / "bad.npy", np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="directions must have shape"):
        _method(variants=2, directions=str(tmp_path / "bad.npy"))
    wrong = LatentEncoder(3, g.style_dim, 32, "resnet18").save(tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="encoder"):
        _method(encoder=str(wrong))


def test_results_do_not_depend_on_batch_mates(env):
    method = _method(iterations=2)
    images = _random_images([(32, 32), (32, 32)], seed=5)
    both = method(_inputs([im.copy() for im in images]))
    alone = method(_inputs([images[0].copy()]))
    diff = np.abs(both.generated[0].astype(int) - alone.generated[0].astype(int))
    assert diff.max() <= 1
