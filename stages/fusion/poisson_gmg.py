"""Geometric multigrid transfer and coarse-level kernels (numba).

Why: piecewise-constant (aggregation) coarse corrections needed ~22 CG
iterations on a 1024^2 NVIDIA mask; bilinear interpolation with exact
Galerkin coarse operators P^T A P needs 8-14, and stays correct for any mask
because every coarse operator is derived algebraically from the fine one.

Coarse grid l+1 keeps the points of grid l with even (y, x); a coarse point is
an unknown iff that fine point is.  Fine unknown (y, x) interpolates from the
1, 2 or 4 coarse points around it (weights 1, 1/2, 1/4); coarse points that are
not unknowns (known pixels: correction 0) are dropped; an odd last row or
column (second parent outside the image) takes its one parent with weight 1,
which matches the Neumann image edge.  Every level is a
zero-padded grid flattened with row stride wp (see poisson_mg); coarse
operators are 9-point stencils a[p, s], slot s = 3 (dy + 1) + (dx + 1).
Coarse vectors stay zero off the unknowns, so interpolation needs no
parent lists; restriction may leave junk off the unknowns, which no kernel
reads.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from stages.fusion.poisson_mg import NC

_JIT = {"cache": True, "nogil": True}


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
    """ac[q, :] = P^T u for the 5x5 fine patch u centred on fine pc = (yf, xf).

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
            ac[q, 3 * (dy + 1) + dx + 1] = acc


