"""Build manifests from folders of images and masks.

Two pairings: `same-name` (each image has a mask with the same file stem, as clean-up jobs and
pre-paired test sets have) and `random` (each image draws a mask from the folder reproducibly from a
seed, the usual benchmark protocol where the clean face doubles as ground truth). Or one mask file for
every image (`mask_file`: a watermark at a fixed position; the load stage resizes it to each image).
`dilate` > 0 adds a `mask_dilate` column that the load stage applies (stamps leave halos).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import pyarrow as pa

from manifests import schema
from manifests.io import ManifestError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


class Pairing(str, Enum):
    """How images find their masks."""

    SAME_NAME = "same-name"
    RANDOM = "random"


@dataclass(frozen=True)
class BuildConfig:
    """What `pipeline manifest build` was asked to do."""

    images: Path  # folder of images to repair
    masks: Path | None  # folder of masks (255 = hole); None with `mask_file`
    pairing: Pairing = Pairing.SAME_NAME  # how an image gets its mask
    seed: int = 0  # random pairing seed; the same seed gives the same manifest
    gt: Path | None = None  # folder of ground truths matched by stem; None: see `build_manifest`
    mask_file: Path | None = None  # one mask for every image, instead of `masks`
    dilate: int = 0  # > 0: grow every hole by this many pixels (recorded as column `mask_dilate`)


@dataclass
class BuildResult:
    """The manifest and the images that could not be paired (reported, not fatal)."""

    table: pa.Table
    unmatched: list[str] = field(default_factory=list)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name for reproducibility."""
    if not folder.is_dir():
        raise ManifestError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ManifestError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _by_stem(files: list[Path]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in files:
        index.setdefault(path.stem, path)
    return index


def ids_for(images: list[Path]) -> list[str]:
    """Stems as ids; the full file name where two files share a stem."""
    stems = [p.stem for p in images]
    clashes = {s for s in stems if stems.count(s) > 1}
    return [p.name if p.stem in clashes else p.stem for p in images]


def build_manifest(config: BuildConfig) -> BuildResult:
    """Pair images with masks (and ground truths) into a manifest table.

    Ground truth: from `config.gt` by stem when given; otherwise, with random pairing, the image
    itself (clean faces + masks); otherwise none (clean-up jobs have no ground truth).
    """
    if (config.masks is None) == (config.mask_file is None):
        raise ManifestError("give either a folder of masks or one mask file for every image")
    if config.dilate < 0:
        raise ManifestError(f"dilate must be >= 0 pixels, not {config.dilate}")
    images = list_images(config.images)
    if config.mask_file is not None:
        if not config.mask_file.is_file():
            raise ManifestError(f"{config.mask_file}: no such mask file")
        if config.pairing is Pairing.RANDOM:
            raise ManifestError("one mask file for every image cannot be paired at random")
    masks = list_images(config.masks) if config.masks is not None else [config.mask_file]
    gt_index = _by_stem(list_images(config.gt)) if config.gt else None
    ids = ids_for(images)

    if config.mask_file is not None:
        chosen: list[Path | None] = [config.mask_file] * len(images)
    elif config.pairing is Pairing.RANDOM:
        rng = np.random.default_rng(config.seed)
        replace = len(masks) < len(images)
        picks = rng.choice(len(masks), size=len(images), replace=replace)
        chosen = [masks[int(i)] for i in picks]
    else:
        mask_index = _by_stem(masks)
        chosen = [mask_index.get(p.stem) for p in images]

    rows: dict[str, list[str | None]] = {c: [] for c in schema.MANIFEST_COLUMNS}
    unmatched: list[str] = []
    for row_id, image, mask in zip(ids, images, chosen):
        if mask is None:
            unmatched.append(f"{image.name}: no mask named {image.stem}.* in {config.masks}")
            continue
        if gt_index is not None:
            gt = gt_index.get(image.stem)
            if gt is None:
                unmatched.append(f"{image.name}: no ground truth named {image.stem}.* in {config.gt}")
                continue
        else:
            gt = image if config.pairing is Pairing.RANDOM else None
        rows[schema.ID].append(row_id)
        rows[schema.IMAGE].append(str(image.resolve()))
        rows[schema.MASK].append(str(mask.resolve()))
        rows[schema.GT].append(str(gt.resolve()) if gt else None)
    if not rows[schema.ID]:
        raise ManifestError("no image could be paired with a mask:\n  " + "\n  ".join(unmatched[:10]))
    table = pa.table(rows, schema=schema.MANIFEST_SCHEMA)
    if config.dilate:
        table = table.append_column(schema.MASK_DILATE, pa.array([config.dilate] * len(table), pa.int32()))
    return BuildResult(table=table, unmatched=unmatched)
