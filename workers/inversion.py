"""The paper's iterative latent optimisation (§3): W+ is refined so G(W+) matches the known region.

Owns :class:`InversionConfig` and :func:`invert` — tensors in, tensors out, no I/O, in the style of
NVlabs' projector — so it can be tested and benchmarked without the method wrapper. Each image has
its own W+ and the objective is the *sum* of per-image losses; since Adam's update is elementwise,
every latent's trajectory depends only on its own image (batching is a throughput choice only).
Per batch it also decides whether the generator's activations are kept for backward or recomputed
(gradient checkpointing, :func:`use_checkpointing`), which changes memory, not results.
"""
from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    amp: bool = True  # autocast the generator and trunks on CUDA (on CPU only with the flag below)
    amp_dtype: str = "bfloat16"  # "bfloat16" (no scaler needed) or "float16" (uses a GradScaler)
    channels_last: bool = True  # channels_last memory format for the perceptual trunks on CUDA
    # Also use amp/channels_last on CPU: slower there, but lets CPU tests pin the GPU numerics.
    gpu_paths_on_cpu: bool = False
    # Gradient checkpointing of the generator's levels: "on", "off", or "auto" = on when the
    # activations autograd would keep for this batch exceed half the free memory.
    checkpoint: str = "auto"
    noise_mode: str = "const"  # the generator's noise inputs: fixed buffers, as in the paper
    keep_best: bool = True  # return each image's lowest-loss latent seen, not merely the last


CHECKPOINT_MODES = ("auto", "on", "off")
# synthesis_saved_bytes' two measurements per generator (they depend on its weights' shapes only).
_SAVED_BYTES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def synthesis_saved_bytes(generator: nn.Module, batch: int, noise_mode: str = "const") -> int:
    """Bytes autograd would keep for backward of a batch's synthesis, without running it.

    Measured on forwards of one and of two images and extrapolated linearly (what the batch
    adds per image, plus the batch-independent part). Each storage counts once; the generator's
    own parameters and buffers are left out.
    """
    own = {t.untyped_storage().data_ptr() for t in
           list(generator.parameters()) + list(generator.buffers())}

    def measure(n: int) -> int:
        seen: dict[int, int] = {}

        def pack(t: Tensor) -> Tensor:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in own:
                seen[ptr] = t.untyped_storage().nbytes()
            return t

        w = generator.mean_latent()[None, None].expand(n, generator.n_latent, -1).clone()
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            generator.synthesis(w.requires_grad_(True), noise_mode=noise_mode)
        return sum(seen.values())

    key = (noise_mode, str(next(generator.parameters()).device))
    measured = _SAVED_BYTES.setdefault(generator, {})
    if key not in measured:  # once per generator: every later batch of an actor reuses it
        measured[key] = (measure(1), measure(2))
    one, two = measured[key]
    return one if batch <= 1 else one + (batch - 1) * (two - one)


def free_memory_bytes(device: torch.device) -> int:
    """Memory a new allocation can still get: CUDA's free memory, else MemAvailable (and the
    cgroup's headroom when it is smaller)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return free


def use_checkpointing(mode: str, generator: nn.Module, batch: int, device: torch.device,
                      noise_mode: str = "const") -> bool:
    """Resolve ``InversionConfig.checkpoint`` for this batch (see there).

    "auto" weighs only the generator's part (the loss's is not checkpointed) in float32 (amp
    roughly halves it): a conservative test that costs two small forwards per call.
    """
    if mode not in CHECKPOINT_MODES:
        raise ValueError(f"checkpoint must be one of {CHECKPOINT_MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "on"
    return synthesis_saved_bytes(generator, batch, noise_mode) > 0.5 * free_memory_bytes(device)


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
    gpu_paths = device.type == "cuda" or config.gpu_paths_on_cpu
    use_amp = config.amp and gpu_paths
    dtype = AMP_DTYPES[config.amp_dtype]
    scaler = torch.amp.GradScaler(device.type) if use_amp and dtype == torch.float16 else None
    checkpoint = config.iterations > 0 and use_checkpointing(
        config.checkpoint, generator, target.shape[0], device, config.noise_mode)
    torch.manual_seed(config.seed)
    target = target.float()
    known = known_mask.float()
    if isinstance(loss_fn, nn.Module):
        nhwc = gpu_paths and config.channels_last
        # conv trunks run faster NHWC under autocast on GPUs; set either way, so a loss module
        # shared between runs never keeps an earlier run's layout
        loss_fn.to(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
        if hasattr(loss_fn, "channels_last"):
            loss_fn.channels_last = nhwc
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=use_amp):
        objective = _per_image_loss(loss_fn, target, known)
    wplus = init_wplus.detach().clone().float().to(device).requires_grad_(True)
    opt = torch.optim.Adam([wplus], lr=config.lr)
    best_loss = torch.full((target.shape[0],), float("inf"), device=device)
    best_w = wplus.detach().clone()
    history: list[Tensor] = []

    def evaluate() -> tuple[Tensor, Tensor]:
        with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
            generated = generator.synthesis(wplus, noise_mode=config.noise_mode,
                                            checkpoint=checkpoint)
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