@nb.njit(**_JIT)
def galerkin5(cidx, cmask, wpc, wp, d, we, ws, h, w):  # pragma: no cover - jit
    """Coarse 9-point P^T A P from the padded 5-point fine operator.

    Column by column: P e_q is a bilinear hat on the 3x3 fine points around
    (2Y, 2X); A P e_q lives on a 5x5 patch; P^T of it gives row q.
    """
    ac = np.zeros((cmask.shape[0], 9))
    u = np.zeros((5, 5))
    for k in range(cidx.shape[0]):
        q = cidx[k]
        yc = q // wpc - 1
        xc = q - (yc + 1) * wpc - 1
        pc = (2 * yc + 1) * wp + 2 * xc + 1
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
def galerkin9(cidx, cmask, wpc, wp, a, h, w):  # pragma: no cover - jit
    """Coarse 9-point P^T A P from a padded 9-point level (as galerkin5)."""
    ac = np.zeros((cmask.shape[0], 9))
    u = np.zeros((5, 5))
    diag = a[:, 4]
    for k in range(cidx.shape[0]):
        q = cidx[k]
        yc = q // wpc - 1
        xc = q - (yc + 1) * wpc - 1
        pc = (2 * yc + 1) * wp + 2 * xc + 1
        u[:, :] = 0.0
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                fp = pc + dy * wp + dx
                if diag[fp] == 0.0:
                    continue
                v = _hat(dy, 2 * yc, h - 1) * _hat(dx, 2 * xc, w - 1)
                for s in range(9):
                    # A symmetric: column fp of A equals row fp
                    u[2 + dy + s // 3 - 1, 2 + dx + s % 3 - 1] += a[fp, s] * v
        _restrict_patch(u, pc, wp, diag, q, wpc, cmask, ac, 2 * yc, 2 * xc, h, w)
    return ac


@nb.njit(**_JIT)
def gs9(idx, wp, a, inv, x, b, reverse, from_zero):  # pragma: no cover - jit
    """Gauss-Seidel sweep on a 9-point level (from_zero: x starts at 0)."""
    n = idx.shape[0]
    nc = NC
    acc = np.empty(nc)
    last = 4 if from_zero else 9  # slots 0..3 precede p in raster order
    for kk in range(n):
        p = idx[n - 1 - kk] if reverse else idx[kk]
        for c in range(nc):
            acc[c] = b[p, c]
        for t in range(last):
            if t == 4:
                continue
            coef = a[p, t]
            if coef == 0.0:
                continue
            q = p + (t // 3 - 1) * wp + t % 3 - 1
            for c in range(nc):
                acc[c] -= coef * x[q, c]
        for c in range(nc):
            x[p, c] = acc[c] * inv[p]


@nb.njit(**_JIT)
def _scatter(bc, row, col, wpc, r, h, w):  # pragma: no cover - jit
    """bc += P^T e_(row,col) r at every parent position (unknown or not)."""
    nc = NC
    q = ((row >> 1) + 1) * wpc + (col >> 1) + 1
    oy = wpc if (row & 1) and row + 1 < h else 0  # odd last row: one parent
    ox = 1 if (col & 1) and col + 1 < w else 0
    wgt = (0.5 if oy else 1.0) * (0.5 if ox else 1.0)
    for c in range(nc):
        v = wgt * r[c]
        bc[q, c] += v
        if ox:
            bc[q + 1, c] += v
        if oy:
            bc[q + oy, c] += v
            if ox:
                bc[q + oy + 1, c] += v


@nb.njit(**_JIT)
def residual_restrict5(idx, wp, d, we, ws, x, b, wpc, bc, hf, wf):  # pragma: no cover
    """bc = P^T (b - A x) from the padded 5-point fine level."""
    nc = NC
    r = np.empty(nc)
    bc[:, :] = 0.0
    row = 0
    for k in range(idx.shape[0]):
        p = idx[k]
        while p >= (row + 2) * wp:
            row += 1
        e = we[p]
        w = we[p - 1]
        s = ws[p]
        t = ws[p - wp]
        dd = d[p]
        for c in range(nc):
            r[c] = b[p, c] - (dd * x[p, c] - e * x[p + 1, c] - w * x[p - 1, c]
                              - s * x[p + wp, c] - t * x[p - wp, c])
        _scatter(bc, row, p - (row + 1) * wp - 1, wpc, r, hf, wf)


@nb.njit(**_JIT)
def residual_restrict9(idx, wp, a, x, b, wpc, bc, h, w):  # pragma: no cover - jit
    """bc = P^T (b - A x) from a padded 9-point level."""
    nc = NC
    r = np.empty(nc)
    bc[:, :] = 0.0
    row = 0
    for k in range(idx.shape[0]):
        p = idx[k]
        while p >= (row + 2) * wp:
            row += 1
        for c in range(nc):
            r[c] = b[p, c]
        for t in range(9):
            coef = a[p, t]
            if coef == 0.0:
                continue
            q = p + (t // 3 - 1) * wp + t % 3 - 1
            for c in range(nc):
                r[c] -= coef * x[q, c]
        _scatter(bc, row, p - (row + 1) * wp - 1, wpc, r, h, w)


@nb.njit(**_JIT)
def prolong(idx, wp, x, wpc, xc, h, w):  # pragma: no cover - jit
    """x += P xc: bilinear from the coarse grid (zero off its unknowns)."""
    nc = NC
    row = 0
    for k in range(idx.shape[0]):
        p = idx[k]
        while p >= (row + 2) * wp:
            row += 1
        col = p - (row + 1) * wp - 1
        q = ((row >> 1) + 1) * wpc + (col >> 1) + 1
        oy = wpc if (row & 1) and row + 1 < h else 0  # odd last row: one parent
        ox = 1 if (col & 1) and col + 1 < w else 0
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


@nb.njit(**_JIT)
def cho_solve_rows(low, idx, b, x):  # pragma: no cover - jit
    """x[idx] = A^{-1} b[idx] with A = low low^T."""
    n = idx.shape[0]
    nc = b.shape[1]
    y = np.empty(n)
    for c in range(nc):
        for i in range(n):
            s = b[idx[i], c]
            for t in range(i):
                s -= low[i, t] * y[t]
            y[i] = s / low[i, i]
        for i in range(n - 1, -1, -1):
            s = y[i]
            for t in range(i + 1, n):
                s -= low[t, i] * y[t]
            y[i] = s / low[i, i]
        for i in range(n):
            x[idx[i], c] = y[i]
