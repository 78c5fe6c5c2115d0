"""Cost of the score stage per image: each metric against the pixel metrics (PSNR+SSIM+L1+hole
PSNR) measured in the same run, on real dev faces, one thread (a CPU task's share); our OpenCV
MS-SSIM against pytorch_msssim, which it equals.

LPIPS runs with a random AlexNet/VGG16 trunk in torchvision's layout: the cost of the network does
not depend on its weights.

    .venv/bin/python bench/metrics_bench.py [--sizes 256,512,1024] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.metrics import ms_ssim, score_row  # noqa: E402
from stages.perceptual import build_lpips, lpips_distances  # noqa: E402

BENCH = REPO.parent / "shared" / "bench-dev"


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


def _median_ms(fn, pairs: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> float:
    fn(*pairs[0])  # warm-up (lazy imports, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for a, b in pairs:
            fn(a, b)
        times.append((time.perf_counter() - start) / len(pairs))
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    alex, vgg = _trunk("alexnet"), _trunk("vgg16")
    hole = None
    print("| size | pixel metrics ms | MS-SSIM ours ms (×) | MS-SSIM pytorch_msssim ms (×) | LPIPS alex ms (×) "
          "| LPIPS vgg ms (×) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        faces = _faces(size, args.images + 1)
        pairs = [(faces[i], faces[i + 1]) for i in range(args.images)]
        hole = np.zeros((size, size), bool)
        hole[size // 4: size // 2, size // 4: 3 * size // 4] = True
        base = _median_ms(lambda a, b: score_row(a, b, hole), pairs, args.repeats)
        cells = [f"{base:.1f}"]
        for fn in (ms_ssim, _pytorch_msssim, lambda a, b: lpips_distances(alex, [a], [b]),
                   lambda a, b: lpips_distances(vgg, [a], [b])):
            ms = _median_ms(fn, pairs, args.repeats)
            cells.append(f"{ms:.1f} ({ms / base:.2f})")
        print(f"| {size} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
