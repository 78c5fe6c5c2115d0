"""Building blocks of the StyleGAN2 generator (rosinality/stylegan2-pytorch layout).

This module owns the plain-torch layers used by :mod:`workers.nets.stylegan2`: a reference-free
``upfirdn2d`` (pad + depthwise conv2d with the flipped FIR kernel, so it runs on CPU and GPU
without CUDA extensions), equalized-lr linear layers, fused leaky ReLU, modulated convolution, noise
injection, the constant input and ToRGB. Module and parameter names mirror rosinality's so that a
``g_ema`` state dict loads strictly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


def make_kernel(k: Sequence[float] | Tensor) -> Tensor:
    """2-D FIR kernel normalised to sum 1 (a 1-D kernel is turned separable via an outer product)."""
    t = torch.as_tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad (negative = crop), FIR-filter, downsample.

    Same pad on both axes (pad = (before, after)). The filter is a depthwise conv2d (one kernel
    copy per channel, ``groups=C``), as NVIDIA's reference path does: a single-channel conv over
    the flattened batch*channels gives the same numbers but makes CPU backends fall back to
    im2col, whose backward took ~1 GB of temporaries per image at 256 px (the OOM at batch 16).
    """
    b, c, h, w = x.shape
    out = x
    if up > 1:
        out = out.reshape(b, c, h, 1, w, 1)
        out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
        out = out.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    hh, ww = out.shape[-2:]
    out = out[:, :, max(-p0, 0): hh - max(-p1, 0), max(-p0, 0): ww - max(-p1, 0)]
    k = torch.flip(kernel, [0, 1]).to(dtype=out.dtype, device=out.device)
    out = F.conv2d(out, k[None, None].expand(c, 1, *k.shape), groups=c)
    if down > 1:
        out = out[:, :, ::down, ::down]
    return out


class Blur(nn.Module):
    """FIR low-pass after a strided transposed conv (kernel scaled by factor**2 to keep gain)."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * (upsample_factor ** 2)
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip branch."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * (factor ** 2)
        self.register_buffer("kernel", k)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def fused_leaky_relu(x: Tensor, bias: Tensor) -> Tensor:
    """Bias add + leaky ReLU(0.2) * sqrt(2), bias broadcast over channel dim 1."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), LRELU_SLOPE) * LRELU_GAIN


class FusedLeakyReLU(nn.Module):
    """Activation with its own learned bias (rosinality's ``activate``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class PixelNorm(nn.Module):
    """Normalise z to unit second moment (parameter-free, occupies ``style.0``)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalized-lr linear: weight stored as N(0,1)/lr_mul, scaled at runtime by lr_mul/sqrt(fan_in)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    """Style-modulated conv (optionally demodulated, optionally 2x upsampling), grouped per sample."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        if upsample:
            factor = 2
            p = len(blur_kernel) - factor - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1),
                             upsample_factor=factor)
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        b, c, h, w = x.shape
        k = self.kernel_size
        s = self.modulation(style) * self.scale  # [b, c]
        base = self.weight[0]  # [o, c, k, k], the parameter itself (shared by the batch)
        factor = s[:, None, :].expand(b, self.out_ch, c)  # [b, o, c]
        if self.demodulate:
            # sum over (c, k, k) of (base * s)^2 = sum over c of s^2 * sum over (k, k) of base^2:
            # the same demodulation without a [b, o, c, k, k] intermediate kept for backward.
            with torch.autocast(x.device.type, enabled=False):  # float32 even under amp
                sq = torch.matmul(s.float().pow(2), base.float().pow(2).sum((2, 3)).t())
            factor = factor * torch.rsqrt(sq + DEMOD_EPS)[:, :, None]  # [b, o, c]
        # One [b, o, c, k, k] per-sample weight (built in the layout the conv wants, so no copy
        # follows): the only batch-sized weight tensor autograd keeps.
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            weight = base.transpose(0, 1)[None] * factor.transpose(1, 2)[..., None, None]
            out = F.conv_transpose2d(x, weight.reshape(b * c, self.out_ch, k, k), padding=0,
                                     stride=2, groups=b)
            out = self.blur(out.view(b, self.out_ch, out.shape[-2], out.shape[-1]))
        else:
            weight = base[None] * factor[..., None, None]
            out = F.conv2d(x, weight.reshape(b * self.out_ch, c, k, k), padding=self.padding,
                           groups=b)
            out = out.view(b, self.out_ch, out.shape[-2], out.shape[-1])
        return out


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by one learned scalar."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None) -> Tensor:
        if noise is None:  # noise_mode "none": zero noise
            return x
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """Learned 4x4 starting tensor, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + lrelu (-> optional clamp as in NVIDIA's conv_clamp)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None) -> Tensor:
        out = self.activate(self.noise(self.conv(x, style), noise))
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        return out


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) plus the upsampled skip from the previous level."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out
