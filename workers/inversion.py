"""The paper's iterative latent optimisation (§3): W+ is refined so G(W+) matches the known region.

Owns :class:`InversionConfig` and :func:`invert` — tensors in, tensors out, no I/O, in the style of
NVlabs' projector — so it can be tested and benchmarked without the method wrapper. Each image has
its own W+ and the objective is the *sum* of per-image losses; since Adam's update is elementwise,
every latent's trajectory depends only on its own image (batching is a throughput choice only).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class InversionConfig:
    """Options of the optimisation loop."""

    iterations: int = 100  # Adam steps; the paper's loss converges after ~80 (Fig. 13)
    # Adam step size on W+. The paper gives none; Image2StyleGAN uses 0.01 (Adam, default betas)
    # and with per-coordinate steps of ~lr this moves each coordinate up to ~1 in 100 steps,
    # the scale of W's spread around its mean, while staying stable near convergence.
    lr: float = 0.01
    seed: int = 0  # seeds torch's RNG for the run (determinism of anything stochastic)
    amp: bool = True  # autocast the generator and trunks on CUDA (never on CPU)
    amp_dtype: str = "bfloat16"  # "bfloat16" (no scaler needed) or "float16" (uses a GradScaler)
    channels_last: bool = True  # channels_last memory format for the perceptual trunks on CUDA
    noise_mode: str = "const"  # the generator's noise inputs: fixed buffers, as in the paper
    keep_best: bool = True  # return each image's lowest-loss latent seen, not merely the last


def _per_image_loss(loss_fn: Callable, target: Tensor, known: Tensor) -> Callable[[Tensor], Tensor]:
    if hasattr(loss_fn, "bind"):
        return loss_fn.bind(target, known)
    return lambda generated: loss_fn(generated, target, known)


def invert(generator: nn.Module, target: Tensor, known_mask: Tensor, init_wplus: Tensor,
           loss_fn: Callable[..., Tensor], config: InversionConfig = InversionConfig()
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Optimise one W+ per image to match ``target`` where ``known_mask`` is 1.

    target [B,3,S,S] in [-1,1]; known_mask [B,1,S,S] (1 = known); init_wplus [B,n_latent,D];
    ``loss_fn(generated, target, known) -> [B]`` (an :class:`InversionLoss` is bound once so the
    target side is computed once). Returns ``(wplus [B,n_latent,D], generated [B,3,S,S] in float32,
    loss_history [iterations+1, B])`` where row i is the loss of the latent before step i and the
    last row the loss of the returned latent, so ``loss_history[-1]`` is the final per-image loss.
    """
    if init_wplus.ndim != 3 or init_wplus.shape[0] != target.shape[0]:
        raise ValueError(f"init_wplus must be [B, n_latent, D] with B={target.shape[0]}, "
                         f"got {tuple(init_wplus.shape)}")
    device = target.device
    torch.manual_seed(config.seed)
    use_amp = config.amp and device.type == "cuda"
    dtype = AMP_DTYPES[config.amp_dtype]
    scaler = torch.amp.GradScaler("cuda") if use_amp and dtype == torch.float16 else None
    target = target.float()
    known = known_mask.float()
    if device.type == "cuda" and isinstance(loss_fn, nn.Module):
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        loss_fn.to(memory_format=fmt)  # conv trunks run faster NHWC under autocast
        if hasattr(loss_fn, "channels_last"):
            loss_fn.channels_last = config.channels_last
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=use_amp):
        objective = _per_image_loss(loss_fn, target, known)
    wplus = init_wplus.detach().clone().float().to(device).requires_grad_(True)
    opt = torch.optim.Adam([wplus], lr=config.lr)
    best_loss = torch.full((target.shape[0],), float("inf"), device=device)
    best_w = wplus.detach().clone()
    history: list[Tensor] = []

    def evaluate() -> tuple[Tensor, Tensor]:
        with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
            generated = generator.synthesis(wplus, noise_mode=config.noise_mode)
            losses = objective(generated.float())
        return generated, losses.float()

    for _ in range(config.iterations):
        opt.zero_grad(set_to_none=True)
        _, losses = evaluate()
        with torch.no_grad():
            history.append(losses.detach().clone())
            better = losses < best_loss
            best_loss = torch.where(better, losses, best_loss)
            best_w[better] = wplus.detach()[better]
        total = losses.sum()  # sum, not mean: each latent's gradient is its own image's
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.step(opt)
            scaler.update()
        else:
            total.backward()
            opt.step()

    with torch.no_grad():
        _, losses = evaluate()
        if config.keep_best:
            better = losses < best_loss
            best_w[better] = wplus.detach()[better]
            final_w = best_w
        else:
            final_w = wplus.detach()
        with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
            generated = generator.synthesis(final_w, noise_mode=config.noise_mode).float()
            final_loss = objective(generated).float()
        history.append(final_loss)
    return final_w, generated, torch.stack(history)
