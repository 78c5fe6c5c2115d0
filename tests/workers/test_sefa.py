"""Tests for workers.nets.sefa: closed-form directions are the top eigenvectors, orthonormal."""

from __future__ import annotations

import pytest
import torch

from workers.nets.sefa import sefa_directions, sefa_factorize
from workers.nets.stylegan2 import Generator


@pytest.fixture(scope="module")
def gen() -> Generator:
    torch.manual_seed(0)
    return Generator(16, style_dim=24, n_mlp=1, channels={4: 16, 8: 12, 16: 8}).eval()


def _stacked(gen: Generator, idx: list[int]) -> torch.Tensor:
    convs = [gen.conv1, *gen.convs]
    ws = [convs[i].conv.modulation.weight.detach().double() for i in idx]
    return torch.cat([w / w.norm(dim=1, keepdim=True) for w in ws])


@pytest.mark.parametrize("layers", ["all", [0, 1], [3]])
def test_top_eigenvectors_of_normalised_modulation_weights(gen: Generator, layers) -> None:
    idx = list(range(gen.num_layers)) if layers == "all" else layers
    a = _stacked(gen, idx)
    evals, evecs = torch.linalg.eigh(a.T @ a)
    k = 4
    dirs, vals = sefa_directions(gen, layers=layers, k=k, return_eigenvalues=True)
    assert dirs.shape == (k, gen.style_dim) and vals.shape == (k,)
    assert torch.allclose(vals.double(), evals.flip(0)[:k], atol=1e-4)
    assert torch.all(vals[:-1] >= vals[1:])
    # Same vectors up to sign, and each is an eigenvector: A^T A d = lambda d.
    ref = evecs.flip(1).T[:k].float()
    assert torch.allclose((dirs * ref).sum(1).abs(), torch.ones(k), atol=1e-4)
    ata = (a.T @ a).float()
    assert torch.allclose(dirs @ ata, vals[:, None] * dirs, atol=1e-3)


def test_orthonormal_and_deterministic_sign(gen: Generator) -> None:
    dirs = sefa_directions(gen, k=gen.style_dim)
    assert torch.allclose(dirs @ dirs.T, torch.eye(gen.style_dim), atol=1e-5)
    pivot = dirs.abs().argmax(dim=1)
    assert torch.all(dirs.gather(1, pivot[:, None]) > 0)
    assert torch.equal(dirs[:5], sefa_directions(gen))


def test_invalid_arguments(gen: Generator) -> None:
    with pytest.raises(ValueError, match="layer indices"):
        sefa_factorize(gen, [gen.num_layers])
    with pytest.raises(ValueError, match="k must be"):
        sefa_directions(gen, k=0)
    with pytest.raises(ValueError, match="layers"):
        sefa_directions(gen, layers="some")
