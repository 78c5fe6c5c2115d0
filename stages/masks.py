"""Masks: from file intensities to a boolean hole at the image's size (255 = hole)."""
from __future__ import annotations

import cv2
import numpy as np

from stages.imageio import ImageError


def hole_from_values(values: np.ndarray, threshold: int = 0) -> np.ndarray:
    """`[H,W] bool` hole: pixels brighter than `threshold` (0/1 and 0/255 masks both work)."""
    return values > threshold


def fit_to_image(hole: np.ndarray, height: int, width: int) -> tuple[np.ndarray, str | None]:
    """Resize a hole of another size with nearest neighbour; return it and a warning (or None)."""
    if hole.shape == (height, width):
        return hole, None
    resized = cv2.resize(hole.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    warning = f"mask {hole.shape[1]}x{hole.shape[0]} resized to image {width}x{height} (nearest)"
    return resized.astype(bool), warning


def dilate_hole(hole: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a `[H,W] bool` hole by `pixels` with a disc (elliptic kernel of side 2N+1): stamped
    text and logos leave anti-aliased halos just outside their exact mask."""
    if pixels <= 0:
        return hole
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(hole.astype(np.uint8), kernel).astype(bool)


def mask_ratio(hole: np.ndarray) -> float:
    """Share of hole pixels, 0..1."""
    return float(hole.mean()) if hole.size else 0.0


def require_hole(hole: np.ndarray, name: str) -> None:
    """A mask with no hole pixel has nothing to inpaint: make it an error row, not a no-op."""
    if not hole.any():
        raise ImageError(f"{name}: mask has no hole pixels (nothing to inpaint; 255 = hole)")
