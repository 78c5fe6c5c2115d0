"""The W+ optimisation loop and the eq. 12 latent edits, on a tiny random generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.inversion import InversionConfig, invert
from workers.inversion_losses import InversionLoss, LossConfig
from workers.latent_edit import (load_directions, make_variants, parse_layers,
                                 resolve_directions, variant_coefficients)
from workers.nets.stylegan2 import load_generator
from workers.nets.stylegan2_testing import make_tiny_checkpoint, masked_psnr, masked_scene



@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return load_generator(make_tiny_checkpoint(tmp_path_factory.mktemp("g") / "g.pt"))


@pytest.fixture(scope="module")
def loss():
    torch.manual_seed(0)
    return InversionLoss(LossConfig())  # random VGG trunk: fine for checking the optimiser


def test_in_range_face_is_recovered_inside_the_hole(generator, loss):
    x, known, init = masked_scene(generator)
    with torch.no_grad():
        start = generator.synthesis(init)
    w, gen, history = invert(generator, x, known, init, loss,
                             InversionConfig(iterations=40, lr=0.08))
    hole_before, hole_after = masked_psnr(start, x, 1 - known), masked_psnr(gen, x, 1 - known)
    assert (hole_after > hole_before + 8).all(), (hole_before, hole_after)
    assert (masked_psnr(gen, x, known) > 24).all()  # ~25 and ~32 dB; the mean face starts at 9-16
    assert history.shape == (41, 2)
    assert (history[-1] < 0.2 * history[0]).all()
    assert w.shape == init.shape and gen.shape == x.shape


def test_batch_mates_do_not_change_a_result(generator, loss):
    x, known, init = masked_scene(generator, batch=2)
    cfg = InversionConfig(iterations=4, lr=0.05)
    w_pair, _, h_pair = invert(generator, x, known, init, loss, cfg)
    w_alone, _, h_alone = invert(generator, x[:1], known[:1], init[:1], loss, cfg)
    torch.testing.assert_close(w_pair[:1], w_alone, rtol=0, atol=1e-4)
    torch.testing.assert_close(h_pair[:, :1], h_alone, rtol=1e-4, atol=1e-3)


def test_same_seed_same_result_and_keep_best(generator, loss):
    x, known, init = masked_scene(generator, batch=1, seed=3)
    cfg = InversionConfig(iterations=3, lr=0.05, seed=7)
    a = invert(generator, x, known, init, loss, cfg)
    b = invert(generator, x, known, init, loss, cfg)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert a[2][-1, 0] <= a[2][:-1, 0].min() + 1e-4  # the returned latent is the best seen
    with pytest.raises(ValueError, match="init_wplus"):
        invert(generator, x, known, init[0], loss, cfg)


def test_plain_callable_losses_work(generator):
    x, known, init = masked_scene(generator, batch=1)
    l1 = lambda g, t, k: ((g - t).abs() * k).mean((1, 2, 3))  # noqa: E731
    _, _, history = invert(generator, x, known, init, l1, InversionConfig(iterations=5, lr=0.05))
    assert history[-1, 0] < history[0, 0]


# ------------------------------------------------------------------ latent edits (eq. 12)
def test_variant_scheme_uses_every_direction_and_sign_before_repeating():
    for k in (1, 2, 4, 5):
        pairs = variant_coefficients(2 * k + 1, k, 2.0)
        assert len(set(pairs)) == 2 * k
        assert {d for d, _ in pairs} == set(range(k))
        assert {c for _, c in pairs} == {2.0, -2.0}
    assert variant_coefficients(3, 5, 1.0) == [(0, 1.0), (1, -1.0)]
    assert variant_coefficients(12, 5, 1.0)[-1] == (0, 2.0)  # second round, stronger
    assert variant_coefficients(1, 0, 1.0) == []


def test_make_variants_edits_only_chosen_layers():
    w = torch.randn(8, 16)
    dirs = torch.eye(16)[:3]
    latents, coefs = make_variants(w, dirs, 4, 1.5, layers=[0, 1])
    assert latents.shape == (4, 8, 16) and coefs == [0.0, 1.5, -1.5, 1.5]
    assert torch.equal(latents[0], w)
    torch.testing.assert_close(latents[2, :2] - w[:2], -1.5 * dirs[1].expand(2, -1))
    assert torch.equal(latents[1:, 2:], w[2:].expand(3, -1, -1))
    with pytest.raises(ValueError, match="directions must be"):
        make_variants(w, torch.zeros(2, 5), 3, 1.0)


def test_parse_layers():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers("0-2,5", 8) == [0, 1, 2, 5]
    with pytest.raises(ValueError):
        parse_layers("3-9", 8)
    with pytest.raises(ValueError):
        parse_layers("pose", 8)


def test_direction_files_are_validated(tmp_path, generator):
    np.save(tmp_path / "one.npy", np.ones(64, np.float32))
    np.save(tmp_path / "two.npy", np.ones((2, 64), np.float32))
    np.save(tmp_path / "bad.npy", np.ones((2, 63), np.float32))
    dirs = load_directions(f"{tmp_path / 'one.npy'},{tmp_path / 'two.npy'}", 64)
    assert dirs.shape == (3, 64)
    with pytest.raises(ValueError, match=r"\[64\] or \[k, 64\].*\[2, 63\]"):
        load_directions(str(tmp_path / "bad.npy"), 64)
    with pytest.raises(FileNotFoundError):
        load_directions(str(tmp_path / "none.npy"), 64)
    sefa = resolve_directions(generator, "sefa", k=3, layers="0-3")
    assert sefa.shape == (3, 64)
    torch.testing.assert_close(sefa.norm(dim=1), torch.ones(3))
