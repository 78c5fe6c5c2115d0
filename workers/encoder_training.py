"""Training the latent encoder on the generator's own samples, as the paper does (§3).

Owns :class:`EncoderTrainConfig`, :func:`random_hole` (masks drawn on the fly) and
:func:`train_encoder`. Each step samples z, maps it to w (W+ = w repeated, or two w's mixed at a
random layer), renders x = G(W+) without gradient, knocks a random hole into x (brush strokes,
rectangles or noise covering 0-60%), predicts W+ from the masked x and minimises MSE to the true
W+ (plus, optionally, an L2 image loss on G(predicted W+)). Training data never leaves the GPU and
needs no dataset: the generator is the dataset.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from workers.nets.encoder import RESNET50_FILES, LatentEncoder, encoder_input_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Options of ``pipeline train-encoder``."""

    generator: str  # generator checkpoint (path, or a file name in the weights folder)
    out: str  # where the encoder file is written
    steps: int = 20000  # optimiser steps
    batch_size: int = 8  # samples per step
    lr: float = 1e-4  # Adam learning rate
    seed: int = 0  # seeds z, masks and initialisation
    device: str = "auto"  # "auto" (cuda if available), "cuda" or "cpu"
    log_every: int = 100  # log the running latent loss every this many steps (0 = never)
    backbone: str = "resnet50"  # resnet50 as in the paper; resnet18/34 for quick runs
    imagenet_init: str = ""  # "", "imagenet" (either torchvision ResNet50 file) or a file name/path
    mixing_prob: float = 0.5  # chance a sample's W+ mixes two w's at a random layer
    image_loss_weight: float = 0.0  # weight of MSE(G(w_hat), x); 0 = latent loss only
    max_hole: float = 0.6  # largest hole fraction of the random masks


def random_hole(size: int, rng: np.random.Generator, max_ratio: float = 0.6) -> np.ndarray:
    """[size,size] bool hole of a random kind and a random target ratio in [0, max_ratio]."""
    ratio = rng.uniform(0.0, max_ratio)
    hole = np.zeros((size, size), np.uint8)
    if ratio <= 0.005:
        return hole.astype(bool)
    kind = rng.integers(3)
    if kind == 0:  # noise: independent pixels
        return rng.random((size, size)) < ratio
    if kind == 1:  # rectangles until the ratio is reached
        while hole.mean() < ratio:
            h, w = (rng.uniform(0.1, 0.6, 2) * size).astype(int) + 1
            y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            hole[y:y + h, x:x + w] = 1
        return hole.astype(bool)
    # free-form brush strokes: random walks of thick line segments
    while hole.mean() < ratio:
        x, y = rng.integers(0, size, 2)
        width = max(1, int(rng.uniform(0.03, 0.12) * size))
        for _ in range(rng.integers(2, 8)):
            angle = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.1, 0.4) * size
            nx = int(np.clip(x + length * np.cos(angle), 0, size - 1))
            ny = int(np.clip(y + length * np.sin(angle), 0, size - 1))
            cv2.line(hole, (int(x), int(y)), (nx, ny), 1, width)
            x, y = nx, ny
    return hole.astype(bool)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sample_wplus(generator, batch: int, mixing_prob: float, gen: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """W+ [B, n_latent, D]: w repeated, or two w's crossing over at a random layer."""
    n, d = generator.n_latent, generator.style_dim
    z = torch.randn(2, batch, d, generator=gen).to(device)
    with torch.no_grad():
        w1, w2 = generator.mapping(z[0]), generator.mapping(z[1])
    wplus = w1[:, None].repeat(1, n, 1)
    mix = torch.rand(batch, generator=gen) < mixing_prob
    cut = torch.randint(1, n, (batch,), generator=gen)
    layer = torch.arange(n)[None]
    sel = (mix[:, None] & (layer >= cut[:, None])).to(device)[..., None]
    return torch.where(sel, w2[:, None].expand(-1, n, -1), wplus)


def train_encoder(config: EncoderTrainConfig) -> Path:
    """Train an encoder for ``config.generator`` and save it to ``config.out``; returns the path.

    The running latent loss is logged every ``log_every`` steps; the file's ``config`` records
    ``train_loss_first``/``train_loss_last`` (mean latent MSE of the first/last 10% of steps).
    """
    from workers.nets.stylegan2 import load_generator
    from workers.weights_files import find_weight, require_weights

    device = _device(config.device)
    init_name = config.imagenet_init
    if init_name == "imagenet":  # whichever of torchvision's ResNet50 files is present
        init_name = next((n for n in RESNET50_FILES if find_weight(n)), RESNET50_FILES[0])
    names = [config.generator] + ([init_name] if init_name else [])
    files = require_weights(names)  # every missing file reported before any work
    if init_name and config.backbone != "resnet50":
        raise ValueError("imagenet_init needs backbone='resnet50'")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = load_generator(files[config.generator], device)
    size = generator.size
    encoder = LatentEncoder(generator.n_latent, generator.style_dim, encoder_input_size(size),
                            config.backbone, generator.mean_latent().detach().cpu())
    if init_name:
        state = torch.load(files[init_name], map_location="cpu", weights_only=True)
        encoder.load_imagenet_trunk(state)
    encoder.to(device).train()
    opt = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        wplus = sample_wplus(generator, config.batch_size, config.mixing_prob, gen, device)
        with torch.no_grad():
            x = generator.synthesis(wplus, noise_mode="const").clamp(-1, 1)
        hole = torch.from_numpy(np.stack([random_hole(size, rng, config.max_hole)
                                          for _ in range(config.batch_size)]))
        hole = hole[:, None].float().to(device)
        w_hat = encoder(x * (1 - hole), hole)
        latent_loss = F.mse_loss(w_hat, wplus)
        loss = latent_loss
        if config.image_loss_weight:
            loss = loss + config.image_loss_weight * F.mse_loss(
                generator.synthesis(w_hat, noise_mode="const"), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(latent_loss.detach()))
        if config.log_every and step % config.log_every == 0:
            recent = float(np.mean(losses[-config.log_every:]))
            log.info("encoder step %d/%d loss %.5f (%.1fs)", step, config.steps, recent,
                     time.perf_counter() - started)
    tenth = max(1, len(losses) // 10)
    encoder.config["train_loss_first"] = float(np.mean(losses[:tenth]))
    encoder.config["train_loss_last"] = float(np.mean(losses[-tenth:]))
    encoder.config["train_steps"] = config.steps
    encoder.cpu().eval()
    return encoder.save(config.out)
