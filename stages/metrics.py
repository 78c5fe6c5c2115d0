"""Per-image full-reference metrics on uint8 RGB in [0, 255].

Conventions follow LaMa/MAT evaluation code so figures compare with published tables: SSIM with an
11x11 Gaussian window (sigma 1.5) per RGB channel, averaged; PSNR over all pixels and channels;
L1 as mean absolute error scaled to [0, 1]; hole PSNR over the hole pixels only.
"""
from __future__ import annotations

import math
import time

import cv2
import numpy as np

from stages.batch import Batch, batch_len, has_pixels, is_ok, to_column

PSNR_CAP_DB = 100.0  # identical images would give +inf; a cap keeps means and intervals finite
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _psnr_from_mse(mse: float) -> float:
    return PSNR_CAP_DB if mse <= 0 else min(PSNR_CAP_DB, 10.0 * math.log10(255.0**2 / mse))


def psnr(output: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels of two `[H,W,3] uint8` images."""
    diff = output.astype(np.float64) - gt.astype(np.float64)
    return _psnr_from_mse(float(np.mean(diff * diff)))


def psnr_hole(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> float:
    """PSNR over hole pixels (`[H,W] bool`) only: the part a method actually produced."""
    diff = output[hole].astype(np.float64) - gt[hole].astype(np.float64)
    return _psnr_from_mse(float(np.mean(diff * diff))) if diff.size else float("nan")


def l1(output: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error in [0, 1] units."""
    return float(np.mean(np.abs(output.astype(np.float64) - gt.astype(np.float64)))) / 255.0


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


def _ssim_maps(output: np.ndarray, gt: np.ndarray) -> list[np.ndarray]:
    """Per-channel SSIM maps (Gaussian window 11, sigma 1.5, reflected border)."""
    maps = []
    for channel in range(output.shape[2]):
        x = output[..., channel].astype(np.float64)
        y = gt[..., channel].astype(np.float64)
        mu_x, mu_y = _blur(x), _blur(y)
        var_x = _blur(x * x) - mu_x * mu_x
        var_y = _blur(y * y) - mu_y * mu_y
        cov = _blur(x * y) - mu_x * mu_y
        maps.append(((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2)))
    return maps


def ssim_hole(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> float:
    """Masked SSIM: the SSIM map (as `ssim`: 11x11 Gaussian window, sigma 1.5, averaged over RGB)
    of the whole image, averaged over hole pixels (`[H,W] bool`) only. Windows centred on a hole
    pixel also see the known pixels next to it, as a repaired region is seen in context."""
    if not hole.any():
        return float("nan")
    return float(np.mean(_ssim_maps(output, gt), axis=0)[hole].mean())


def score_row(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """All per-image metrics of one result against its ground truth."""
    return {"psnr": psnr(output, gt), "ssim": ssim(output, gt), "l1": l1(output, gt),
            "psnr_hole": psnr_hole(output, gt, hole)}


METRIC_NAMES = ("psnr", "ssim", "l1", "psnr_hole")


def score_batch(batch: Batch) -> Batch:
    """Adds metric columns (NaN where there is no ground truth or the row failed) and `t_score`."""
    n = batch_len(batch)
    columns: dict[str, list[float]] = {name: [] for name in (*METRIC_NAMES, "t_score")}
    for i in range(n):
        start = time.perf_counter()
        scores = dict.fromkeys(METRIC_NAMES, float("nan"))
        if is_ok(batch, i) and has_pixels(batch["gt"][i]):
            scores = score_row(batch["result"][i], batch["gt"][i], np.asarray(batch["hole"][i]).astype(bool))
        for name in METRIC_NAMES:
            columns[name].append(scores[name])
        columns["t_score"].append(time.perf_counter() - start)
    result = dict(batch)
    result.update({name: to_column(values) for name, values in columns.items()})
    return result
