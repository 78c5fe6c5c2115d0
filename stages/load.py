"""The load stage: manifest rows in, decoded pixels out, one error row per bad input.

Methods receive the image with the hole zeroed, so no method can see what it is asked to repair
(on benchmark manifests the image is the clean face itself).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from manifests.buckets import bucket_of
from manifests.schema import MASK_DILATE
from stages.batch import EMPTY_HOLE, EMPTY_IMAGE, Batch, batch_len, to_column
from stages.imageio import DEFAULT_MAX_PIXELS, ImageError, decode_image, decode_mask_values, read_bytes
from stages.masks import dilate_hole, fit_to_image, hole_from_values, mask_ratio, require_hole


@dataclass(frozen=True)
class LoadConfig:
    """How inputs are decoded."""

    mask_threshold: int = 0  # mask pixels above this are hole
    max_pixels: int = DEFAULT_MAX_PIXELS  # reject images declaring more pixels (decompression bombs)


@dataclass
class LoadedRow:
    """One decoded manifest row."""

    image: np.ndarray  # [H,W,3] uint8, hole pixels zeroed
    hole: np.ndarray  # [H,W] uint8, 1 = hole
    gt: np.ndarray  # [H,W,3] uint8, or EMPTY_IMAGE when the row has no ground truth
    ratio: float
    warning: str | None


def _decode(decoder, role: str, uri: str, config: LoadConfig) -> np.ndarray:
    """Read and decode one file; errors start with its role and URI ("mask /x/m.png: ...")."""
    name = f"{role} {uri}"
    return decoder(read_bytes(uri, name), name, config.max_pixels)


def load_row(image_uri: str, mask_uri: str, gt_uri: str | None, config: LoadConfig,
             dilate: int = 0) -> LoadedRow:
    """Decode one row; raise ImageError naming the file and the problem.

    `dilate` > 0 grows the hole by that many pixels (disc) after it is fitted to the image's size.
    """
    image = _decode(decode_image, "image", image_uri, config)
    values = _decode(decode_mask_values, "mask", mask_uri, config)
    hole, warning = fit_to_image(hole_from_values(values, config.mask_threshold), *image.shape[:2])
    hole = dilate_hole(hole, dilate)
    require_hole(hole, f"mask {mask_uri}")
    if hole.all():  # nothing left to inpaint from: a method would invent the whole image
        raise ImageError(f"mask {mask_uri}: every pixel is hole (no known pixels to inpaint from; 0 = known)")
    gt = EMPTY_IMAGE
    if gt_uri:
        gt = image if gt_uri == image_uri else _decode(decode_image, "gt", gt_uri, config)
        if gt.shape != image.shape:
            raise ImageError(
                f"gt {gt_uri}: size {gt.shape[1]}x{gt.shape[0]} differs from image "
                f"{image.shape[1]}x{image.shape[0]}"
            )
    masked = image.copy()
    masked[hole] = 0
    return LoadedRow(masked, hole.astype(np.uint8), gt, mask_ratio(hole), warning)


def load_batch(batch: Batch, config: LoadConfig = LoadConfig()) -> Batch:
    """Manifest columns (`id`, `row`, `image`, `mask`, `gt`, optional `mask_dilate`) → pixel
    columns plus status; `image_ext` is the input's file suffix (for `--format same`)."""
    n = batch_len(batch)
    out: dict[str, list] = {k: [] for k in ("id", "row", "status", "error", "warning", "image",
                                              "hole", "gt", "mask_ratio", "bucket", "t_load", "image_ext")}
    for i in range(n):
        start = time.perf_counter()
        gt_uri = batch["gt"][i] if "gt" in batch else None
        dilate = batch[MASK_DILATE][i] if MASK_DILATE in batch else 0
        try:
            dilate = 0 if dilate is None or dilate != dilate else int(dilate)  # None / NaN: no dilation
            loaded = load_row(str(batch["image"][i]), str(batch["mask"][i]), gt_uri or None, config, dilate)
            status, error = "ok", None
        except ImageError as exc:
            loaded, status, error = None, "error", f"load: {exc}"
        except Exception as exc:  # any decoder failure must stay a per-row error
            loaded, status, error = None, "error", f"load: {type(exc).__name__}: {exc}"
        out["id"].append(str(batch["id"][i]))
        out["row"].append(int(batch["row"][i]))
        out["status"].append(status)
        out["error"].append(error)
        out["warning"].append(loaded.warning if loaded else None)
        out["image"].append(loaded.image if loaded else EMPTY_IMAGE)
        out["hole"].append(loaded.hole if loaded else EMPTY_HOLE)
        out["gt"].append(loaded.gt if loaded else EMPTY_IMAGE)
        out["mask_ratio"].append(loaded.ratio if loaded else float("nan"))
        out["bucket"].append(bucket_of(loaded.ratio) if loaded else None)
        out["t_load"].append(time.perf_counter() - start)
        out["image_ext"].append(PurePosixPath(str(batch["image"][i])).suffix.lower())
    return {name: to_column(values) for name, values in out.items()}
