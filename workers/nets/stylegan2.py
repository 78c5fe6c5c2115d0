"""Our StyleGAN2 (config-f) generator and its checkpoint loader.

Owns :class:`Generator` (state-dict names identical to rosinality/stylegan2-pytorch so a ``g_ema``
loads strictly; optional per-resolution ``channels`` and NVIDIA-style ``conv_clamp`` so
stylegan2-ada-pytorch networks and tiny test networks fit the same module) and
:func:`load_generator`, which reads rosinality ``.pt`` checkpoints (``weights_only``) and NVIDIA
``.pkl`` snapshots (through the restricted importer in :mod:`workers.nets.stylegan2_ada_pkl`).
"""

from __future__ import annotations

import argparse
import math
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from workers.nets.stylegan2_layers import (ConstantInput, EqualLinear, PixelNorm, StyledConv,
                                           ToRGB)

NOISE_MODES = ("const", "random", "none")
CONFIG_KEY = "facefill_config"


def rosinality_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """Rosinality's width table (channel_multiplier 2 is config-f)."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
            512: 32 * cm, 1024: 16 * cm}


class Generator(nn.Module):
    """StyleGAN2 generator: mapping MLP + skip-architecture synthesis network.

    ``channels`` (resolution -> width) overrides rosinality's table where given, so NVIDIA
    ``channel_base``/``channel_max`` layouts and tiny test networks are representable.
    ``conv_clamp`` clamps conv and ToRGB outputs like stylegan2-ada (None = off, as rosinality).
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8,
                 channel_multiplier: int = 2, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 lr_mlp: float = 0.01, channels: Mapping[int, int] | None = None,
                 conv_clamp: float | None = None):
        super().__init__()
        log_size = int(round(math.log2(size)))
        if size < 8 or 2 ** log_size != size:
            raise ValueError(f"Generator size must be a power of two >= 8, got {size}")
        table = rosinality_channels(channel_multiplier)
        if channels:
            table.update({int(k): int(v) for k, v in channels.items()})
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.log_size = log_size
        self.channels = {2 ** i: table[2 ** i] for i in range(2, log_size + 1)}
        self.conv_clamp = None if conv_clamp is None else float(conv_clamp)
        self.config: dict[str, Any] = {
            "size": size, "style_dim": style_dim, "n_mlp": n_mlp,
            "channel_multiplier": channel_multiplier, "blur_kernel": list(blur_kernel),
            "lr_mlp": lr_mlp, "channels": dict(self.channels), "conv_clamp": self.conv_clamp}

        layers: list[nn.Module] = [PixelNorm()]
        layers += [EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                   for _ in range(n_mlp)]
        self.style = nn.Sequential(*layers)

        ch = self.channels
        clamp = self.conv_clamp
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel,
                                conv_clamp=clamp)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False, conv_clamp=clamp)
        self.num_layers = (log_size - 2) * 2 + 1
        self.n_latent = log_size * 2 - 2

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for idx in range(self.num_layers):
            res = 2 ** ((idx + 5) // 2)
            self.noises.register_buffer(f"noise_{idx}", torch.randn(1, 1, res, res))
        in_ch = ch[4]
        for i in range(3, log_size + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel, conv_clamp=clamp))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel,
                                         conv_clamp=clamp))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel,
                                      conv_clamp=clamp))
            in_ch = out_ch
        # Not part of rosinality's g_ema state dict (stored beside it), hence non-persistent.
        self.register_buffer("latent_avg", torch.zeros(style_dim), persistent=False)
        self.has_latent_avg = False

    # ---------------------------------------------------------------- latents
    def mapping(self, z: Tensor) -> Tensor:
        """z [B, style_dim] -> w [B, style_dim] (PixelNorm + MLP)."""
        return self.style(z)

    def set_latent_avg(self, latent_avg: Tensor) -> None:
        """Install the checkpoint's mean w (used by truncation)."""
        self.latent_avg.copy_(latent_avg.reshape(self.style_dim).to(self.latent_avg))
        self.has_latent_avg = True

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> Tensor:
        """The mean latent; computed from n mapped z's (fixed seed) if the checkpoint had none."""
        if not self.has_latent_avg:
            g = torch.Generator().manual_seed(seed)
            z = torch.randn(n, self.style_dim, generator=g).to(self.latent_avg)
            self.set_latent_avg(self.mapping(z).mean(0))
        return self.latent_avg

    def truncate(self, w: Tensor, psi: float) -> Tensor:
        """Truncation trick: latent_avg.lerp(w, psi) (broadcasts over batch / W+ layers)."""
        if psi == 1:
            return w
        avg = self.mean_latent()
        return avg + psi * (w - avg)

    # ---------------------------------------------------------------- synthesis
    def _noise(self, mode: str, batch: int, ref: Tensor) -> list[Tensor | None]:
        if mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if mode == "random":
            return [torch.randn(batch, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2),
                                device=ref.device, dtype=ref.dtype)
                    for i in range(self.num_layers)]
        if mode == "none":
            return [None] * self.num_layers
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")

    def synthesis(self, wplus: Tensor, noise_mode: str = "const", checkpoint: bool = False
                  ) -> Tensor:
        """W+ [B, n_latent, style_dim] (or W [B, style_dim], broadcast) -> image [B, 3, H, W].

        ``checkpoint`` recomputes each resolution level's activations during backward instead of
        keeping them (``torch.utils.checkpoint``): the same numbers for ~one more forward of
        compute, with autograd holding only the levels' inputs — for batches whose activations
        would not fit in memory. It has no effect without grad.
        """
        if wplus.ndim == 2:
            wplus = wplus.unsqueeze(1).expand(-1, self.n_latent, -1)
        if wplus.ndim != 3 or wplus.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(f"expected W+ of shape [B, {self.n_latent}, {self.style_dim}], "
                             f"got {tuple(wplus.shape)}")
        noise = self._noise(noise_mode, wplus.shape[0], wplus)
        out = self.input(wplus.shape[0])
        out = self.conv1(out, wplus[:, 0], noise[0])
        skip = self.to_rgb1(out, wplus[:, 1])
        recompute = checkpoint and torch.is_grad_enabled()
        i = 1
        for k in range(len(self.to_rgbs)):
            args = (out, skip, wplus[:, i: i + 3], noise[2 * k + 1], noise[2 * k + 2])
            if recompute:
                out, skip = torch.utils.checkpoint.checkpoint(
                    self._level, k, *args, use_reentrant=False)
            else:
                out, skip = self._level(k, *args)
            i += 2
        return skip

    def _level(self, k: int, out: Tensor, skip: Tensor, w3: Tensor, noise_a: Tensor | None,
               noise_b: Tensor | None) -> tuple[Tensor, Tensor]:
        """Resolution level k: upsampling conv, conv, ToRGB added to the upsampled skip."""
        out = self.convs[2 * k](out, w3[:, 0], noise_a)
        out = self.convs[2 * k + 1](out, w3[:, 1], noise_b)
        return out, self.to_rgbs[k](out, w3[:, 2], skip)

    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> Tensor:
        """z -> image, convenience wrapper over mapping/truncate/synthesis."""
        return self.synthesis(self.truncate(self.mapping(z), truncation_psi), noise_mode)


