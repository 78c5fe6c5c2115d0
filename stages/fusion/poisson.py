"""Exact Poisson fusion (Perez et al. 2003) of a generated image into a hole.

Why this exists: ``cv2.seamlessClone`` is not usable for inpainting.  It
modifies the caller's mask in place, erodes the mask by ~3 px, changes pixels
outside the hole, never fills hole pixels on the 1-px image frame, and fills
nothing at all for scattered (random-pixel) masks.  Generic exact solvers
(scipy ``spsolve``, pyamg, CG) are correct but take seconds per 1024^2 image.

What it computes: inside the hole Omega, Delta f = Delta g (g = generated,
4-neighbour Laplacian that sums over the neighbours that exist, i.e. Neumann at
the image edge) with f = image on the known pixels; per channel; rounded and
clipped to uint8.  Known pixels are copied bit for bit.

How: f = g + h where h is harmonic in Omega with h = image - g on the known
neighbours, so all channels share one operator and only the (smooth)
correction is solved, by multigrid-preconditioned CG (``poisson_pcg``) with a
stop rule that proves max|h - h_exact| <= MAX_ERROR before rounding.
"""

from __future__ import annotations

import numpy as np

from stages.fusion import poisson_dense as dense
from stages.fusion.poisson_pcg import Level, solve
from stages.fusion.poisson_work import work_arrays

MAX_ERROR = 1e-2  # proven bound on |f - f_exact| before rounding, grey levels
# Holes no pixel of which is farther than this (city-block) from a known pixel are solved
# without coarse levels: 0.26 s instead of 0.37 s for a 20 % random-pixel mask at 1024^2,
# 0.37 s instead of 0.41 s at 50 % (there 3); measured in docs/poisson.md.
SHALLOW_DEPTH = 3


def poisson_fuse(image: np.ndarray, generated: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Blend ``generated`` into the ``hole`` of ``image``; returns a new uint8 image."""
    return _fuse(image, generated, hole, as_float=False)


def poisson_fuse_float(image: np.ndarray, generated: np.ndarray,
                       hole: np.ndarray) -> np.ndarray:
    """Same solve before rounding ([H, W, 3] float64); for tests and benchmarks."""
    return _fuse(image, generated, hole, as_float=True)


def _fuse(image: np.ndarray, generated: np.ndarray, hole: np.ndarray,
          as_float: bool) -> np.ndarray:
    """Validate, crop to the hole's bounding box, solve, write back."""
    _validate(image, generated, hole)
    out = image.astype(np.float64) if as_float else image.copy()
    if not hole.any():
        return out
    if hole.all():  # no known pixel: no Dirichlet data, f = g + const; pick g
        return generated.astype(out.dtype)
    (y0, y1), (x0, x1) = _bbox(hole)
    h_planes, ext = _solve_correction(hole, image, generated, y0, x0, y1 - y0, x1 - x0)
    dense.scatter_result(hole, y0, x0, h_planes, generated, out, as_float, ext)
    return out


def _validate(image: np.ndarray, generated: np.ndarray, hole: np.ndarray) -> None:
    """Fail loudly on shape/dtype mismatches instead of blending garbage."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H,W,3] uint8, got {image.shape} {image.dtype}")
    if generated.shape != image.shape or generated.dtype != np.uint8:
        raise ValueError(f"generated must match image, got {generated.shape} {generated.dtype}")
    if hole.shape != image.shape[:2] or hole.dtype != np.bool_:
        raise ValueError(f"hole must be [H,W] bool, got {hole.shape} {hole.dtype}")


def _bbox(hole: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Bounding box [y0, y1) x [x0, x1) of the hole grown by one pixel (its Dirichlet ring)."""
    rows = np.flatnonzero(hole.any(axis=1))
    cols = np.flatnonzero(hole.any(axis=0))
    h, w = hole.shape
    return ((max(rows[0] - 1, 0), min(rows[-1] + 2, h)),
            (max(cols[0] - 1, 0), min(cols[-1] + 2, w)))


def _solve_correction(hole: np.ndarray, image: np.ndarray, generated: np.ndarray,
                      y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic correction h on the crop [y0, y0 + h) x [x0, x0 + w), as padded planes
    [3, h + 2, w + 2], and the row extents of the hole in those planes.

    Cropping is exact: every hole pixel keeps all its neighbours (the crop has
    a one-pixel known ring except where it meets the image edge).
    """
    arrays = work_arrays()
    planes = arrays.get("fine", (5, h + 2, w + 2), np.float32)
    b = arrays.get("rhs", (image.shape[2] + 1, h + 2, w + 2), np.float32)
    dense32 = dense.build_fine_into(hole, image, generated, y0, x0, h, w, planes, b)
    ext = dense.row_extents(dense32[4])
    n = dense.count_unknowns(dense32[4], ext) + 1
    coupled, isolated = dense.split_unknowns(dense32[4], dense32[1], dense32[2], ext,
                                             arrays.get("coupled", (n,), np.int64),
                                             arrays.get("isolated", (n,), np.int64))
    d, we, ws = (v.reshape(-1) for v in dense32[:3])
    if coupled.size:
        depth = dense.hole_depth_into(hole, y0, x0, h, w, SHALLOW_DEPTH + 1,
                                      arrays.get("depth", (h, w), np.int32))
        shallow = depth <= SHALLOW_DEPTH
        h_planes = solve(Level(h, w, coupled, d, we, ws, dense32, ext), b, MAX_ERROR, shallow)
    else:
        h_planes = np.zeros((b.shape[0] - 1, h + 2, w + 2))
    # Isolated pixels (no unknown neighbour): d_p h_p = b_p exactly.  The dense
    # iteration solves them too; the exact value also covers the direct fallback.
    flat = h_planes.reshape(h_planes.shape[0], -1)
    flat[:, isolated] = b.reshape(b.shape[0], -1)[:-1, isolated] / d[isolated].astype(np.float64)
    return h_planes, ext
