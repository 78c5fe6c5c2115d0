"""Geometric multigrid transfer and coarse-level kernels (numba).

Why: piecewise-constant (aggregation) coarse corrections needed ~20 CG
iterations; bilinear interpolation with exact Galerkin coarse operators
P^T A P needs about 9 on the same masks, and stays correct for any mask
because every coarse operator is derived algebraically from the fine one.

Coarse grid l+1 keeps the points of grid l with even (y, x); a coarse point is
an unknown iff that fine point is.  Fine unknown (y, x) interpolates from the
1, 2 or 4 coarse points around it (weights 1, 1/2, 1/4); coarse points that are
not unknowns (known pixels: correction 0) are dropped.  Every level is a
zero-padded grid flattened with row stride wp (see poisson_mg); coarse
operators are 9-point stencils a[p, s], slot s = 3 (dy + 1) + (dx + 1).
Coarse vectors stay zero off the unknowns, so interpolation needs no
parent lists; restriction may leave junk off the unknowns, which no kernel
reads.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = {"cache": True, "nogil": True}


@nb.njit(**_JIT)
def _parents(y, x, wpc, cmask, pos, wts):  # pragma: no cover - jit
    """Coarse unknowns (padded positions, weights) interpolating fine (y, x)."""
    y0 = y >> 1
    x0 = x >> 1
    ny = 1 + (y & 1)
    nx = 1 + (x & 1)
    wgt = (1.0 if ny == 1 else 0.5) * (1.0 if nx == 1 else 0.5)
    cnt = 0
    for i in range(ny):
        for j in range(nx):
            q = (y0 + i + 1) * wpc + x0 + j + 1
            if cmask[q]:
                pos[cnt] = q
                wts[cnt] = wgt
                cnt += 1
    return cnt


@nb.njit(**_JIT)
def coarse_unknowns(idx, wp, hc, wc):  # pragma: no cover - jit
    """Padded positions (raster order) and mask of the next level's unknowns."""
    wpc = wc + 2
    cmask = np.zeros((hc + 2) * wpc, np.bool_)
    out = np.empty(idx.shape[0], np.int64)
    n = 0
    for k in range(idx.shape[0]):
        y = idx[k] // wp - 1
        x = idx[k] - (y + 1) * wp - 1
        if (y & 1) == 0 and (x & 1) == 0:
            q = ((y >> 1) + 1) * wpc + (x >> 1) + 1
            cmask[q] = True
            out[n] = q
            n += 1
    return out[:n].copy(), cmask


