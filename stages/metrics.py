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
MS_SSIM_WINDOW = SSIM_WINDOW  # the same window, so MS-SSIM's finest scale reuses SSIM's blurs
MS_SSIM_SIGMA = SSIM_SIGMA
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


def _inner(x: np.ndarray, pad: int = (SSIM_WINDOW - 1) // 2) -> np.ndarray:
    """The positions whose window lies inside the image (all of a map under a window wide)."""
    return x[pad:-pad, pad:-pad] if min(x.shape[:2]) > 2 * pad else x


def _planes(image: np.ndarray) -> np.ndarray:
    """`[C,H,W]` float64, each channel contiguous: one channel's maps (512 KiB each at 256²) stay
    in cache better; on `[H,W,3]` maps the same work ran 1.4x slower at 256² (even at 512²)."""
    return image.transpose(2, 0, 1).astype(np.float64, order="C")


def _ssim_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSIM and contrast-structure maps (Wang et al. 2004) of two float64 channels `[H,W]`, with
    a reflected border; their inner part (`_inner`) is MS-SSIM's valid one.

    Float64 throughout: var = E[x²] - E[x]² cancels, and in float32, even centred on 127.5, SSIM
    moved by up to 1.4e-6 on dev faces. SSIM needs var_x + var_y only, so x² + y² is blurred as
    one map: 4 blurs, not 5."""
    mu_x, mu_y, sum_sq, sum_xy = (_blur(z) for z in (x, y, x * x + y * y, x * y))
    mu_xy, mu_sq = mu_x * mu_y, mu_x * mu_x + mu_y * mu_y
    cs = (2 * (sum_xy - mu_xy) + _C2) / (sum_sq - mu_sq + _C2)
    return (2 * mu_xy + _C1) / (mu_sq + _C1) * cs, cs


def _channel_ssim_maps(output: np.ndarray, gt: np.ndarray) -> list[np.ndarray]:
    """Each RGB channel's SSIM map of two `[H,W,3] uint8` images (what `ssim` and `ssim_hole` average)."""
    return [_ssim_maps(x, y)[0] for x, y in zip(_planes(output), _planes(gt))]


def _mean_ssim(ssim_maps: list[np.ndarray]) -> float:
    """Mean over the inner positions per channel, then over channels (as scikit-image)."""
    return float(np.mean([_inner(s).mean() for s in ssim_maps]))


def ssim(output: np.ndarray, gt: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004), Gaussian window 11 / sigma 1.5, per channel then averaged.

    Equal to scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=2)`: the border half-window, where the
    filter sees padding, is left out of the mean as there.
    """
    return _mean_ssim(_channel_ssim_maps(output, gt))


def ssim_hole(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> float:
    """Masked SSIM: the SSIM map (as `ssim`: 11x11 Gaussian window, sigma 1.5, averaged over RGB)
    of the whole image, averaged over hole pixels (`[H,W] bool`) only. Windows centred on a hole
    pixel also see the known pixels next to it, as a repaired region is seen in context."""
    if not hole.any():
        return float("nan")
    return float(np.mean(_channel_ssim_maps(output, gt), axis=0)[hole].mean())


def _pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of `[H,W]`; an odd side is zero-padded by one pixel on both ends
    first, zeros counted (torch `avg_pool2d(2, padding=side % 2)`, as pytorch_msssim does): the
    windows start one pixel before the image, so the trailing pad is never read. OpenCV's area
    resize to exactly half is that average, several times faster than numpy's reshape-mean."""
    pad_h, pad_w = x.shape[0] % 2, x.shape[1] % 2
    if pad_h or pad_w:
        x = cv2.copyMakeBorder(x, pad_h, 0, pad_w, 0, cv2.BORDER_CONSTANT, value=0)
    return cv2.resize(x, (x.shape[1] // 2, x.shape[0] // 2), interpolation=cv2.INTER_AREA)


def ms_ssim(output: np.ndarray, gt: np.ndarray) -> float:
    """MS-SSIM (Wang et al. 2003) of two `[H,W,3] uint8` images: 5 scales with Wang's weights,
    Gaussian window 11 / sigma 1.5 over valid positions only, data range 255, contrast-structure
    at the 4 finer scales and SSIM at the coarsest, each clipped at 0, per RGB channel then
    averaged. NaN when the smaller side is under ``MS_SSIM_MIN_SIDE``.

    Equal to `pytorch_msssim.ms_ssim(data_range=255)` (the tests check it to 1e-6); written with
    OpenCV because the library's grouped convolutions are 10-17x slower on one CPU thread
    (bench/metrics_bench.py)."""
    return _ms_ssim(_planes(output), _planes(gt))


def _ms_ssim(xs: np.ndarray, ys: np.ndarray, first_cs: list[np.ndarray] | None = None) -> float:
    """MS-SSIM of float64 planes `[C,H,W]`; `first_cs`: SSIM's contrast-structure maps, if known."""
    if min(xs.shape[1:]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    first_cs = first_cs if first_cs is not None else [None] * len(xs)
    return float(np.mean([_ms_ssim_channel(x, y, cs) for x, y, cs in zip(xs, ys, first_cs)]))


def _ms_ssim_channel(x: np.ndarray, y: np.ndarray, first_cs: np.ndarray | None = None) -> float:
    """MS-SSIM of one float64 channel. `first_cs`, SSIM's finest-scale contrast-structure map,
    lets `score_row` blur the finest scale once for both metrics."""
    value = 1.0
    for level, weight in enumerate(MS_SSIM_WEIGHTS[:-1]):
        cs = first_cs if level == 0 and first_cs is not None else _ssim_maps(x, y)[1]
        value *= max(float(_inner(cs).mean()), 0.0) ** weight
        x, y = _pool2(x), _pool2(y)
    return value * max(float(_inner(_ssim_maps(x, y)[0]).mean()), 0.0) ** MS_SSIM_WEIGHTS[-1]


def score_row(output: np.ndarray, gt: np.ndarray, hole: np.ndarray, with_ms_ssim: bool = False) -> dict[str, float]:
    """The pixel metrics of one result against its ground truth (LPIPS is batched separately);
    `with_ms_ssim` adds MS-SSIM, which then reuses SSIM's finest-scale blurs."""
    xs, ys = _planes(output), _planes(gt)
    maps = [_ssim_maps(x, y) for x, y in zip(xs, ys)]
    row = {"psnr": psnr(output, gt), "ssim": _mean_ssim([s for s, _ in maps]), "l1": l1(output, gt),
           "psnr_hole": psnr_hole(output, gt, hole)}
    if with_ms_ssim:
        row["ms_ssim"] = _ms_ssim(xs, ys, [cs for _, cs in maps])
    return row


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
            hole = np.asarray(batch["hole"][i]).astype(bool)
            for name, value in score_row(output, gt, hole, with_ms_ssim=config.ms_ssim).items():
                columns[name][i] = value
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
