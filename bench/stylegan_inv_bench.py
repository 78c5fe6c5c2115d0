"""Seconds per W+ optimisation step of ``stylegan-inv`` (generator forward+backward + full loss).

Run from the repository root:
    .venv/bin/python bench/stylegan_inv_bench.py [--sizes 256,1024] [--batches 1,4,16]
        [--iterations 5] [--device auto|cuda|cpu] [--no-amp] [--threads N]
Uses the real config-f architecture (style_dim 512, 8-layer mapping, channel multiplier 2) with
random weights, and the paper's loss with random VGG16 trunk (the weights do not change the
cost). Each cell times ``invert`` with N and with 0 iterations and reports the difference / N,
so the target-side set-up and the final render are excluded. Prints one Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from workers.inversion import InversionConfig, invert  # noqa: E402
from workers.inversion_losses import InversionLoss, LossConfig  # noqa: E402
from workers.nets.stylegan2 import Generator  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_cell(generator: Generator, loss: InversionLoss, batch: int, iterations: int,
               amp: bool, device: torch.device) -> tuple[float, float]:
    """(seconds per iteration, peak GPU memory in GiB or nan)."""
    s = generator.size
    target = torch.rand(batch, 3, s, s, device=device) * 2 - 1
    known = torch.ones(batch, 1, s, s, device=device)
    known[:, :, s // 4: 3 * s // 4, s // 4: 3 * s // 4] = 0
    init = generator.mean_latent()[None, None].expand(batch, generator.n_latent, -1).clone()

    def run(n: int) -> None:
        invert(generator, target, known, init, loss, InversionConfig(iterations=n, amp=amp))

    run(1)  # warm-up: allocator, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = _timed(lambda: run(0))
    total = _timed(lambda: run(iterations))
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
    return max(total - base, 0.0) / iterations, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024", help="generator sizes, e.g. 256,1024")
    parser.add_argument("--batches", default="1,4,16", help="batch sizes, e.g. 1,4,16")
    parser.add_argument("--iterations", type=int, default=5, help="timed steps per cell")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cuda or cpu")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = not args.no_amp and device.type == "cuda"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device} - {name}; amp: {'bf16' if amp else 'off'}; "
          f"torch {torch.__version__}\n")
    print("| size | batch | s/iter | s/iter/image | 100 iters/image (s) | peak GPU GiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    torch.manual_seed(0)
    loss = InversionLoss(LossConfig()).to(device)
    for size in _ints(args.sizes):
        generator = Generator(size, 512, 8, channel_multiplier=2).to(device).eval()
        generator.requires_grad_(False)
        generator.mean_latent()
        for batch in _ints(args.batches):
            try:
                per_iter, peak = bench_cell(generator, loss, batch, args.iterations, amp, device)
            except torch.cuda.OutOfMemoryError:
                print(f"| {size} | {batch} | OOM | | | |")
                torch.cuda.empty_cache()
                continue
            print(f"| {size} | {batch} | {per_iter:.3f} | {per_iter / batch:.3f} | "
                  f"{100 * per_iter / batch:.1f} | {peak:.2f} |", flush=True)
        del generator


if __name__ == "__main__":
    main()
