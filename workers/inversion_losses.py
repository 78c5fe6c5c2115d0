"""The paper's known-region losses (He et al. 2022, eq. 1-11), per image so batch-mates never interact.

Owns the four terms and their weighted sum :class:`InversionLoss`:

* VGG (eq. 2): L1 distance (the paper's norm) between torchvision VGG16 features at relu1_2,
  relu2_2, relu3_3 and relu4_3 (the image2stylegan / projector taps), mean per layer, summed.
* Log-Cosh (eq. 4): mean over known pixels of log(cosh(d)), d the difference in 8-bit grey levels
  (``logcosh_scale``=255 per unit of [0,1]): the reference TF encoder these λ come from measured
  pixels in 0..255, and on [0,1] λ2=1.5 would make the term vanish next to the others.
* MS-SSIM (eq. 6, 8): 1 - MS-SSIM, our own implementation (see :func:`ms_ssim`).
* LPIPS (eq. 9, 10): the ``lpips`` package's learned linear heads (``vgg`` by default, the
  projector convention and the same VGG16 trunk as the VGG term, so one forward serves both).

All functions take ``generated``/``target`` in [-1, 1] ([B,3,H,W], the generator's range) and
``known`` [B,1,H,W] in {0,1} (eq. 1: 1 = known). Both images are multiplied by ``known`` before any
network, so hole pixels cannot influence the loss. VGG and LPIPS run on images area-downsampled to
``perceptual_size`` (256): projectors do so at 1024 px, where full-size VGG would dominate the cost.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stages.metrics import LPIPS_BACKBONE_FILES, MS_SSIM_WEIGHTS
from stages.perceptual import build_lpips, features_state, load_torchvision_state

VGG16_FILE = LPIPS_BACKBONE_FILES["vgg"]
ALEXNET_FILE = LPIPS_BACKBONE_FILES["alex"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_TAPS = (3, 8, 15, 22)  # relu1_2, relu2_2, relu3_3, relu4_3 in torchvision vgg16.features
LPIPS_VGG_TAPS = (3, 8, 15, 22, 29)  # lpips' vgg slices end at these ReLUs (relu5_3 last)


@dataclass(frozen=True)
class LossConfig:
    """Weights and options of the paper's total loss (eq. 11)."""

    lambda_vgg: float = 0.4  # λ1, VGG feature L1
    lambda_logcosh: float = 1.5  # λ2, Log-Cosh on grey levels
    lambda_msssim: float = 100.0  # λ3, 1 - MS-SSIM
    lambda_lpips: float = 100.0  # λ4, LPIPS
    lpips_net: str = "vgg"  # LPIPS trunk: "vgg" (projector convention) or "alex"
    perceptual_size: int = 256  # VGG/LPIPS inputs are area-downsampled to at most this size
    logcosh_scale: float = 255.0  # grey levels per unit of [0,1] for Log-Cosh


def required_loss_weights(config: LossConfig) -> list[str]:
    """Weight files the loss needs (only for terms with a non-zero weight)."""
    names = []
    if config.lambda_vgg:
        names.append(VGG16_FILE)
    if config.lambda_lpips:
        if config.lpips_net not in LPIPS_BACKBONE_FILES:
            raise ValueError(f"lpips_net must be 'vgg' or 'alex', got {config.lpips_net!r}")
        names.append(LPIPS_BACKBONE_FILES[config.lpips_net])
    return list(dict.fromkeys(names))


def _masked01(x: Tensor, known: Tensor) -> Tensor:
    """[-1,1] image -> [0,1] with hole pixels set to 0."""
    return (x.float() + 1) * 0.5 * known.float()


def logcosh_loss(generated: Tensor, target: Tensor, known: Tensor, scale: float = 255.0) -> Tensor:
    """Mean over known pixels and channels of log(cosh(d)), d in grey levels; [B]."""
    d = (generated.float() - target.float()) * (0.5 * scale)
    # log(cosh(d)) = |d| + log1p(exp(-2|d|)) - log 2, exact and overflow-free for large |d|.
    a = d.abs()
    lc = a + F.softplus(-2 * a) - torch.log(torch.tensor(2.0, device=d.device))
    k = known.float().expand_as(lc)
    return (lc * k).sum((1, 2, 3)) / k.sum((1, 2, 3)).clamp_min(1.0)


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_components(x: Tensor, y: Tensor, win: Tensor, data_range: float = 1.0
                    ) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel ([B,C] each).

    Gaussian-weighted statistics over 'valid' windows (no padding), K1=0.01, K2=0.03, C3=C2/2.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ch = x.shape[1]

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, win, groups=ch)

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).mean((2, 3)), cs.mean((2, 3))


