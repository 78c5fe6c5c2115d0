"""Aggregation-multigrid hierarchy, V-cycle and block PCG with a proven stop rule.

Why: the harmonic correction must be accurate to a known bound (<< 0.5 grey
levels) on every pixel, not just "converged" in some norm.  The stop rule uses
the M-matrix property of the masked Laplacian: for any v with m = min(A v) > 0,
A^{-1} 1 <= v / m, hence  max|x - x*| <= ||b - A x||_inf * max(v) / m.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from stages.fusion import poisson_gmg as g
from stages.fusion import poisson_mg as k

MAX_COARSE = 256  # unknowns on the coarsest level (dense inverse there)
NU = 1  # Gauss-Seidel sweeps before and after the coarse correction
MAX_ITER = 200


@dataclass
class Level:
    """One grid of the hierarchy (see poisson_mg for the layout)."""

    h: int
    w: int
    idx: np.ndarray
    d: np.ndarray
    we: np.ndarray
    ws: np.ndarray
    inv_d: np.ndarray = field(init=False)
    parent: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.inv_d = np.zeros_like(self.d)
        self.inv_d[self.idx] = 1.0 / self.d[self.idx]

    @property
    def wp(self) -> int:
        return self.w + 2

    @property
    def npad(self) -> int:
        return (self.h + 2) * (self.w + 2)


@dataclass
class Coarse:
    """A padded 9-point Galerkin level (stencil a[p, s], see poisson_gmg)."""

    h: int
    w: int
    idx: np.ndarray
    a: np.ndarray
    inv: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.inv = np.zeros(self.a.shape[0])
        self.inv[self.idx] = 1.0 / self.a[self.idx, 4]

    @property
    def wp(self) -> int:
        return self.w + 2


@dataclass
class Hierarchy:
    """Fine level, coarse levels, and the dense inverse of the coarsest one.

    coarse_inv is None when coarsening stopped early (no even-even unknowns
    left, e.g. only thin odd lines): the last level is then only smoothed.
    """

    fine: Level
    coarse: list[Coarse]
    coarse_inv: np.ndarray | None


def build_hierarchy(fine: Level, max_coarse: int = MAX_COARSE) -> Hierarchy:
    """Bilinear interpolation + Galerkin products down to a few unknowns."""
    if fine.idx.size <= max_coarse:
        return Hierarchy(fine, [], np.linalg.inv(dense_operator(fine)))
    coarse: list[Coarse] = []
    lev: Level | Coarse = fine
    while True:
        hc, wc = (lev.h + 1) // 2, (lev.w + 1) // 2
        cidx, cmask = g.coarse_unknowns(lev.idx, lev.wp, hc, wc)
        if cidx.size == 0:
            return Hierarchy(fine, coarse, None)
        if isinstance(lev, Level):
            ac = g.galerkin5(lev.idx, lev.wp, lev.d, lev.we, lev.ws, hc, wc, cmask)
        else:
            ac = g.galerkin9(lev.idx, lev.wp, lev.a, hc, wc, cmask)
        if np.any(ac[cidx, 4] <= 0):
            raise FloatingPointError("coarse operator lost its diagonal")
        lev = Coarse(hc, wc, cidx, ac)
        coarse.append(lev)
        if cidx.size <= max_coarse:
            return Hierarchy(fine, coarse, np.linalg.inv(coarse_dense(lev)))


def coarse_dense(lev: Coarse) -> np.ndarray:
    """Dense matrix of a 9-point level over its unknowns."""
    n = lev.idx.size
    pos = np.full(lev.a.shape[0], n, np.int64)
    pos[lev.idx] = np.arange(n)
    out = np.zeros((n + 1, n + 1))
    for s in range(9):
        nb_pos = pos[lev.idx + (s // 3 - 1) * lev.wp + s % 3 - 1]
        np.add.at(out, (np.arange(n), nb_pos), lev.a[lev.idx, s])
    return out[:n, :n]


def dense_operator(lev: Level) -> np.ndarray:
    """The level's operator as a dense matrix over its unknowns."""
    return sparse_operator(lev).toarray()


