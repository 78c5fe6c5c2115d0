"""Tiny random StyleGAN2 checkpoints for tests elsewhere in facefill.

Owns :func:`make_tiny_checkpoint`, which writes a rosinality-format file (``g_ema``,
``latent_avg`` and a ``facefill_config`` entry carrying the small channel widths) that
:func:`workers.nets.stylegan2.load_generator` reads back, so tests can run a real generator
forward+backward on CPU in milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from workers.nets.stylegan2 import CONFIG_KEY, Generator


def tiny_channels(size: int, channel_multiplier: int = 1, width: int = 64) -> dict[int, int]:
    """Small per-resolution widths: ``min(width, 1024 // res) * channel_multiplier`` (>= 8)."""
    out: dict[int, int] = {}
    res = 4
    while res <= size:
        out[res] = max(8, min(width, 1024 // res)) * channel_multiplier
        res *= 2
    return out


def make_tiny_checkpoint(path: str | Path, size: int = 32, style_dim: int = 64, n_mlp: int = 2,
                         channel_multiplier: int = 1, seed: int = 0,
                         channels: Mapping[int, int] | None = None) -> Path:
    """Save a random tiny generator whose images are roughly in [-1, 1] and vary with the latent.

    Weights follow StyleGAN's own init (N(0,1) weights, modulation bias 1); noise strengths are set
    to 0.1 so noise modes differ, and ToRGB weights are scaled down so the summed skip output
    stays near unit range instead of growing with the number of levels.
    """
    path = Path(path)
    torch.manual_seed(seed)
    chans = dict(channels) if channels else tiny_channels(size, channel_multiplier)
    g = Generator(size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier,
                  channels=chans)
    n_levels = len(g.to_rgbs) + 1
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.1)
            elif name.startswith("to_rgb") and name.endswith("conv.weight"):
                p.mul_(0.5 / n_levels ** 0.5)
        latent_avg = g.mean_latent().clone()
    torch.save({"g_ema": g.state_dict(), "latent_avg": latent_avg, CONFIG_KEY: g.config}, path)
    return path


def masked_scene(generator: Generator, batch: int = 2, seed: int = 1
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inversion test inputs: faces rendered at known (in-range, ψ=0.8) latents, a centre-square
    hole, and the mean latent as the start. Returns (images, known mask, initial W+)."""
    g = torch.Generator().manual_seed(seed)
    w = generator.mapping(torch.randn(batch, generator.style_dim, generator=g))
    w = generator.truncate(w, 0.8)
    with torch.no_grad():
        x = generator.synthesis(w)
    s = generator.size
    known = torch.ones(batch, 1, s, s)
    known[:, :, s // 4: 3 * s // 4, s // 4: 3 * s // 4] = 0
    init = generator.mean_latent()[None, None].expand(batch, generator.n_latent, -1).clone()
    return x, known, init


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR per image ([B]) of [-1,1] images over the pixels where ``mask`` is 1."""
    mse = (((a - b) / 2) ** 2 * mask).sum((1, 2, 3)) / (3 * mask.sum((1, 2, 3)))
    return 10 * torch.log10(1 / mse)