# -------------------------------------------------------------------- loading
def _infer_config(sd: Mapping[str, Tensor], path: Path) -> dict[str, Any]:
    """Size, widths, n_mlp and style_dim from a rosinality g_ema state dict's names/shapes."""
    essential = ["style.1.weight", "input.input", "conv1.conv.weight"]
    missing = [k for k in essential if k not in sd]
    if missing:
        raise ValueError(f"{path}: not a rosinality StyleGAN2 g_ema state dict "
                         f"(missing {missing})")
    n_mlp = len({m.group(1) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k))})
    n_rgbs = len({m.group(1) for k in sd if (m := re.fullmatch(r"to_rgbs\.(\d+)\..*", k))})
    size = 2 ** (n_rgbs + 2)
    channels = {4: int(sd["input.input"].shape[1])}
    for k in range(n_rgbs):
        key = f"convs.{2 * k}.conv.weight"
        if key not in sd:
            raise ValueError(f"{path}: missing key {key!r} for resolution {2 ** (k + 3)}")
        channels[2 ** (k + 3)] = int(sd[key].shape[1])
    cm = 2
    if 64 in channels and channels[64] % 256 == 0:
        cm = channels[64] // 256
    return {"size": size, "style_dim": int(sd["style.1.weight"].shape[1]), "n_mlp": n_mlp,
            "channel_multiplier": cm, "channels": channels}


