"""Cost of the score stage per image: each metric against the pixel metrics (PSNR+SSIM+L1+hole
PSNR) measured in the same run, on real dev faces, one thread (a CPU task's share); our OpenCV
MS-SSIM against pytorch_msssim, which it equals; and SSIM, MS-SSIM and a score-stage row (pixel
metrics + MS-SSIM) against the previous per-channel float64 code, copied here as `reference_*`, so
the speed-up is measured in the same run, with the largest difference of the values.

LPIPS runs with a random AlexNet/VGG16 trunk in torchvision's layout: the cost of the network does
not depend on its weights.

    .venv/bin/python bench/metrics_bench.py [--sizes 256,512,1024] [--repeats 5] [--images 8]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.metrics import MS_SSIM_MIN_SIDE, MS_SSIM_WEIGHTS, PSNR_CAP_DB, ms_ssim, score_row, ssim  # noqa: E402
from stages.perceptual import build_lpips, lpips_distances  # noqa: E402

BENCH = REPO.parent / "shared" / "bench-dev"


# The previous implementation (per channel, 5 blurs per scale, float64), kept as the baseline.
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _reference_psnr_from_mse(mse: float) -> float:
    return PSNR_CAP_DB if mse <= 0 else min(PSNR_CAP_DB, 10.0 * math.log10(255.0**2 / mse))


def reference_psnr(output: np.ndarray, gt: np.ndarray) -> float:
    diff = output.astype(np.float64) - gt.astype(np.float64)
    return _reference_psnr_from_mse(float(np.mean(diff * diff)))


def reference_psnr_hole(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> float:
    diff = output[hole].astype(np.float64) - gt[hole].astype(np.float64)
    return _reference_psnr_from_mse(float(np.mean(diff * diff))) if diff.size else float("nan")


def reference_l1(output: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean(np.abs(output.astype(np.float64) - gt.astype(np.float64)))) / 255.0


def _reference_blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)


def _reference_ssim_terms(x: np.ndarray, y: np.ndarray, blur) -> tuple[np.ndarray, np.ndarray]:
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + _C1) / (mu_x**2 + mu_y**2 + _C1)
    return luminance, (2 * cov + _C2) / (var_x + var_y + _C2)


def _reference_ssim_maps(output: np.ndarray, gt: np.ndarray) -> list[np.ndarray]:
    maps = []
    for channel in range(output.shape[2]):
        luminance, cs = _reference_ssim_terms(output[..., channel].astype(np.float64),
                                              gt[..., channel].astype(np.float64), _reference_blur)
        maps.append(luminance * cs)
    return maps


def reference_ssim(output: np.ndarray, gt: np.ndarray) -> float:
    values = [s[5:-5, 5:-5].mean() if min(s.shape) > 10 else s.mean() for s in _reference_ssim_maps(output, gt)]
    return float(np.mean(values))


def _reference_pool2(x: np.ndarray) -> np.ndarray:
    pads = [(side % 2, side % 2) for side in x.shape[:2]] + [(0, 0)]
    if any(p for p, _ in pads):
        x = np.pad(x, pads)
    h, w = x.shape[0] // 2, x.shape[1] // 2
    return x[: 2 * h, : 2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3))


def reference_ms_ssim(output: np.ndarray, gt: np.ndarray) -> float:
    if min(output.shape[:2]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    window = cv2.getGaussianKernel(11, 1.5, cv2.CV_64F)

    def valid_blur(z: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(z, cv2.CV_64F, window, window)[5:-5, 5:-5].reshape(z.shape[0] - 10, z.shape[1] - 10, -1)

    x, y = output.astype(np.float64), gt.astype(np.float64)
    value = np.ones(x.shape[2])
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        luminance, cs = _reference_ssim_terms(x, y, valid_blur)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            value *= np.maximum(cs.mean(axis=(0, 1)), 0) ** weight
            x, y = _reference_pool2(x), _reference_pool2(y)
        else:
            value *= np.maximum((luminance * cs).mean(axis=(0, 1)), 0) ** weight
    return float(value.mean())


def reference_score_row(output: np.ndarray, gt: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """A score-stage row as it was: the 4 pixel metrics, then MS-SSIM from scratch."""
    return {"psnr": reference_psnr(output, gt), "ssim": reference_ssim(output, gt), "l1": reference_l1(output, gt),
            "psnr_hole": reference_psnr_hole(output, gt, hole), "ms_ssim": reference_ms_ssim(output, gt)}


def _faces(size: int, count: int) -> list[np.ndarray]:
    folder = BENCH / "faces" / str(min(size, 512))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))[:count]]
    if size > 512:
        images = [np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC)) for a in images]
    return images


def _trunk(arch: str) -> torch.nn.Module:
    from torchvision import models

    torch.manual_seed(0)
    state = {k: v for k, v in getattr(models, arch)(weights=None).state_dict().items() if k.startswith("features")}
    return build_lpips("alex" if arch == "alexnet" else "vgg", state)


def _pytorch_msssim(a: np.ndarray, b: np.ndarray) -> float:
    from pytorch_msssim import ms_ssim as reference

    x, y = (torch.from_numpy(np.array(z)).permute(2, 0, 1)[None].double() for z in (a, b))
    return float(reference(x, y, data_range=255, win_size=11, win_sigma=1.5))


def _per_image_s(fn, pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    start = time.perf_counter()
    for a, b in pairs:
        fn(a, b)
    return (time.perf_counter() - start) / len(pairs)


def _median_ms(fn, pairs: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> float:
    fn(*pairs[0])  # warm-up (lazy imports, allocator)
    return 1000 * statistics.median(_per_image_s(fn, pairs) for _ in range(repeats))


def _paired_median_ms(ours, previous, pairs: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> tuple[float, float]:
    """Median ms per image of each, the two timed in turn in every repeat, so a change of the
    machine's load during the run falls on both."""
    ours(*pairs[0]), previous(*pairs[0])
    times = [(_per_image_s(ours, pairs), _per_image_s(previous, pairs)) for _ in range(repeats)]
    return tuple(1000 * statistics.median(t[k] for t in times) for k in (0, 1))