@nb.njit(**_JIT)
def _add_product(ac, y, x, dy, dx, coef, wpc, cmask, pi, wi, pj, wj):  # pragma: no cover
    """ac += P_i^T * coef * P_j for fine i = (y, x) and j = (y+dy, x+dx)."""
    ni = _parents(y, x, wpc, cmask, pi, wi)
    nj = _parents(y + dy, x + dx, wpc, cmask, pj, wj)
    for u in range(ni):
        for v in range(nj):
            t = pj[v] - pi[u] + wpc + 1  # = (dY + 1) * wpc + (dX + 1)
            s = 3 * (t // wpc) + t % wpc
            ac[pi[u], s] += wi[u] * coef * wj[v]


@nb.njit(**_JIT)
def galerkin5(idx, wp, d, we, ws, hc, wc, cmask):  # pragma: no cover - jit
    """Coarse 9-point P^T A P from the padded 5-point fine operator."""
    wpc = wc + 2
    ac = np.zeros(((hc + 2) * wpc, 9))
    pi = np.empty(4, np.int64)
    pj = np.empty(4, np.int64)
    wi = np.empty(4)
    wj = np.empty(4)
    for k in range(idx.shape[0]):
        p = idx[k]
        y = p // wp - 1
        x = p - (y + 1) * wp - 1
        _add_product(ac, y, x, 0, 0, d[p], wpc, cmask, pi, wi, pj, wj)
        if we[p] != 0.0:
            _add_product(ac, y, x, 0, 1, -we[p], wpc, cmask, pi, wi, pj, wj)
        if we[p - 1] != 0.0:
            _add_product(ac, y, x, 0, -1, -we[p - 1], wpc, cmask, pi, wi, pj, wj)
        if ws[p] != 0.0:
            _add_product(ac, y, x, 1, 0, -ws[p], wpc, cmask, pi, wi, pj, wj)
        if ws[p - wp] != 0.0:
            _add_product(ac, y, x, -1, 0, -ws[p - wp], wpc, cmask, pi, wi, pj, wj)
    return ac


@nb.njit(**_JIT)
def galerkin9(idx, wp, a, hc, wc, cmask):  # pragma: no cover - jit
    """Coarse 9-point P^T A P from a padded 9-point level."""
    wpc = wc + 2
    ac = np.zeros(((hc + 2) * wpc, 9))
    pi = np.empty(4, np.int64)
    pj = np.empty(4, np.int64)
    wi = np.empty(4)
    wj = np.empty(4)
    for k in range(idx.shape[0]):
        p = idx[k]
        y = p // wp - 1
        x = p - (y + 1) * wp - 1
        for s in range(9):
            if a[p, s] != 0.0:
                _add_product(ac, y, x, s // 3 - 1, s % 3 - 1, a[p, s], wpc, cmask,
                             pi, wi, pj, wj)
    return ac


@nb.njit(**_JIT)
def gs9(idx, wp, a, inv, x, b, reverse, from_zero):  # pragma: no cover - jit
    """Gauss-Seidel sweep on a 9-point level (from_zero: x starts at 0)."""
    n = idx.shape[0]
    nc = x.shape[1]
    last = 4 if from_zero else 9  # slots 0..3 precede p in raster order
    for kk in range(n):
        p = idx[n - 1 - kk] if reverse else idx[kk]
        for c in range(nc):
            s = b[p, c]
            for t in range(last):
                if t != 4:
                    s -= a[p, t] * x[p + (t // 3 - 1) * wp + t % 3 - 1, c]
            x[p, c] = s * inv[p]


@nb.njit(**_JIT)
def _scatter(bc, y, x, wpc, r, c):  # pragma: no cover - jit
    """bc += P^T e_(y,x) * r at every parent position (unknown or not)."""
    y0 = y >> 1
    x0 = x >> 1
    ny = 1 + (y & 1)
    nx = 1 + (x & 1)
    wgt = (1.0 if ny == 1 else 0.5) * (1.0 if nx == 1 else 0.5) * r
    for i in range(ny):
        for j in range(nx):
            bc[(y0 + i + 1) * wpc + x0 + j + 1, c] += wgt


@nb.njit(**_JIT)
def residual_restrict5(idx, wp, d, we, ws, x, b, wpc, bc):  # pragma: no cover
    """bc = P^T (b - A x) from the padded 5-point fine level."""
    nc = x.shape[1]
    bc[:, :] = 0.0
    row = 0
    for k in range(idx.shape[0]):
        p = idx[k]
        while p >= (row + 2) * wp:
            row += 1
        col = p - (row + 1) * wp - 1
        e = we[p]
        w = we[p - 1]
        s = ws[p]
        t = ws[p - wp]
        dd = d[p]
        for c in range(nc):
            r = b[p, c] - (dd * x[p, c] - e * x[p + 1, c] - w * x[p - 1, c]
                           - s * x[p + wp, c] - t * x[p - wp, c])
            _scatter(bc, row, col, wpc, r, c)


@nb.njit(**_JIT)
def residual_restrict9(idx, wp, a, x, b, wpc, bc):  # pragma: no cover - jit
    """bc = P^T (b - A x) from a padded 9-point level."""
    nc = x.shape[1]
    bc[:, :] = 0.0
    row = 0
    for k in range(idx.shape[0]):
        p = idx[k]
        while p >= (row + 2) * wp:
            row += 1
        col = p - (row + 1) * wp - 1
        for c in range(nc):
            r = b[p, c]
            for t in range(9):
                r -= a[p, t] * x[p + (t // 3 - 1) * wp + t % 3 - 1, c]
            _scatter(bc, row, col, wpc, r, c)


@nb.njit(**_JIT)
def prolong(idx, wp, x, wpc, xc):  # pragma: no cover - jit
    """x += P xc: bilinear from the coarse grid (zero off its unknowns)."""
    nc = x.shape[1]
    row = 0
    for k in range(idx.shape[0]):
        p = idx[k]
        while p >= (row + 2) * wp:
            row += 1
        col = p - (row + 1) * wp - 1
        q = ((row >> 1) + 1) * wpc + (col >> 1) + 1
        oy = wpc if (row & 1) else 0
        ox = 1 if (col & 1) else 0
        wgt = (0.5 if oy else 1.0) * (0.5 if ox else 1.0)
        for c in range(nc):
            v = xc[q, c]
            if ox:
                v += xc[q + 1, c]
            if oy:
                v += xc[q + oy, c]
                if ox:
                    v += xc[q + oy + 1, c]
            x[p, c] += wgt * v
