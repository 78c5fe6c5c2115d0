"""Multigrid hierarchy construction (numba): coarse grids and Galerkin operators.

Why: piecewise-constant (aggregation) coarse corrections needed ~22 CG
iterations on a 1024^2 NVIDIA mask; bilinear interpolation with exact
Galerkin coarse operators P^T A P needs 8-14, and stays correct for any mask
because every coarse operator is derived algebraically from the fine one.
The cycle itself runs on dense planes (poisson_dense), which apply the same
P and P^T row by row.

Layout here: a zero-padded grid flattened row-major with row stride ``wp``;
``idx`` lists the flat positions of the unknowns in raster order.  The fine
operator is the symmetric 5-point stencil ``(A x)_p = d_p x_p - sum_q w_pq x_q``
with ``we[p]`` the weight of the edge p -> p+1 and ``ws[p]`` the weight of
the edge p -> p+wp (zero when either end is not an unknown); ``d_p`` counts
neighbours inside the image.

Coarse grid l+1 keeps the points of grid l with even (y, x); a coarse point is
an unknown iff that fine point is.  Fine unknown (y, x) interpolates from the
1, 2 or 4 coarse points around it (weights 1, 1/2, 1/4); coarse points that are
not unknowns (known pixels: correction 0) are dropped; an odd last row or
column (second parent outside the image) takes its one parent with weight 1,
which matches the Neumann image edge.  Every level is a
zero-padded grid flattened with row stride wp (as above); coarse
operators are 9-point stencils a[s, p] (float32 planes), slot s = 3 (dy + 1) + (dx + 1).
"""

from __future__ import annotations

import numba as nb
import numpy as np


_JIT = {"cache": True, "nogil": True}


@nb.njit(**_JIT)
def coarse_unknowns(idx, wp, hc, wc):  # pragma: no cover - jit
    """Padded positions (raster order) and mask of the next level's unknowns."""
    wpc = wc + 2
    cmask = np.zeros((hc + 2) * wpc, np.bool_)
    out = np.empty(idx.shape[0], np.int64)
    n = 0
    y = -1  # idx is in raster order: the row only moves forward (no division per point)
    for k in range(idx.shape[0]):
        while idx[k] >= (y + 2) * wp:
            y += 1
        x = idx[k] - (y + 1) * wp - 1
        if (y & 1) == 0 and (x & 1) == 0:
            q = ((y >> 1) + 1) * wpc + (x >> 1) + 1
            cmask[q] = True
            out[n] = q
            n += 1
    return out[:n].copy(), cmask


@nb.njit(**_JIT)
def _hat(e, fine, last):  # pragma: no cover - jit
    """Weight of fine index fine+e in the hat of the coarse point at fine.

    An odd last fine row/column has only one coarse parent; it takes the full
    weight (constant extrapolation), which matches the Neumann image edge.
    """
    if e == 0:
        return 1.0
    if e == 1 and fine + 1 == last:
        return 1.0
    return 0.5


@nb.njit(**_JIT)
def _restrict_patch(u, pc, wp, mask, q, wpc, cmask, ac, yf, xf, h, w):  # pragma: no cover
    """ac[:, q] = P^T u for the 5x5 fine patch u centred on fine pc = (yf, xf).

    Only fine unknowns (mask[p] != 0) are rows of P, so u is read only there.
    """
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            qj = q + dy * wpc + dx
            if not cmask[qj]:
                continue
            acc = 0.0
            for ey in range(-1, 2):
                ly = 2 + 2 * dy + ey
                if ly < 0 or ly > 4:
                    continue
                wy = _hat(ey, yf + 2 * dy, h - 1)
                for ex in range(-1, 2):
                    lx = 2 + 2 * dx + ex
                    if lx < 0 or lx > 4:
                        continue
                    if mask[pc + (ly - 2) * wp + lx - 2] != 0.0:
                        acc += wy * _hat(ex, xf + 2 * dx, w - 1) * u[ly, lx]
            ac[3 * (dy + 1) + dx + 1, q] = acc


@nb.njit(**_JIT)
def _row_windows4(d, hp, wp):  # pragma: no cover - jit
    """ok[y, x] = 1 when d == 4 on the five padded points (y, x - 2 .. x + 2) (uint8)."""
    ok = np.zeros((hp, wp), np.uint8)
    for y in range(hp):
        run = 0
        row = d[y * wp:(y + 1) * wp]
        for x in range(wp):
            run = (run + 1) * np.int64(row[x] == 4.0)
            if x >= 4:
                ok[y, x - 2] = run >= 5
    return ok


@nb.njit(**_JIT)
def _interior5(ok, yc, xc, h, w):  # pragma: no cover - jit
    """True when the 5x5 fine block around fine (2 yc, 2 xc) lies inside the crop and is all
    unknowns with four neighbours each: then P^T A P there is the constant interior stencil.
    ok: _row_windows4 of the fine d (five rows checked instead of 25 points)."""
    if yc < 1 or xc < 1 or 2 * yc + 2 >= h or 2 * xc + 2 >= w:
        return False
    py, px = 2 * yc + 1, 2 * xc + 1
    return (ok[py - 2, px] & ok[py - 1, px] & ok[py, px] & ok[py + 1, px] & ok[py + 2, px]) != 0