def _hole(size: int) -> np.ndarray:
    hole = np.zeros((size, size), bool)
    hole[size // 4: size // 2, size // 4: 3 * size // 4] = True
    return hole


def _pairs(size: int, images: int) -> list[tuple[np.ndarray, np.ndarray]]:
    faces = _faces(size, images + 1)
    return [(faces[i], faces[i + 1]) for i in range(images)]


def _speedup_table(sizes: list[int], images: int, repeats: int) -> None:
    """Ours against the previous float64 code, same run; Δ: the largest |difference| of any value."""
    print("| size | SSIM ms (previous) | MS-SSIM ms (previous) | score row ms (previous) | max Δ |")
    print("|---:|---:|---:|---:|---:|")
    for size in sizes:
        pairs, hole = _pairs(size, images), _hole(size)
        cells = []
        for ours, previous in ((ssim, reference_ssim), (ms_ssim, reference_ms_ssim),
                               (lambda a, b: score_row(a, b, hole, with_ms_ssim=True),
                                lambda a, b: reference_score_row(a, b, hole))):
            new_ms, old_ms = _paired_median_ms(ours, previous, pairs, repeats)
            cells.append(f"{new_ms:.1f} ({old_ms:.1f}, {old_ms / new_ms:.1f}× faster)")
        ref_rows = [reference_score_row(a, b, hole) for a, b in pairs]
        new_rows = [score_row(a, b, hole, with_ms_ssim=True) for a, b in pairs]
        delta = max(abs(new[k] - ref[k]) for new, ref in zip(new_rows, ref_rows) for k in ref)
        print(f"| {size} | " + " | ".join(cells) + f" | {delta:.1e} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    _speedup_table(sizes, args.images, args.repeats)
    print()
    alex, vgg = _trunk("alexnet"), _trunk("vgg16")
    print("| size | pixel metrics ms | MS-SSIM ours ms (×) | MS-SSIM pytorch_msssim ms (×) | LPIPS alex ms (×) "
          "| LPIPS vgg ms (×) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        pairs, hole = _pairs(size, args.images), _hole(size)
        base = _median_ms(lambda a, b: score_row(a, b, hole), pairs, args.repeats)
        cells = [f"{base:.1f}"]
        for fn in (ms_ssim, _pytorch_msssim, lambda a, b: lpips_distances(alex, [a], [b]),
                   lambda a, b: lpips_distances(vgg, [a], [b])):
            ms = _median_ms(fn, pairs, args.repeats)
            cells.append(f"{ms:.1f} ({ms / base:.2f})")
        print(f"| {size} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
