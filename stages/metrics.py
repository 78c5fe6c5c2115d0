"""Per-image full-reference metrics on uint8 RGB in [0, 255], and the score stage.

Conventions follow LaMa/MAT evaluation code so figures compare with published tables: SSIM with an
11x11 Gaussian window (sigma 1.5) per RGB channel, averaged; PSNR over all pixels and channels;
L1 as mean absolute error scaled to [0, 1]; hole PSNR over the hole pixels only. MS-SSIM is checked
against pytorch_msssim; LPIPS comes from the lpips package (`stages/perceptual.py`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from manifests import schema
from stages.batch import Batch, batch_len, has_pixels, is_ok, to_column

PSNR_CAP_DB = 100.0  # identical images would give +inf; a cap keeps means and intervals finite
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
LPIPS_NETS = ("alex", "vgg")  # alex: MAT's and seed 002's convention; vgg: LaMa's
# The torchvision ImageNet file each LPIPS trunk is loaded from.
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
# MS-SSIM's 5 scales with valid windows need the smaller side > (window - 1) * 2**4.
MS_SSIM_WINDOW = 11
MS_SSIM_SIGMA = 1.5
MS_SSIM_MIN_SIDE = (MS_SSIM_WINDOW - 1) * 2**4 + 1
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik 2003
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _psnr_from_mse(mse: float) -> float:
    return PSNR_CAP_DB if mse <= 0 else min(PSNR_CAP_DB, 10.0 * math.log10(255.0**2 / mse))


def _squared_error_sum(output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Sum of squared differences of two uint8 images. It is an integer; OpenCV's SIMD norm returns
    it through a square root and back (off by ~1e-16 relative), so rounding makes it exact, as the
    float64 sum was, without converting the images."""
    return float(round(cv2.norm(output, gt, cv2.NORM_L2SQR, mask)))


