"""Closed-form semantic directions in W space (SeFa, Shen & Zhou, CVPR 2021).

Owns :func:`sefa_directions`. Following the official implementation, the style-modulation
weights of the chosen conv layers are stacked into A (each row - one input channel's affine map
from w - normalised to unit norm), and the directions are the eigenvectors of AᵀA with the
largest eigenvalues: the unit moves in w that change those layers' styles the most.
Layer index i is the synthesis conv layer that reads W+ latent i (0 = ``conv1``,
i >= 1 = ``convs[i-1]``); ToRGB layers are not included, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def conv_layers(generator: nn.Module) -> list[nn.Module]:
    """The StyledConv layers in W+ order (conv1, convs.0, convs.1, ...)."""
    return [generator.conv1, *generator.convs]


def sefa_factorize(generator: nn.Module, layers: str | Sequence[int] = "all"
                   ) -> tuple[Tensor, Tensor]:
    """All eigenvectors [style_dim, style_dim] (rows, descending eigenvalue) and eigenvalues."""
    convs = conv_layers(generator)
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of ints, got {layers!r}")
        idx = list(range(len(convs)))
    else:
        idx = [int(i) for i in layers]
        if not idx or any(i < 0 or i >= len(convs) for i in idx):
            raise ValueError(f"layer indices must be in [0, {len(convs)}), got {idx}")
    weights = [convs[i].conv.modulation.weight.detach().double().cpu() for i in idx]
    a = torch.cat([w / w.norm(dim=1, keepdim=True) for w in weights], dim=0)  # [sum_in, dim]
    evals, evecs = torch.linalg.eigh(a.T @ a)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1).T  # rows = directions, descending
    # Deterministic sign: the largest-magnitude component of each direction is positive.
    pivot = evecs.abs().argmax(dim=1)
    sign = torch.sign(evecs.gather(1, pivot[:, None]))
    evecs = evecs * torch.where(sign == 0, torch.ones_like(sign), sign)
    return evecs.float(), evals.float()


def sefa_directions(generator: nn.Module, layers: str | Sequence[int] = "all", k: int = 5,
                    return_eigenvalues: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Top-k SeFa directions [k, style_dim] as unit vectors sorted by eigenvalue (descending).

    With ``return_eigenvalues=True`` returns ``(directions, eigenvalues[k])``.
    """
    evecs, evals = sefa_factorize(generator, layers)
    if not 1 <= k <= evecs.shape[0]:
        raise ValueError(f"k must be in [1, {evecs.shape[0]}], got {k}")
    dirs = evecs[:k].to(generator.latent_avg.device if hasattr(generator, "latent_avg")
                        else "cpu")
    return (dirs, evals[:k]) if return_eigenvalues else dirs
