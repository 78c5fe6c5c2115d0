"""Write protocol masks to PNG folders: `pipeline masks generate` and `manifest build --mask-kind`.

Masks are generated from (spec, size, seed) alone; a per-image seed derived from the id keeps one
image's mask unchanged when others are added to the folder.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from manifests import schema
from manifests.buckets import bucket_of
from manifests.build import ids_for, list_images
from manifests.ids import safe_name
from pipeline.outputs import write_atomic
from stages.imageio import decode_image, read_bytes
from stages.mask_protocols import MaskKind, generate_mask

MASK_KIND = "mask_kind"
MASK_SEED = "mask_seed"


def _png(hole: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(hole.astype(np.uint8) * 255, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def row_seed(seed: int, row_id: str) -> int:
    """Seed of one image's mask: stable under adding or removing other images."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{row_id}".encode()).digest()[:4], "little")


@dataclass(frozen=True)
class GenerateConfig:
    """`pipeline masks generate`."""

    kind: MaskKind  # parsed --kind
    height: int  # mask height in pixels
    width: int  # mask width in pixels
    count: int  # number of masks
    seed: int  # base seed; mask i uses seed + i
    out: Path  # folder to write NNNNN.png and masks.csv into


def generate_folder(config: GenerateConfig) -> list[float]:
    """Writes `count` masks and a masks.csv index (file, hole_ratio, bucket, kind, seed)."""
    config.out.mkdir(parents=True, exist_ok=True)
    ratios, rows = [], []
    for i in range(config.count):
        hole = generate_mask(config.kind, config.height, config.width, config.seed + i)
        name = f"{i:05d}.png"
        write_atomic(config.out / name, _png(hole))
        ratio = float(hole.mean())
        ratios.append(ratio)
        rows.append({"file": name, "hole_ratio": f"{ratio:.7f}", "bucket": bucket_of(ratio),
                     "kind": config.kind.spec, "seed": config.seed + i})
    with open(config.out / "masks.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)
    return ratios


def build_protocol_manifest(images: Path, kind: MaskKind, masks_out: Path, seed: int,
                            gt: Path | None = None) -> pa.Table:
    """One generated mask per image at the image's own size; the image is its own ground truth
    unless a --gt folder is given. Records `mask_kind` and `mask_seed` for every row."""
    files = list_images(images)
    gt_index = {p.stem: p for p in list_images(gt)} if gt else None
    masks_out.mkdir(parents=True, exist_ok=True)
    rows = []
    for row_id, image in zip(ids_for(files), files):
        height, width = decode_image(read_bytes(str(image)), str(image)).shape[:2]
        mask_seed = row_seed(seed, row_id)
        mask_path = masks_out / f"{safe_name(row_id)}.png"
        write_atomic(mask_path, _png(generate_mask(kind, height, width, mask_seed)))
        truth = gt_index.get(image.stem) if gt_index is not None else image
        rows.append({schema.ID: row_id, schema.IMAGE: str(image.resolve()), schema.MASK: str(mask_path.resolve()),
                     schema.GT: str(truth.resolve()) if truth else None, MASK_KIND: kind.spec, MASK_SEED: mask_seed})
    return pa.Table.from_pylist(rows)