def _check_state_dict(model: Generator, sd: dict[str, Tensor], path: Path) -> None:
    """Raise a ValueError listing missing/unexpected/mis-shaped entries (clearer than torch's)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [f"{k}: file {tuple(getattr(sd[k], 'shape', ())) or type(sd[k]).__name__} "
           f"vs model {tuple(own[k].shape)}"
           for k in own if k in sd and (not isinstance(sd[k], Tensor) or sd[k].shape != own[k].shape)]
    if missing or unexpected or bad:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", bad)):
            if items:
                more = f" ... (+{len(items) - 8} more)" if len(items) > 8 else ""
                parts.append(f"{label}: {items[:8]}{more}")
        raise ValueError(f"{path}: state dict does not match a StyleGAN2 generator "
                         f"(size {model.size}): " + "; ".join(parts))


def build_generator(sd: Mapping[str, Any], config: Mapping[str, Any] | None = None,
                    latent_avg: Tensor | None = None, path: str | Path = "<state dict>",
                    device: str | torch.device = "cpu") -> Generator:
    """Construct a Generator matching ``sd`` (config inferred unless given) and load it strictly."""
    path = Path(path)
    sd = {k: v for k, v in sd.items()}
    if latent_avg is None and isinstance(sd.get("latent_avg"), Tensor):
        latent_avg = sd.pop("latent_avg")
    sd.pop("latent_avg", None)
    non_tensor = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if non_tensor:
        raise ValueError(f"{path}: state dict entries are not tensors: {non_tensor[:8]}")
    cfg = _infer_config(sd, path)
    if config:
        cfg.update({k: v for k, v in config.items() if k in (
            "size", "style_dim", "n_mlp", "channel_multiplier", "blur_kernel", "lr_mlp",
            "channels", "conv_clamp")})
    try:
        model = Generator(**cfg)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: cannot build a generator from config {cfg}: {exc}") from exc
    own = model.state_dict()
    for k in own:  # FIR kernels are constants of the architecture; fill if the file lacks them
        if k.endswith(".kernel") and k not in sd:
            sd[k] = own[k]
    _check_state_dict(model, sd, path)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    if latent_avg is not None:
        if not isinstance(latent_avg, Tensor) or latent_avg.numel() != model.style_dim:
            raise ValueError(f"{path}: latent_avg must have {model.style_dim} elements")
        model.set_latent_avg(latent_avg.float())
    model.eval().requires_grad_(False)
    return model.to(device)


def _torch_load(path: Path) -> Any:
    # argparse.Namespace is allowed because rosinality training checkpoints store their "args".
    with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")  # NVIDIA pickles
        return torch.load(path, map_location="cpu", weights_only=True)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Load a rosinality checkpoint or an NVIDIA stylegan2-ada ``.pkl``; eval mode, frozen weights."""
    from workers.nets.stylegan2_ada_pkl import load_ada_pickle

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: generator checkpoint not found")
    if not zipfile.is_zipfile(path) and path.suffix.lower() == ".pkl":
        sd, cfg = load_ada_pickle(path)
        return build_generator(sd, cfg, path=path, device=device)
    try:
        ckpt = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - fall back to the NVIDIA format, else report both
        if zipfile.is_zipfile(path):
            raise ValueError(f"{path}: unreadable torch checkpoint: {exc}") from exc
        try:
            sd, cfg = load_ada_pickle(path)
        except ValueError as exc2:
            raise ValueError(f"{path}: neither a torch checkpoint ({exc}) nor an NVIDIA "
                             f"pickle ({exc2})") from exc2
        return build_generator(sd, cfg, path=path, device=device)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    if "g_ema" in ckpt:
        sd = ckpt["g_ema"]
    elif "input.input" in ckpt:
        sd = ckpt
    else:
        raise ValueError(f"{path}: checkpoint has no 'g_ema' state dict "
                         f"(top-level keys: {sorted(map(str, ckpt))[:10]})")
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: 'g_ema' is not a state dict")
    cfg = ckpt.get(CONFIG_KEY) if sd is not ckpt else None
    latent_avg = ckpt.get("latent_avg") if sd is not ckpt else None
    return build_generator(sd, cfg, latent_avg=latent_avg, path=path, device=device)