@nb.njit(**_JIT)
def galerkin5(cidx, cmask, wpc, wp, d, we, ws, h, w, interior):  # pragma: no cover - jit
    """Coarse 9-point P^T A P from the padded 5-point fine operator, as float32 planes
    [9, padded coarse points].

    Column by column: P e_q is a bilinear hat on the 3x3 fine points around
    (2Y, 2X); A P e_q lives on a 5x5 patch; P^T of it gives row q.  Where the
    5x5 block is plain interior (see _interior5) the row is `interior` (the
    stencil this computes there; empty: always compute), most of a large hole.
    Computed in float64 (small dyadic sums, exact), stored in float32.
    """
    ac = np.zeros((9, cmask.shape[0]), np.float32)
    u = np.zeros((5, 5))
    fast = interior.shape[0] == 9
    ok = _row_windows4(d, h + 2, wp) if fast else np.zeros((0, 0), np.uint8)
    for k in range(cidx.shape[0]):
        q = cidx[k]
        yc = q // wpc - 1
        xc = q - (yc + 1) * wpc - 1
        pc = (2 * yc + 1) * wp + 2 * xc + 1
        if fast and _interior5(ok, yc, xc, h, w):
            for s in range(9):
                ac[s, q] = interior[s]
            continue
        u[:, :] = 0.0
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                fp = pc + dy * wp + dx
                if d[fp] == 0.0:
                    continue
                v = _hat(dy, 2 * yc, h - 1) * _hat(dx, 2 * xc, w - 1)
                ly = 2 + dy
                lx = 2 + dx
                u[ly, lx] += d[fp] * v
                u[ly, lx + 1] -= we[fp] * v
                u[ly, lx - 1] -= we[fp - 1] * v
                u[ly + 1, lx] -= ws[fp] * v
                u[ly - 1, lx] -= ws[fp - wp] * v
        _restrict_patch(u, pc, wp, d, q, wpc, cmask, ac, 2 * yc, 2 * xc, h, w)
    return ac


@nb.njit(**_JIT)
def _stencil_windows(a, stencil, hp, wp):  # pragma: no cover - jit
    """ok[y, x] = 1 when the 9-point stencil a[:, p] equals `stencil` at the five padded
    points (y, x - 2 .. x + 2) (uint8)."""
    ok = np.zeros((hp, wp), np.uint8)
    for y in range(hp):
        run = 0
        for x in range(wp):
            p = y * wp + x
            same = np.int64(1)
            for s in range(9):
                same &= np.int64(a[s, p] == stencil[s])
            run = (run + 1) * same
            if x >= 4:
                ok[y, x - 2] = run >= 5
    return ok


@nb.njit(**_JIT)
def galerkin9(cidx, cmask, wpc, wp, a, h, w, current, interior):  # pragma: no cover - jit
    """Coarse 9-point P^T A P from a padded 9-point level a [9, padded points] (as
    galerkin5, float32 planes out).

    Where the 5x5 block under a coarse point has the constant stencil `current` at
    every point (and lies inside the crop, see _interior5), the row is `interior`:
    what this computes there (empty: always compute).
    """
    ac = np.zeros((9, cmask.shape[0]), np.float32)
    u = np.zeros((5, 5))
    diag = a[4]
    fast = interior.shape[0] == 9
    ok = _stencil_windows(a, current, h + 2, wp) if fast else np.zeros((0, 0), np.uint8)
    for k in range(cidx.shape[0]):
        q = cidx[k]
        yc = q // wpc - 1
        xc = q - (yc + 1) * wpc - 1
        pc = (2 * yc + 1) * wp + 2 * xc + 1
        if fast and _interior5(ok, yc, xc, h, w):
            for s in range(9):
                ac[s, q] = interior[s]
            continue
        u[:, :] = 0.0
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                fp = pc + dy * wp + dx
                if diag[fp] == 0.0:
                    continue
                v = _hat(dy, 2 * yc, h - 1) * _hat(dx, 2 * xc, w - 1)
                for s in range(9):
                    # A symmetric: column fp of A equals row fp
                    u[2 + dy + s // 3 - 1, 2 + dx + s % 3 - 1] += a[s, fp] * v
        _restrict_patch(u, pc, wp, diag, q, wpc, cmask, ac, 2 * yc, 2 * xc, h, w)
    return ac


@nb.njit(**_JIT)
def cholesky(a):  # pragma: no cover - jit
    """Lower Cholesky factor of a small SPD matrix.

    Own kernel instead of LAPACK: a multi-threaded BLAS on a busy machine
    took ~200 ms for a 150x150 inverse.
    """
    n = a.shape[0]
    low = np.zeros_like(a)
    for j in range(n):
        s = a[j, j]
        for t in range(j):
            s -= low[j, t] * low[j, t]
        if s <= 0.0:
            raise FloatingPointError("coarse operator not positive definite")
        low[j, j] = np.sqrt(s)
        for i in range(j + 1, n):
            s = a[i, j]
            for t in range(j):
                s -= low[i, t] * low[j, t]
            low[i, j] = s / low[j, j]
    return low