def sparse_operator(lev: Level) -> sp.csr_matrix:
    """The level's operator as a CSR matrix over its unknowns (raster order)."""
    n = lev.idx.size
    pos = np.full(lev.npad, -1, np.int64)
    pos[lev.idx] = np.arange(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [lev.d[lev.idx]]
    for wgt, step in ((lev.we, 1), (lev.ws, lev.wp)):
        sel = lev.idx[wgt[lev.idx] != 0]
        i, j, v = pos[sel], pos[sel + step], -wgt[sel]
        rows += [i, j]
        cols += [j, i]
        vals += [v, v]
    a = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    return a.tocsr()


class Workspace:
    """Per-level scratch vectors on the padded coarse grids."""

    def __init__(self, hier: Hierarchy, nc: int) -> None:
        self.x = [np.zeros((lev.a.shape[0], nc)) for lev in hier.coarse]
        self.b = [np.zeros((lev.a.shape[0], nc)) for lev in hier.coarse]


def coarse_correct(hier: Hierarchy, ws: Workspace, r: np.ndarray, z: np.ndarray,
                   rz: np.ndarray) -> None:
    """Finish z = M^{-1} r after the fine forward sweep; rz[c] = <r_c, z_c>.

    M is a symmetric V(NU, NU) cycle: forward Gauss-Seidel going down,
    backward going up, exact dense solve on the coarsest level, so M is SPD
    and CG applies.
    """
    f = hier.fine
    if not hier.coarse and hier.coarse_inv is not None:  # tiny: M = A^{-1}
        z[f.idx] = hier.coarse_inv @ r[f.idx]
        k.dot_rows(f.idx, r, z, rz)
        return
    for _ in range(NU - 1):
        k.gs_sweep(f.idx, f.wp, f.inv_d, f.we, f.ws, z, r, False)
    levels = hier.coarse
    if levels:
        g.residual_restrict5(f.idx, f.wp, f.d, f.we, f.ws, z, r, levels[0].wp, ws.b[0])
    last = len(levels) - 1
    exact_last = hier.coarse_inv is not None
    for i, lev in enumerate(levels):
        x, b = ws.x[i], ws.b[i]
        if i == last and exact_last:
            x[lev.idx] = hier.coarse_inv @ b[lev.idx]
            break
        g.gs9(lev.idx, lev.wp, lev.a, lev.inv, x, b, False, True)
        for _ in range(NU - 1):
            g.gs9(lev.idx, lev.wp, lev.a, lev.inv, x, b, False, False)
        if i < last:
            g.residual_restrict9(lev.idx, lev.wp, lev.a, x, b, levels[i + 1].wp, ws.b[i + 1])
    for i in range(last - 1 if exact_last else last, -1, -1):
        lev = levels[i]
        if i < last:
            g.prolong(lev.idx, lev.wp, ws.x[i], levels[i + 1].wp, ws.x[i + 1])
        for _ in range(NU):
            g.gs9(lev.idx, lev.wp, lev.a, lev.inv, ws.x[i], ws.b[i], True, False)
    if levels:
        g.prolong(f.idx, f.wp, z, levels[0].wp, ws.x[0])
    for _ in range(NU - 1):
        k.gs_sweep(f.idx, f.wp, f.inv_d, f.we, f.ws, z, r, True)
    k.gs_backward_dot(f.idx, f.wp, f.inv_d, f.we, f.ws, z, r, rz)


def certified(rmax: np.ndarray, xmax: np.ndarray, max_error: float) -> bool:
    """True when max|x - x*| <= max_error is proven for every solution column.

    The last column solves A v = 1: m = 1 - max|1 - A v| <= min(A v), and
    A^{-1} 1 <= v / m, so |error_c| <= max|r_c| * max(v) / m.
    """
    m = 1.0 - rmax[-1]
    return bool(m > 0.0 and rmax[:-1].max() * xmax[-1] / m <= max_error)


def pcg(hier: Hierarchy, b: np.ndarray, max_error: float,
        max_iter: int = MAX_ITER) -> tuple[np.ndarray, bool]:
    """Independent CG per column of b, sharing the multigrid preconditioner.

    The last column of b must be the all-ones bound problem (see certified).
    Returns (x, certified on the true residual).
    """
    f = hier.fine
    idx, nc = f.idx, b.shape[1]
    ws = Workspace(hier, nc)
    x, r = np.zeros_like(b), b.copy()
    z, p, q = np.zeros_like(b), np.zeros_like(b), np.zeros_like(b)
    rmax, xmax, rz, rz_new, pq = (np.zeros(nc) for _ in range(5))
    k.gs_sweep_zero(idx, f.wp, f.inv_d, f.we, f.ws, z, r)
    coarse_correct(hier, ws, r, z, rz)
    k.direction_matvec(idx, f.wp, f.d, f.we, f.ws, z, p, q, np.zeros(nc), pq)
    for _ in range(max_iter):
        alpha = np.divide(rz, pq, out=np.zeros(nc), where=pq > 0)
        k.cg_step_smooth(idx, f.wp, f.inv_d, f.we, f.ws, x, r, p, q, alpha, z, rmax, xmax)
        if certified(rmax, xmax, max_error):  # confirm on the true residual
            k.residual(idx, f.wp, f.d, f.we, f.ws, x, b, r)
            k.max_abs_rows(idx, r, rmax)
            k.max_rows(idx, x, xmax)
            if certified(rmax, xmax, max_error):
                return x, True
            k.gs_sweep_zero(idx, f.wp, f.inv_d, f.we, f.ws, z, r)
        coarse_correct(hier, ws, r, z, rz_new)
        beta = np.divide(rz_new, rz, out=np.zeros(nc), where=rz > 0)
        rz[:] = rz_new
        k.direction_matvec(idx, f.wp, f.d, f.we, f.ws, z, p, q, beta, pq)
    return x, False


def solve_direct(fine: Level, b: np.ndarray) -> np.ndarray:
    """Sparse direct fallback (used only if the iteration fails)."""
    x = np.zeros_like(b)
    sol = spla.spsolve(sparse_operator(fine).tocsc(), b[fine.idx])
    x[fine.idx] = np.reshape(sol, (fine.idx.size, b.shape[1]))
    return x


def solve(fine: Level, b: np.ndarray, max_error: float) -> np.ndarray:
    """Solve A x = b (last column all ones) with a proven max error bound."""
    try:
        x, ok = pcg(build_hierarchy(fine), b, max_error)
        if ok:
            return x
    except FloatingPointError:
        pass
    return solve_direct(fine, b)
