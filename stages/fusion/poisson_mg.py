"""Fine-level numba kernels for the masked 5-point Laplacian (CG + smoothing).

Why this exists: a sparse direct solve of the Poisson system costs seconds per
1024^2 image, and a numpy-vectorised multigrid pays ~8 ms per full-grid pass.
These compiled kernels visit only the unknown pixels, so the cost grows
linearly with the hole size, and several CG steps are fused into one pass.

Representation: a zero-padded grid flattened row-major with row stride
``wp``; ``idx`` lists the flat positions of the unknowns in raster order.
The operator is the symmetric 5-point stencil
``(A x)_p = d_p x_p - sum_q w_pq x_q`` with ``we[p]`` the weight of the edge
p -> p+1 and ``ws[p]`` the weight of the edge p -> p+wp (zero when either end
is not an unknown); ``d_p`` counts neighbours inside the image.  Vectors are
[npad, C] arrays that stay zero off the unknowns.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = {"cache": True, "nogil": True}

# Columns of every solver vector: 3 colour channels + the bound problem A v = 1.
# A compile-time constant lets LLVM unroll the channel loops (2x faster).
NC = 4


@nb.njit(**_JIT)
def gs_sweep(idx, wp, inv_d, we, ws, x, b, reverse):  # pragma: no cover - jit
    """One lexicographic Gauss-Seidel sweep (reverse=True: backward order)."""
    n = idx.shape[0]
    nc = NC
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
    nc = NC
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
def dot_rows(idx, a, b, dots):  # pragma: no cover - jit
    """dots[c] = <a_c, b_c> over the unknowns."""
    nc = NC
    for c in range(nc):
        dots[c] = 0.0
    for k in range(idx.shape[0]):
        p = idx[k]
        for c in range(nc):
            dots[c] += a[p, c] * b[p, c]


@nb.njit(**_JIT)
def residual(idx, wp, d, we, ws, x, b, r):  # pragma: no cover - jit
    """r = b - A x on the unknowns (true residual)."""
    nc = NC
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
    nc = NC
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
    nc = NC
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
    nc = NC
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
    nc = NC
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
    nc = NC
    for c in range(nc):
        out[c] = -np.inf
    for k in range(idx.shape[0]):
        for c in range(nc):
            if x[idx[k], c] > out[c]:
                out[c] = x[idx[k], c]


@nb.njit(**_JIT)
def split_isolated(idx, wp, we, ws):  # pragma: no cover - jit
    """(coupled, isolated) unknowns; isolated ones have no unknown neighbour.

    An isolated pixel's equation is d_p h_p = b_p, so it is solved exactly
    and kept out of the iteration (41 % of a 20 % random-pixel hole).
    """
    n = idx.shape[0]
    flag = np.zeros(n, np.bool_)
    m = 0
    for k in range(n):
        p = idx[k]
        if we[p] == 0.0 and we[p - 1] == 0.0 and ws[p] == 0.0 and ws[p - wp] == 0.0:
            flag[k] = True
            m += 1
    iso = np.empty(m, np.int64)
    rest = np.empty(n - m, np.int64)
    i = 0
    j = 0
    for k in range(n):
        if flag[k]:
            iso[i] = idx[k]
            i += 1
        else:
            rest[j] = idx[k]
            j += 1
    return rest, iso