def ms_ssim_scales(size: int, win_size: int = 11, max_scales: int = 5) -> int:
    """How many scales fit: the coarsest must still be at least one window wide."""
    n = 1
    while n < max_scales and size // 2 ** n >= win_size:
        n += 1
    return n


def ms_ssim(x: Tensor, y: Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS, eps: float = 1e-4) -> Tensor:
    """MS-SSIM per image ([B]) of images in [0, data_range], averaged over channels.

    Standard 5 scales with Wang's weights, 2x average-pool between scales, luminance only at the
    coarsest scale. Small images (the 32 px test generators) get fewer scales: as many as keep the
    coarsest scale at least ``win_size`` pixels, with the first weights renormalised to sum to 1
    (one scale = plain SSIM); below ``win_size`` pixels the window shrinks to the image. Terms are
    clamped at ``eps`` before the fractional powers (negative values would give NaN, and zero
    an infinite gradient).
    """
    x, y = x.float(), y.float()
    size = min(x.shape[-2:])
    n = ms_ssim_scales(size, win_size, len(weights))
    if size < win_size:
        win_size = size if size % 2 else size - 1
    w = torch.tensor(weights[:n], device=x.device, dtype=torch.float32)
    w = w / w.sum()
    win = _gaussian_window(win_size, sigma, x.shape[1], x.device, torch.float32)
    terms = []
    for i in range(n):
        ssim, cs = ssim_components(x, y, win, data_range)
        if i < n - 1:
            terms.append(cs)
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        else:
            terms.append(ssim)
    vals = torch.stack(terms).clamp_min(eps)  # [n, B, C]
    return torch.prod(vals ** w[:, None, None], dim=0).mean(1)


def msssim_loss(generated: Tensor, target: Tensor, known: Tensor) -> Tensor:
    """1 - MS-SSIM of the known-region images on [0,1]; [B]."""
    with torch.autocast(generated.device.type, enabled=False):
        return 1 - ms_ssim(_masked01(generated, known), _masked01(target, known))


def _downsample(x: Tensor, size: int) -> Tensor:
    if max(x.shape[-2:]) <= size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def _vgg16_trunk(n_layers: int, state: dict[str, Tensor] | None) -> nn.Sequential:
    """torchvision VGG16 ``features[:n_layers]`` (the classifier is never built)."""
    from torchvision.models.vgg import cfgs, make_layers

    trunk = make_layers(cfgs["D"])[:n_layers]
    if state is not None:
        trunk.load_state_dict(features_state(state, list(trunk.state_dict()), "VGG16"))
    return trunk


