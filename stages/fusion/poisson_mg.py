"""Multigrid-preconditioned CG for the masked 5-point Laplacian (numba kernels).

Why this exists: a sparse direct solve of the Poisson system costs seconds per
1024^2 image, and a numpy-vectorised multigrid pays ~8 ms per full-grid pass.
These compiled kernels visit only the unknown pixels, so the cost grows
linearly with the hole size.

Representation (every level): a zero-padded grid flattened row-major with row
stride ``wp``; ``idx`` lists the flat positions of the unknowns in raster
order.  The operator is a symmetric variable-coefficient 5-point stencil
``(A x)_p = d_p x_p - sum_q w_pq x_q`` with ``we[p]`` the weight of the edge
p -> p+1 and ``ws[p]`` the weight of the edge p -> p+wp (zero when either end
is not an unknown).  Coarse levels come from 2x2 aggregation with the exact
Galerkin product P^T A P, which keeps that same 5-point form, so one set of
kernels serves every level and every coarse operator is an M-matrix.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = {"cache": True, "nogil": True}


@nb.njit(**_JIT)
def gs_sweep(idx, wp, inv_d, we, ws, x, b, reverse):  # pragma: no cover - jit
    """One lexicographic Gauss-Seidel sweep (reverse=True: backward order)."""
    n = idx.shape[0]
    nc = x.shape[1]
    for k in range(n):
        p = idx[n - 1 - k] if reverse else idx[k]
        e = we[p]
        w = we[p - 1]
        s = ws[p]
        t = ws[p - wp]
        inv = inv_d[p]
        for c in range(nc):
            x[p, c] = (b[p, c] + e * x[p + 1, c] + w * x[p - 1, c]
                       + s * x[p + wp, c] + t * x[p - wp, c]) * inv


@nb.njit(**_JIT)
def gs_sweep_zero(idx, wp, inv_d, we, ws, x, b):  # pragma: no cover - jit
    """Forward Gauss-Seidel sweep that starts from x = 0 (no clearing pass)."""
    nc = x.shape[1]
    for k in range(idx.shape[0]):
        p = idx[k]
        w = we[p - 1]
        t = ws[p - wp]
        inv = inv_d[p]
        for c in range(nc):
            # East/south neighbours come later in raster order, so they are
            # still at the zero initial guess: their terms drop out.
            x[p, c] = (b[p, c] + w * x[p - 1, c] + t * x[p - wp, c]) * inv


@nb.njit(**_JIT)
def zero_rows(idx, x):  # pragma: no cover - jit
    """Set x[idx] = 0."""
    nc = x.shape[1]
    for k in range(idx.shape[0]):
        for c in range(nc):
            x[idx[k], c] = 0.0


@nb.njit(**_JIT)
def residual_restrict(idx, wp, d, we, ws, x, b, parent, bc):  # pragma: no cover
    """bc[parent] += b - A x  (bc must be zero on the coarse unknowns)."""
    nc = x.shape[1]
    for k in range(idx.shape[0]):
        p = idx[k]
        q = parent[k]
        e = we[p]
        w = we[p - 1]
        s = ws[p]
        t = ws[p - wp]
        dd = d[p]
        for c in range(nc):
            bc[q, c] += b[p, c] - (dd * x[p, c] - e * x[p + 1, c] - w * x[p - 1, c]
                                   - s * x[p + wp, c] - t * x[p - wp, c])


@nb.njit(**_JIT)
def prolong_add(idx, parent, x, xc, alpha):  # pragma: no cover - jit
    """x[idx] += alpha * xc[parent] (piecewise-constant interpolation)."""
    nc = x.shape[1]
    for k in range(idx.shape[0]):
        p = idx[k]
        q = parent[k]
        for c in range(nc):
            x[p, c] += alpha * xc[q, c]


@nb.njit(**_JIT)
def matvec_dot(idx, wp, d, we, ws, p_vec, q_vec, dots):  # pragma: no cover
    """q = A p on the unknowns and dots[c] = <p, q>."""
    nc = p_vec.shape[1]
    for c in range(nc):
        dots[c] = 0.0
    for k in range(idx.shape[0]):
        p = idx[k]
        e = we[p]
        w = we[p - 1]
        s = ws[p]
        t = ws[p - wp]
        dd = d[p]
        for c in range(nc):
            v = (dd * p_vec[p, c] - e * p_vec[p + 1, c] - w * p_vec[p - 1, c]
                 - s * p_vec[p + wp, c] - t * p_vec[p - wp, c])
            q_vec[p, c] = v
            dots[c] += v * p_vec[p, c]


@nb.njit(**_JIT)
def cg_step(idx, x, r, p_vec, q_vec, alpha, rmax):  # pragma: no cover - jit
    """x += alpha p; r -= alpha q; rmax[c] = max |r_c|."""
    nc = x.shape[1]
    for c in range(nc):
        rmax[c] = 0.0
    for k in range(idx.shape[0]):
        p = idx[k]
        for c in range(nc):
            x[p, c] += alpha[c] * p_vec[p, c]
            v = r[p, c] - alpha[c] * q_vec[p, c]
            r[p, c] = v
            if abs(v) > rmax[c]:
                rmax[c] = abs(v)


@nb.njit(**_JIT)
def dot_rows(idx, a, b, dots):  # pragma: no cover - jit
    """dots[c] = <a_c, b_c> over the unknowns."""
    nc = a.shape[1]
    for c in range(nc):
        dots[c] = 0.0
    for k in range(idx.shape[0]):
        p = idx[k]
        for c in range(nc):
            dots[c] += a[p, c] * b[p, c]


@nb.njit(**_JIT)
def direction_update(idx, p_vec, z, beta):  # pragma: no cover - jit
    """p = z + beta p."""
    nc = z.shape[1]
    for k in range(idx.shape[0]):
        p = idx[k]
        for c in range(nc):
            p_vec[p, c] = z[p, c] + beta[c] * p_vec[p, c]


@nb.njit(**_JIT)
def residual(idx, wp, d, we, ws, x, b, r):  # pragma: no cover - jit
    """r = b - A x on the unknowns (true residual)."""
    nc = x.shape[1]
    for k in range(idx.shape[0]):
        p = idx[k]
        e = we[p]
        w = we[p - 1]
        s = ws[p]
        t = ws[p - wp]
        dd = d[p]
        for c in range(nc):
            r[p, c] = b[p, c] - (dd * x[p, c] - e * x[p + 1, c] - w * x[p - 1, c]
                                 - s * x[p + wp, c] - t * x[p - wp, c])


@nb.njit(**_JIT)
def coarsen(idx, wp, d, we, ws, wpc, npc):  # pragma: no cover - jit
    """Galerkin 2x2 aggregation: returns (parent, dc, wec, wsc).

    Fine padded (y, x) belongs to coarse padded ((y-1)//2+1, (x-1)//2+1).  An
    edge inside a block only lowers the block's diagonal (by 2w); an edge
    between blocks adds w to the coarse edge.
    """
    n = idx.shape[0]
    parent = np.empty(n, np.int64)
    dc = np.zeros(npc)
    wec = np.zeros(npc)
    wsc = np.zeros(npc)
    for k in range(n):
        p = idx[k]
        y = p // wp
        x = p - y * wp
        q = (((y - 1) >> 1) + 1) * wpc + ((x - 1) >> 1) + 1
        parent[k] = q
        dc[q] += d[p]
        e = we[p]
        if e != 0.0:
            if ((x - 1) & 1) == 0:
                dc[q] -= 2.0 * e
            else:
                wec[q] += e
        s = ws[p]
        if s != 0.0:
            if ((y - 1) & 1) == 0:
                dc[q] -= 2.0 * s
            else:
                wsc[q] += s
    return parent, dc, wec, wsc


@nb.njit(**_JIT)
def build_fine(hole, image, generated):  # pragma: no cover - jit
    """Fine-level stencil and right-hand side of the harmonic correction.

    hole: [H, W] bool; image, generated: [H, W, C].  Unknown p
    has d_p = number of neighbours inside the image (Neumann at the image
    edge), w = 1 towards unknown neighbours, and b_p = sum of diff over its
    known neighbours, diff = image - generated (Dirichlet data of h).  Column
    C of b is all ones: the right-hand side of the bound solve A v = 1.
    """
    h, w = hole.shape
    nc = image.shape[2]
    wp = w + 2
    npad = (h + 2) * wp
    d = np.zeros(npad)
    we = np.zeros(npad)
    ws = np.zeros(npad)
    b = np.zeros((npad, nc + 1))
    idx = np.empty(h * w, np.int64)
    k = 0
    for y in range(h):
        for x in range(w):
            if not hole[y, x]:
                continue
            p = (y + 1) * wp + x + 1
            idx[k] = p
            k += 1
            deg = 0.0
            if x + 1 < w:
                deg += 1.0
                if hole[y, x + 1]:
                    we[p] = 1.0
                else:
                    for c in range(nc):
                        b[p, c] += float(image[y, x + 1, c]) - float(generated[y, x + 1, c])
            if y + 1 < h:
                deg += 1.0
                if hole[y + 1, x]:
                    ws[p] = 1.0
                else:
                    for c in range(nc):
                        b[p, c] += float(image[y + 1, x, c]) - float(generated[y + 1, x, c])
            if x > 0:
                deg += 1.0
                if not hole[y, x - 1]:
                    for c in range(nc):
                        b[p, c] += float(image[y, x - 1, c]) - float(generated[y, x - 1, c])
            if y > 0:
                deg += 1.0
                if not hole[y - 1, x]:
                    for c in range(nc):
                        b[p, c] += float(image[y - 1, x, c]) - float(generated[y - 1, x, c])
            d[p] = deg
            b[p, nc] = 1.0
    idx = idx[:k].copy()
    return idx, d, we, ws, b


@nb.njit(**_JIT)
def max_abs_rows(idx, r, out):  # pragma: no cover - jit
    """out[c] = max |r[idx, c]|."""
    nc = r.shape[1]
    for c in range(nc):
        out[c] = 0.0
    for k in range(idx.shape[0]):
        for c in range(nc):
            v = abs(r[idx[k], c])
            if v > out[c]:
                out[c] = v


@nb.njit(**_JIT)
def scatter_result(idx, wp, h_vec, generated, out, as_float):  # pragma: no cover
    """Write generated + h at the unknowns of out ([H, W, C], crop coords).

    as_float=False rounds half-to-even and clips to [0, 255].
    """
    nc = generated.shape[2]
    for k in range(idx.shape[0]):
        p = idx[k]
        y = p // wp - 1
        x = p - (y + 1) * wp - 1
        for c in range(nc):
            v = generated[y, x, c] + h_vec[p, c]
            if not as_float:
                v = np.rint(v)
                v = 0.0 if v < 0.0 else (255.0 if v > 255.0 else v)
            out[y, x, c] = v


@nb.njit(**_JIT)
def cg_step_smooth(idx, wp, inv_d, we, ws, x, r, p_vec, q_vec, alpha, z,
                   rmax, xmax):  # pragma: no cover - jit
    """Fused: x += a p; r -= a q; track max|r| and max x; z = forward GS(r) from 0.

    The Gauss-Seidel update of z at p needs r only at p, which is final by
    then, so the CG update and the first smoothing sweep share one pass.
    """
    nc = x.shape[1]
    for c in range(nc):
        rmax[c] = 0.0
        xmax[c] = -np.inf
    for k in range(idx.shape[0]):
        p = idx[k]
        w = we[p - 1]
        t = ws[p - wp]
        inv = inv_d[p]
        for c in range(nc):
            xv = x[p, c] + alpha[c] * p_vec[p, c]
            x[p, c] = xv
            if xv > xmax[c]:
                xmax[c] = xv
            v = r[p, c] - alpha[c] * q_vec[p, c]
            r[p, c] = v
            if abs(v) > rmax[c]:
                rmax[c] = abs(v)
            z[p, c] = (v + w * z[p - 1, c] + t * z[p - wp, c]) * inv


@nb.njit(**_JIT)
def gs_backward_dot(idx, wp, inv_d, we, ws, z, r, dots):  # pragma: no cover - jit
    """Backward GS sweep on A z = r, fused with dots[c] = <r_c, z_c>."""
    n = idx.shape[0]
    nc = z.shape[1]
    for c in range(nc):
        dots[c] = 0.0
    for k in range(n - 1, -1, -1):
        p = idx[k]
        e = we[p]
        w = we[p - 1]
        s = ws[p]
        t = ws[p - wp]
        inv = inv_d[p]
        for c in range(nc):
            v = (r[p, c] + e * z[p + 1, c] + w * z[p - 1, c]
                 + s * z[p + wp, c] + t * z[p - wp, c]) * inv
            z[p, c] = v
            dots[c] += v * r[p, c]


@nb.njit(**_JIT)
def direction_matvec(idx, wp, d, we, ws, z, p_vec, q_vec, beta, pq):  # pragma: no cover
    """Fused: q = A z + beta q (= A p_new); p = z + beta p; pq[c] = <p, q>."""
    nc = z.shape[1]
    for c in range(nc):
        pq[c] = 0.0
    for k in range(idx.shape[0]):
        p = idx[k]
        e = we[p]
        w = we[p - 1]
        s = ws[p]
        t = ws[p - wp]
        dd = d[p]
        for c in range(nc):
            az = (dd * z[p, c] - e * z[p + 1, c] - w * z[p - 1, c]
                  - s * z[p + wp, c] - t * z[p - wp, c])
            qv = az + beta[c] * q_vec[p, c]
            pv = z[p, c] + beta[c] * p_vec[p, c]
            q_vec[p, c] = qv
            p_vec[p, c] = pv
            pq[c] += pv * qv


@nb.njit(**_JIT)
def max_rows(idx, x, out):  # pragma: no cover - jit
    """out[c] = max x[idx, c]."""
    nc = x.shape[1]
    for c in range(nc):
        out[c] = -np.inf
    for k in range(idx.shape[0]):
        for c in range(nc):
            if x[idx[k], c] > out[c]:
                out[c] = x[idx[k], c]