def psnr(output: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels of two `[H,W,3] uint8` images."""
    return _psnr_from_mse(_squared_error_sum(output, gt) / output.size)


def psnr_hole(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> float:
    """PSNR over hole pixels (`[H,W] bool`) only: the part a method actually produced."""
    count = int(np.count_nonzero(hole)) * output.shape[2]
    if not count:
        return float("nan")
    return _psnr_from_mse(_squared_error_sum(output, gt, np.asarray(hole, np.uint8)) / count)


def l1(output: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error in [0, 1] units (OpenCV's uint8 L1 norm: an exact integer sum)."""
    return cv2.norm(output, gt, cv2.NORM_L1) / output.size / 255.0


def _blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def ssim(output: np.ndarray, gt: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004), Gaussian window 11 / sigma 1.5, per channel then averaged.

    Equal to scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=2)`: the border half-window, where the
    filter sees padding, is left out of the mean as there.
    """
    pad = (SSIM_WINDOW - 1) // 2
    values = []
    for s in _ssim_maps(output, gt):
        values.append(s[pad:-pad, pad:-pad].mean() if min(s.shape) > 2 * pad else s.mean())
    return float(np.mean(values))


def _ssim_terms(x: np.ndarray, y: np.ndarray, blur) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and contrast-structure maps of SSIM (Wang et al. 2004) for float64 images, with
    `blur` as the local window (its output shape is the maps')."""
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + _C1) / (mu_x**2 + mu_y**2 + _C1)
    return luminance, (2 * cov + _C2) / (var_x + var_y + _C2)


def _ssim_maps(output: np.ndarray, gt: np.ndarray) -> list[np.ndarray]:
    """Per-channel SSIM maps (Gaussian window 11, sigma 1.5, reflected border)."""
    maps = []
    for channel in range(output.shape[2]):
        luminance, cs = _ssim_terms(output[..., channel].astype(np.float64), gt[..., channel].astype(np.float64),
                                    _blur)
        maps.append(luminance * cs)
    return maps


def ssim_hole(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> float:
    """Masked SSIM: the SSIM map (as `ssim`: 11x11 Gaussian window, sigma 1.5, averaged over RGB)
    of the whole image, averaged over hole pixels (`[H,W] bool`) only. Windows centred on a hole
    pixel also see the known pixels next to it, as a repaired region is seen in context."""
    if not hole.any():
        return float("nan")
    return float(np.mean(_ssim_maps(output, gt), axis=0)[hole].mean())


def _pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of `[H,W,C]`; an odd side is zero-padded by one pixel on both ends
    first, zeros counted (torch `avg_pool2d(2, padding=side % 2)`, as pytorch_msssim does)."""
    pads = [(side % 2, side % 2) for side in x.shape[:2]] + [(0, 0)]
    if any(p for p, _ in pads):
        x = np.pad(x, pads)
    h, w = x.shape[0] // 2, x.shape[1] // 2
    return x[: 2 * h, : 2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3))


def ms_ssim(output: np.ndarray, gt: np.ndarray) -> float:
    """MS-SSIM (Wang et al. 2003) of two `[H,W,3] uint8` images: 5 scales with Wang's weights,
    Gaussian window 11 / sigma 1.5 over valid positions only, data range 255, contrast-structure
    at the 4 finer scales and SSIM at the coarsest, each clipped at 0, per RGB channel then
    averaged. NaN when the smaller side is under ``MS_SSIM_MIN_SIDE``.

    Equal to `pytorch_msssim.ms_ssim(data_range=255)` (the tests check it to 1e-6); written with
    OpenCV because the library's grouped convolutions are 6-12x slower on one CPU thread
    (bench/metrics_bench.py)."""
    if min(output.shape[:2]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    window = cv2.getGaussianKernel(MS_SSIM_WINDOW, MS_SSIM_SIGMA, cv2.CV_64F)
    crop = MS_SSIM_WINDOW // 2

    def valid_blur(z: np.ndarray) -> np.ndarray:  # `[H,W,C]` → `[H-10,W-10,C]`: valid positions only
        return cv2.sepFilter2D(z, cv2.CV_64F, window, window)[crop:-crop, crop:-crop].reshape(
            z.shape[0] - 2 * crop, z.shape[1] - 2 * crop, -1)

    x, y = output.astype(np.float64), gt.astype(np.float64)
    value = np.ones(x.shape[2])
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        luminance, cs = _ssim_terms(x, y, valid_blur)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            value *= np.maximum(cs.mean(axis=(0, 1)), 0) ** weight
            x, y = _pool2(x), _pool2(y)
        else:
            value *= np.maximum((luminance * cs).mean(axis=(0, 1)), 0) ** weight
    return float(value.mean())


def score_row(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """The pixel metrics of one result against its ground truth (LPIPS is batched separately)."""
    return {"psnr": psnr(output, gt), "ssim": ssim(output, gt), "l1": l1(output, gt),
            "psnr_hole": psnr_hole(output, gt, hole)}


METRIC_NAMES = schema.METRIC_COLUMNS  # the score stage fills every metric column of the results


@dataclass(frozen=True)
class ScoreConfig:
    """Which optional per-image metrics the score stage computes."""

    ms_ssim: bool = True  # MS-SSIM; NaN for images under 161 px
    lpips_net: str | None = None  # "alex" | "vgg"; None: no LPIPS column values
    lpips_backbone: str | None = None  # path of the torchvision trunk file (resolved on the driver)


def score_batch(batch: Batch, config: ScoreConfig = ScoreConfig()) -> Batch:
    """Adds metric columns (NaN where there is no ground truth, the row failed or the metric is
    off) and `t_score` (the row's share of the batched LPIPS time included)."""
    n = batch_len(batch)
    columns: dict[str, list[float]] = {name: [float("nan")] * n for name in (*METRIC_NAMES, "t_score")}
    scored = [i for i in range(n) if is_ok(batch, i) and has_pixels(batch["gt"][i])]
    scored_set = set(scored)
    for i in range(n):
        start = time.perf_counter()
        if i in scored_set:
            output, gt = batch["result"][i], batch["gt"][i]
            for name, value in score_row(output, gt, np.asarray(batch["hole"][i]).astype(bool)).items():
                columns[name][i] = value
            if config.ms_ssim:
                columns["ms_ssim"][i] = ms_ssim(output, gt)
        columns["t_score"][i] = time.perf_counter() - start
    if config.lpips_net and scored:
        from stages.perceptual import cached_lpips, lpips_distances  # torch: imported only for LPIPS

        start = time.perf_counter()
        model = cached_lpips(config.lpips_net, str(config.lpips_backbone))
        values = lpips_distances(model, [batch["result"][i] for i in scored], [batch["gt"][i] for i in scored])
        share = (time.perf_counter() - start) / len(scored)
        for i, value in zip(scored, values):
            columns["lpips"][i] = value
            columns["t_score"][i] += share
    result = dict(batch)
    result.update({name: to_column(values) for name, values in columns.items()})
    return result