class InversionLoss(nn.Module):
    """λ1·VGG + λ2·LogCosh + λ3·(1-MS-SSIM) + λ4·LPIPS on the known region; per image [B].

    ``vgg_state``/``alexnet_state`` are torchvision ImageNet state dicts; ``None`` keeps the
    trunks random (tests and benchmarks only). Use :func:`load_inversion_loss` for real files.
    """

    def __init__(self, config: LossConfig = LossConfig(), vgg_state: dict | None = None,
                 alexnet_state: dict | None = None):
        super().__init__()
        self.config = config
        required_loss_weights(config)  # validates lpips_net
        self.use_vgg = bool(config.lambda_vgg) or (bool(config.lambda_lpips)
                                                    and config.lpips_net == "vgg")
        self.vgg: nn.Module | None = None
        self.lpips: nn.Module | None = None
        self.taps = LPIPS_VGG_TAPS if (config.lambda_lpips and config.lpips_net == "vgg") \
            else VGG_TAPS
        if self.use_vgg:
            self.vgg = _vgg16_trunk(self.taps[-1] + 1, vgg_state)
        if config.lambda_lpips:
            self.lpips = self._build_lpips(config.lpips_net, alexnet_state)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.channels_last = False  # NHWC activations; the inversion loop sets it (on for CUDA)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _build_lpips(net: str, alexnet_state: dict | None) -> nn.Module:
        import lpips

        if net == "vgg":
            # Only lpips' learned heads: the shared VGG16 trunk (self.vgg) replaces its copy, so
            # the heads are built and loaded from the package's own file without a 138M-weight
            # throwaway VGG16.
            model = nn.Module()
            model.lins = nn.ModuleList(lpips.NetLinLayer(c, use_dropout=True)
                                       for c in (64, 128, 256, 512, 512))
            path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
            heads = torch.load(path, map_location="cpu", weights_only=True)
            model.lins.load_state_dict({k[len("lin"):]: v for k, v in heads.items()})
            return model
        return build_lpips(net, alexnet_state)  # the metric's own LPIPS: same heads, same trunk loading

    # ---------------------------------------------------------------- features
    def _vgg_features(self, x01: Tensor) -> list[Tensor]:
        """ReLU activations at ``self.taps`` of ImageNet-normalised [0,1] images."""
        h = (x01 - self.mean) / self.std
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        feats = []
        for i, layer in enumerate(self.vgg):
            h = layer(h)
            if i in self.taps:
                feats.append(h)
        return feats

    def _lpips_from_feats(self, fa: list[Tensor], fb: list[Tensor]) -> Tensor:
        """LPIPS (lpips' normalisation and learned heads) from precomputed trunk features; [B].

        lpips' ScalingLayer equals ImageNet normalisation of [0,1] inputs, so the VGG16 features
        of the VGG term are exactly its trunk outputs.
        """
        import lpips

        total = 0
        for k, (a, b) in enumerate(zip(fa, fb)):
            d = (lpips.normalize_tensor(a.float()) - lpips.normalize_tensor(b.float())) ** 2
            total = total + self.lpips.lins[k](d).mean((1, 2, 3))
        return total

    def prepare(self, target: Tensor, known: Tensor) -> dict[str, object]:
        """Target-side work done once per inversion (masked images and trunk features)."""
        size = self.config.perceptual_size
        t01 = _masked01(target, known)
        cache: dict[str, object] = {"target": target, "known": known}
        if self.vgg is not None or self.lpips is not None:
            small = _downsample(t01, size)
            cache["small"] = small
            if self.vgg is not None:
                with torch.no_grad():
                    cache["feats"] = [f.detach() for f in self._vgg_features(small)]
        return cache

    def terms(self, generated: Tensor, target: Tensor, known: Tensor,
              cache: dict[str, object] | None = None) -> dict[str, Tensor]:
        """Unweighted per-image terms (only those with a non-zero weight)."""
        cfg = self.config
        if cache is None:
            cache = self.prepare(target, known)
        out: dict[str, Tensor] = {}
        if cfg.lambda_logcosh:
            out["logcosh"] = logcosh_loss(generated, target, known, cfg.logcosh_scale)
        if cfg.lambda_msssim:
            out["msssim"] = msssim_loss(generated, target, known)
        if self.vgg is None and self.lpips is None:
            return out
        g_small = _downsample(_masked01(generated, known), cfg.perceptual_size)
        if self.vgg is not None:
            gf, tf = self._vgg_features(g_small), cache["feats"]
            if cfg.lambda_vgg:
                out["vgg"] = sum((a.float() - b.float()).abs().mean((1, 2, 3))
                                 for a, b in zip(gf[:len(VGG_TAPS)], tf[:len(VGG_TAPS)]))
            if cfg.lambda_lpips and cfg.lpips_net == "vgg":
                out["lpips"] = self._lpips_from_feats(gf, tf)
        if cfg.lambda_lpips and cfg.lpips_net != "vgg":
            out["lpips"] = self.lpips(g_small * 2 - 1, cache["small"] * 2 - 1).reshape(-1).float()
        return out

    def weighted(self, terms: dict[str, Tensor]) -> Tensor:
        cfg = self.config
        lam = {"vgg": cfg.lambda_vgg, "logcosh": cfg.lambda_logcosh, "msssim": cfg.lambda_msssim,
               "lpips": cfg.lambda_lpips}
        return sum(lam[k] * v for k, v in terms.items())

    def forward(self, generated: Tensor, target: Tensor, known: Tensor,
                cache: dict[str, object] | None = None) -> Tensor:
        """Total loss per image [B]."""
        return self.weighted(self.terms(generated, target, known, cache))

    def bind(self, target: Tensor, known: Tensor) -> Callable[[Tensor], Tensor]:
        """``generated -> [B]`` with the target side precomputed (used by the inversion loop)."""
        cache = self.prepare(target, known)
        return lambda generated: self(generated, target, known, cache)


def load_inversion_loss(config: LossConfig = LossConfig(), device: str | torch.device = "cpu"
                        ) -> InversionLoss:
    """The loss with ImageNet trunks read from the weights folder (never downloaded)."""
    from workers.weights_files import require_weights

    files = require_weights(required_loss_weights(config))
    vgg_state = load_torchvision_state(files[VGG16_FILE]) if VGG16_FILE in files else None
    alex_state = load_torchvision_state(files[ALEXNET_FILE]) if ALEXNET_FILE in files else None
    return InversionLoss(config, vgg_state, alex_state).to(device)
