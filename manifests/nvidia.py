"""The NVIDIA irregular-mask protocol: masks drawn per hole-ratio bucket from a mask folder.

Seeds 003/004 evaluate every face at several buckets (e.g. (0.1,0.2], (0.3,0.4], (0.5,0.6]); here
each image gets one mask from each requested bucket, drawn reproducibly from a seed, and the row id
says which bucket (`face@0.30-0.40`) when there is more than one.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from manifests import schema
from manifests.buckets import BUCKETS, bucket_of
from manifests.build import ids_for, list_images
from manifests.io import ManifestError

NVIDIA_BUCKETS: tuple[str, ...] = BUCKETS[1:-1]  # 0.01-0.10 ... 0.50-0.60, the test set's six


@dataclass(frozen=True)
class NvidiaConfig:
    """`pipeline manifest build --mask-kind nvidia[:B1,B2,...]`."""

    images: Path  # clean faces (each is its own ground truth unless `gt` is given)
    masks: Path  # folder of NVIDIA test masks (255 = hole); masks.csv (file, hole_ratio) is used if present
    buckets: tuple[str, ...] = NVIDIA_BUCKETS  # buckets to evaluate every image at
    seed: int = 0  # the same seed draws the same masks
    gt: Path | None = None  # ground-truth folder matched by stem


def parse_buckets(spec: str) -> tuple[str, ...]:
    """'nvidia' → all six buckets; 'nvidia:0.10-0.20,0.50-0.60' → those."""
    _, _, listed = spec.partition(":")
    buckets = tuple(b.strip() for b in listed.split(",") if b.strip()) or NVIDIA_BUCKETS
    unknown = [b for b in buckets if b not in NVIDIA_BUCKETS]
    if unknown:
        raise ValueError(f"--mask-kind {spec}: unknown bucket(s) {', '.join(unknown)}; "
                         f"use {', '.join(NVIDIA_BUCKETS)}")
    return buckets


def mask_ratios(folder: Path) -> dict[Path, float]:
    """Hole ratio (share of pixels > 127) of every mask, from masks.csv when the folder has one."""
    index = folder / "masks.csv"
    if index.is_file():
        with open(index, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and {"file", "hole_ratio"} <= set(rows[0]):
            return {folder / r["file"]: float(r["hole_ratio"]) for r in rows if (folder / r["file"]).is_file()}
    return {path: float((np.asarray(Image.open(path).convert("L")) > 127).mean()) for path in list_images(folder)}


def build_nvidia_manifest(config: NvidiaConfig) -> pa.Table:
    """One row per (image, bucket); masks drawn without replacement within a bucket when possible."""
    images = list_images(config.images)
    ids = ids_for(images)
    gt_index = {p.stem: p for p in list_images(config.gt)} if config.gt else None
    by_bucket: dict[str, list[Path]] = {b: [] for b in config.buckets}
    for path, ratio in sorted(mask_ratios(config.masks).items()):
        bucket = bucket_of(ratio)
        if bucket in by_bucket:
            by_bucket[bucket].append(path)
    rows = []
    for b_index, bucket in enumerate(config.buckets):
        pool = by_bucket[bucket]
        if not pool:
            raise ManifestError(f"{config.masks}: no mask in bucket {bucket}")
        rng = np.random.default_rng([config.seed, b_index])
        picks = rng.choice(len(pool), size=len(images), replace=len(pool) < len(images))
        for row_id, image, pick in zip(ids, images, picks):
            truth = gt_index.get(image.stem) if gt_index is not None else image
            if truth is None:
                continue
            rows.append({schema.ID: row_id if len(config.buckets) == 1 else f"{row_id}@{bucket}",
                         schema.IMAGE: str(image.resolve()), schema.MASK: str(pool[int(pick)].resolve()),
                         schema.GT: str(truth.resolve()), "mask_kind": "nvidia", "mask_bucket": bucket})
    return pa.Table.from_pylist(rows)
