"""Seconds per W+ optimisation step of ``stylegan-inv``, peak memory, and the whole method's rate.

Run from the repository root:
    .venv/bin/python bench/stylegan_inv_bench.py [--sizes 256,1024] [--batches 1,4,16]
        [--checkpoint off,on] [--iterations 2] [--method-iterations 100] [--max-gib 8]
        [--device auto|cuda|cpu] [--no-amp] [--threads N]
Uses the real config-f architecture (style_dim 512, 8-layer mapping, channel multiplier 2) with
random weights, the paper's loss with a random VGG16 trunk and a random ResNet50 encoder (the
weights do not change the cost). Each cell runs in its own process (so its peak memory is its
own): it times ``invert`` with N and with 0 iterations and reports the difference / N, so the
target-side set-up and the final render are excluded from s/iter. Peak memory is the process's
peak RSS on CPU (models included) and ``max_memory_allocated`` on CUDA.

The method's images/s is *extrapolated*: (encoder forward + invert with 0 iterations +
``--method-iterations`` x measured s/iter) for the batch, plus Poisson fusion per image (measured
once per size on a centre-square hole), as the pipeline runs them.

Before a cell runs, its peak is predicted from the smaller batches already measured at that size
and setting (linear in the batch); a cell predicted above ``--max-gib`` is skipped and its row
says so, so the script never asks for memory it cannot have. On CUDA the script picks bf16
autocast and channels-last by itself (``--no-amp`` for float32). Prints one Markdown table.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stages.fusion.poisson import poisson_fuse  # noqa: E402
from workers.inversion import InversionConfig, invert  # noqa: E402
from workers.inversion_losses import InversionLoss, LossConfig  # noqa: E402
from workers.nets.encoder import LatentEncoder, encoder_input_size  # noqa: E402
from workers.nets.stylegan2 import Generator  # noqa: E402

GIB = 2 ** 30


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _rss_peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux: KiB


def run_cell(size: int, batch: int, iterations: int, checkpoint: str, amp: bool,
             device: torch.device) -> dict[str, float]:
    """One table row, measured in this (fresh) process."""
    torch.manual_seed(0)
    loss = InversionLoss(LossConfig()).to(device)
    generator = Generator(size, 512, 8, channel_multiplier=2).to(device).eval()
    generator.requires_grad_(False)
    generator.mean_latent()
    encoder = LatentEncoder(generator.n_latent, 512, encoder_input_size(size)).to(device).eval()
    target = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    known = torch.ones(batch, 1, size, size, device=device)
    known[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 0
    init = generator.mean_latent()[None, None].expand(batch, generator.n_latent, -1).clone()
    base_gib = _rss_peak_gib()

    def run(n: int) -> None:
        invert(generator, target, known, init, loss,
               InversionConfig(iterations=n, amp=amp, checkpoint=checkpoint))

    def encode() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                             enabled=amp and device.type == "cuda"):
            encoder(target * known, 1 - known)

    run(1)  # warm-up: allocator, oneDNN/cuDNN kernel choice
    encode()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    setup = _timed(lambda: run(0), device)
    total = _timed(lambda: run(iterations), device)
    enc = _timed(encode, device)
    peak = (torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda"
            else _rss_peak_gib())
    return {"per_iter": max(total - setup, 0.0) / iterations, "setup": setup, "encoder": enc,
            "peak_gib": peak, "base_gib": base_gib}


def fusion_seconds(size: int, repeats: int = 3) -> float:
    """Median Poisson fusion time of one image with a centre-square hole (a quarter of it)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    hole = np.zeros((size, size), bool)
    hole[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = True
    poisson_fuse(image, generated, hole)  # JIT warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        poisson_fuse(image, generated, hole)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _predict(measured: list[tuple[int, float, float]], batch: int) -> float | None:
    """Peak at ``batch`` from smaller measured (batch, peak, base) cells: a line through the last
    two, or from one, its growth above the models' base scaled by the batch."""
    if not measured:
        return None
    if len(measured) == 1:
        b, peak, base = measured[0]
        return base + (peak - base) * batch / b
    (b0, p0, _), (b1, p1, _) = measured[-2:]
    return p1 + (p1 - p0) / (b1 - b0) * (batch - b1)


def _child(args: argparse.Namespace, size: int, batch: int, checkpoint: str) -> dict:
    cmd = [sys.executable, __file__, "--cell", f"{size},{batch},{checkpoint}",
           "--iterations", str(args.iterations), "--device", args.device,
           "--threads", str(args.threads)] + (["--no-amp"] if args.no_amp else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"error": "out of memory" if "OutOfMemory" in tail or proc.returncode < 0
                else tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024", help="generator sizes, e.g. 256,1024")
    parser.add_argument("--batches", default="1,4,16", help="batch sizes, ascending")
    parser.add_argument("--checkpoint", default="off,on",
                        help="gradient checkpointing settings to compare: off, on, auto")
    parser.add_argument("--iterations", type=int, default=2, help="timed steps per cell")
    parser.add_argument("--method-iterations", type=int, default=100,
                        help="iterations of the method for the extrapolated images/s")
    parser.add_argument("--max-gib", type=float, default=8.0,
                        help="skip cells predicted to need more peak memory than this")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cuda or cpu")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--cell", default="", help=argparse.SUPPRESS)  # size,batch,checkpoint
    args = parser.parse_args(argv)

    device = _device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = not args.no_amp and device.type == "cuda"
    if args.cell:
        size, batch, checkpoint = args.cell.split(",")
        print(json.dumps(run_cell(int(size), int(batch), args.iterations, checkpoint, amp,
                                  device)))
        return

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    mem = "peak GPU GiB" if device.type == "cuda" else "peak RSS GiB"
    print(f"device: {device} - {name}; amp: {'bf16' if amp else 'off'}; torch "
          f"{torch.__version__}; {args.iterations} timed iterations per cell; images/s "
          f"extrapolated to {args.method_iterations} iterations\n")
    print(f"| size | batch | checkpoint | s/iter | s/iter/image | {mem} | "
          f"method s/image | method images/s |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    notes = []
    for size in _ints(args.sizes):
        fuse = fusion_seconds(size)
        notes.append(f"Poisson fusion at {size} px: {fuse:.3f} s/image.")
        for checkpoint in [c.strip() for c in args.checkpoint.split(",") if c.strip()]:
            measured: list[tuple[int, float, float]] = []
            for batch in _ints(args.batches):
                predicted = _predict(measured, batch)
                row = f"| {size} | {batch} | {checkpoint} |"
                if predicted is not None and predicted > args.max_gib:
                    print(f"{row} skipped | | predicted {predicted:.1f} > {args.max_gib:g} "
                          f"| | |", flush=True)
                    continue
                cell = _child(args, size, batch, checkpoint)
                if "error" in cell:
                    print(f"{row} {cell['error']} | | | | |", flush=True)
                    continue
                measured.append((batch, cell["peak_gib"], cell["base_gib"]))
                if len(notes) < 2 * len(_ints(args.sizes)) and len(measured) == 1:
                    notes.append(f"{size} px, checkpoint {checkpoint}: {cell['base_gib']:.2f} "
                                 f"GiB RSS with the models and inputs loaded, before any step.")
                per_batch = (cell["encoder"] + cell["setup"]
                             + args.method_iterations * cell["per_iter"] + batch * fuse)
                print(f"{row} {cell['per_iter']:.2f} | {cell['per_iter'] / batch:.2f} | "
                      f"{cell['peak_gib']:.2f} | {per_batch / batch:.0f} | "
                      f"{batch / per_batch:.4f} |", flush=True)
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
