"""Crop strategy for methods with a native resolution (as IOPaint's `HDStrategy.CROP` does).

A method that works at, say, 256 px should not see a 4000×3000 photo shrunk to 256 px because of a
small logo in a corner: it would repair the logo from a blur and the result would be pasted back
upscaled. Instead each hole is repaired from a crop around it, at (or close to) the crop's own
resolution, and the generated pixels go back into a full-size image, so fusion and metrics work at
full resolution and the output keeps the input's size.

Rules (all in pixels of the full image; `S` = the method's native size):

- Crops are used when the image's long side exceeds `CROP_TRIGGER` × S (2 × S: up to that, resizing
  the whole image loses at most a factor of two and keeps the whole context).
- Each connected hole component (8-connectivity) gets its bounding box grown by a margin on every
  side of `max(MARGIN_FRACTION × the box's long side, S / 4)`: half the hole's size, and at least a
  quarter of the method's input, of real context around the hole.
- Grown boxes that overlap or touch are merged into their union. Each box then becomes a square crop
  of side `max(S, box long side)`, centred on the box, shifted (not shrunk) to stay inside the image,
  and clipped only when the image itself is narrower than the side. Crops that overlap after that
  are merged again, until no two crops overlap: every generated pixel comes from exactly one crop.
- When the crops together cover more than `MAX_CROP_AREA` of the image (large or scattered holes),
  cropping saves nothing: the plan is the whole image and the method sees it as without crops.
- A crop larger than S is resized (area) so its long side is S before the method sees it, and its
  result is resized back (bicubic); a crop of side S goes in untouched. The crop's hole is resized
  so that any pixel a hole pixel contributed to is hole (the zeroed hole must not leak into the
  known context), and hole pixels are zeroed again.

Pure numpy/OpenCV; no method or Ray knowledge.
"""
from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (half-open), in full-image pixels

CROP_TRIGGER = 2.0  # crop when the image's long side > CROP_TRIGGER × native size
MARGIN_FRACTION = 0.5  # margin around a hole box: this fraction of the box's long side ...
MIN_MARGIN_FRACTION = 0.25  # ... and at least this fraction of the native size
MAX_CROP_AREA = 0.5  # crops covering more of the image than this: repair the whole image instead


def needs_crops(height: int, width: int, native_size: int | None) -> bool:
    """Whether an image of this size is repaired crop by crop by a method of `native_size`."""
    return bool(native_size) and max(height, width) > CROP_TRIGGER * native_size


def _groups(boxes: list[Box], height: int, width: int) -> list[list[int]]:
    """Indices of boxes that overlap or touch, transitively (rasterised: linear in pixels, so
    thousands of small components cost no more than a few)."""
    canvas = np.zeros((height, width), np.uint8)
    for x0, y0, x1, y1 in boxes:
        canvas[y0:y1, x0:x1] = 1
    _, labels = cv2.connectedComponents(canvas, connectivity=4)
    grouped: dict[int, list[int]] = {}
    for i, (x0, y0, _, _) in enumerate(boxes):
        grouped.setdefault(int(labels[y0, x0]), []).append(i)
    return list(grouped.values())


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _square(box: Box, side: int, height: int, width: int) -> Box:
    """A square of side max(side, box long side) centred on `box`, shifted inside the image."""
    x0, y0, x1, y1 = box
    side = max(side, x1 - x0, y1 - y0)
    sx, sy = min(side, width), min(side, height)
    left = min(max((x0 + x1 - sx) // 2, 0), width - sx)
    top = min(max((y0 + y1 - sy) // 2, 0), height - sy)
    return (left, top, left + sx, top + sy)


def plan_crops(hole: np.ndarray, native_size: int, margin: int | None = None) -> list[Box]:
    """Non-overlapping crops that together contain every hole pixel with context around it.

    `hole`: `[H,W]` bool. `margin`: pixels added around each hole component's box (default: the
    module's rule, `max(MARGIN_FRACTION × box long side, MIN_MARGIN_FRACTION × native_size)`).
    Returns `[(0, 0, W, H)]` when cropping would not pay (see `MAX_CROP_AREA`) and `[]` for no hole.
    """
    height, width = hole.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    boxes: list[Box] = []
    for x, y, w, h, _ in stats[1:count].tolist():
        m = margin if margin is not None else max(int(MARGIN_FRACTION * max(w, h)),
                                                  int(MIN_MARGIN_FRACTION * native_size))
        boxes.append((max(0, x - m), max(0, y - m), min(width, x + w + m), min(height, y + h + m)))
    if not boxes:
        return []
    boxes = [_union([boxes[i] for i in group]) for group in _groups(boxes, height, width)]
    while True:
        crops = [_square(box, native_size, height, width) for box in boxes]
        groups = _groups(crops, height, width)
        if len(groups) == len(crops):
            break
        boxes = [_union([boxes[i] for i in group]) for group in groups]
    crops.sort(key=lambda c: (c[1], c[0]))
    if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in crops) > MAX_CROP_AREA * height * width:
        return [(0, 0, width, height)]
    return crops


def prepare_crop(image: np.ndarray, hole: np.ndarray, box: Box, native_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The crop's image and `[h,w]` bool hole as the method sees them: long side at most
    `native_size` (area resize), hole pixels (and any pixel they bled into) zeroed."""
    x0, y0, x1, y1 = box
    crop, crop_hole = image[y0:y1, x0:x1], hole[y0:y1, x0:x1]
    long_side = max(x1 - x0, y1 - y0)
    if long_side <= native_size:
        return crop.copy(), crop_hole.copy()
    scale = native_size / long_side
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(crop_hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
    small[small_hole] = 0
    return small, small_hole


def paste_crops(image: np.ndarray, boxes: list[Box], patches: list[np.ndarray]) -> np.ndarray:
    """Full-size generated image: `image` outside the crops, each generated patch (at its
    `prepare_crop` size) resized back (bicubic) into its box."""
    out = image.copy()
    for (x0, y0, x1, y1), patch in zip(boxes, patches):
        if patch.shape[:2] != (y1 - y0, x1 - x0):
            patch = cv2.resize(patch, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
        out[y0:y1, x0:x1] = patch
    return out
