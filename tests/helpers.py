"""Helpers the tests share (importable as `tests.helpers`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BENCH = SHARED / "bench-dev"


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write an array as PNG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def manifest_table(rows: list[dict]) -> pa.Table:
    """A manifest table from dicts with id/image/mask[/gt] and any extra keys."""
    return pa.Table.from_pylist(rows)


def disk_mask(size: int, radius_frac: float = 0.25) -> np.ndarray:
    """`[size,size] uint8` 0/255 mask with a centred disc hole."""
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    return (((yy - c) ** 2 + (xx - c) ** 2) < (radius_frac * size) ** 2).astype(np.uint8) * 255


def save_random_torchvision(folder: Path, arch: str = "alexnet", seed: int = 0) -> Path:
    """A randomly initialised torchvision `alexnet`/`vgg16` state dict saved under its real download
    name (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``), for tests that need the file
    format and key names, not ImageNet features."""
    import torch
    from torchvision import models

    names = {"alexnet": "alexnet-owt-7be5be79.pth", "vgg16": "vgg16-397923af.pth"}
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / names[arch]
    torch.save(getattr(models, arch)(weights=None).state_dict(), path)
    return path
