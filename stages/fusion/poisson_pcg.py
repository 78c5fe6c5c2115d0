"""Geometric multigrid hierarchy, V-cycle and block PCG with a proven stop rule.

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

MAX_COARSE = 256  # unknowns on the coarsest level (dense Cholesky there)
MAX_ITER = 200


@dataclass
class Level:
    """The fine grid: padded 5-point operator (see poisson_mg for the layout)."""

    h: int
    w: int
    idx: np.ndarray
    d: np.ndarray
    we: np.ndarray
    ws: np.ndarray
    inv_d: np.ndarray = field(init=False)

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
    """Fine level, coarse levels, and the Cholesky factor of the coarsest one.

    coarse_chol is None when coarsening stopped early (no even-even unknowns
    left, e.g. only thin odd lines): the last level is then only smoothed.
    """

    fine: Level
    coarse: list[Coarse]
    coarse_chol: np.ndarray | None  # lower Cholesky factor


def build_hierarchy(fine: Level, max_coarse: int = MAX_COARSE) -> Hierarchy:
    """Bilinear interpolation + Galerkin products down to a few unknowns."""
    if fine.idx.size <= max_coarse:
        return Hierarchy(fine, [], g.cholesky(dense_operator(fine)))
    coarse: list[Coarse] = []
    lev: Level | Coarse = fine
    while True:
        hc, wc = (lev.h + 1) // 2, (lev.w + 1) // 2
        cidx, cmask = g.coarse_unknowns(lev.idx, lev.wp, hc, wc)
        if cidx.size == 0:
            return Hierarchy(fine, coarse, None)
        if isinstance(lev, Level):
            ac = g.galerkin5(cidx, cmask, wc + 2, lev.wp, lev.d, lev.we, lev.ws, lev.h, lev.w)
        else:
            ac = g.galerkin9(cidx, cmask, wc + 2, lev.wp, lev.a, lev.h, lev.w)
        if np.any(ac[cidx, 4] <= 0):
            raise FloatingPointError("coarse operator lost its diagonal")
        lev = Coarse(hc, wc, cidx, ac)
        coarse.append(lev)
        if cidx.size <= max_coarse:
            return Hierarchy(fine, coarse, g.cholesky(coarse_dense(lev)))


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


def coarse_cycle(hier: Hierarchy, ws: Workspace) -> None:
    """V-cycle below the fine level: ws.b[0] (restricted residual) -> ws.x[0].

    Forward Gauss-Seidel from zero going down, exact Cholesky solve on the
    coarsest level (or smoothing only when there is none), backward
    Gauss-Seidel going up: the whole preconditioner stays symmetric.
    """
    levels = hier.coarse
    last = len(levels) - 1
    exact_last = hier.coarse_chol is not None
    for i, lev in enumerate(levels):
        x, b = ws.x[i], ws.b[i]
        if i == last and exact_last:
            g.cho_solve_rows(hier.coarse_chol, lev.idx, b, x)
            break
        g.gs9(lev.idx, lev.wp, lev.a, lev.inv, x, b, False, True)
        if i < last:
            g.residual_restrict9(lev.idx, lev.wp, lev.a, x, b, levels[i + 1].wp, ws.b[i + 1],
                                 lev.h, lev.w)
    for i in range(last - 1 if exact_last else last, -1, -1):
        lev = levels[i]
        if i < last:
            g.prolong(lev.idx, lev.wp, ws.x[i], levels[i + 1].wp, ws.x[i + 1], lev.h, lev.w)
        g.gs9(lev.idx, lev.wp, lev.a, lev.inv, ws.x[i], ws.b[i], True, False)


class _State:
    """CG vectors (padded fine grid, NC columns) and per-column scalars."""

    def __init__(self, b: np.ndarray) -> None:
        self.b = b
        self.x, self.r = np.zeros_like(b), b.copy()
        self.z, self.p, self.q = np.zeros_like(b), np.zeros_like(b), np.zeros_like(b)
        nc = b.shape[1]
        self.rmax, self.xmax, self.rz, self.rz_new, self.pq = (np.zeros(nc) for _ in range(5))


def precondition(hier: Hierarchy, ws: Workspace, st: _State, alpha: np.ndarray | None) -> None:
    """[alpha given: x += alpha p, r -= alpha q]; z = M r; st.rz_new = <r, z>.

    M is one symmetric V(1,1) cycle (symmetric Gauss-Seidel alone when there
    is no coarse grid).  The CG update shares a pass with the first forward
    sweep, the last backward sweep with <r, z>.
    """
    f = hier.fine
    if alpha is not None:
        k.cg_step_smooth(f.idx, f.wp, f.inv_d, f.we, f.ws, st.x, st.r, st.p, st.q, alpha,
                         st.z, st.rmax, st.xmax)
    else:
        k.gs_sweep_zero(f.idx, f.wp, f.inv_d, f.we, f.ws, st.z, st.r)
    if hier.coarse:
        wpc = hier.coarse[0].wp
        g.residual_restrict5(f.idx, f.wp, f.d, f.we, f.ws, st.z, st.r, wpc, ws.b[0], f.h, f.w)
        coarse_cycle(hier, ws)
        g.prolong(f.idx, f.wp, st.z, wpc, ws.x[0], f.h, f.w)
    elif hier.coarse_chol is not None:  # tiny system: M = A^{-1}
        g.cho_solve_rows(hier.coarse_chol, f.idx, st.r, st.z)
        k.dot_rows(f.idx, st.r, st.z, st.rz_new)
        return
    k.gs_backward_dot(f.idx, f.wp, f.inv_d, f.we, f.ws, st.z, st.r, st.rz_new)


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
    if b.shape[1] != k.NC:
        raise ValueError(f"pcg solves exactly {k.NC} columns, got {b.shape[1]}")
    ws, st = Workspace(hier, k.NC), _State(b)
    precondition(hier, ws, st, None)
    st.rz[:] = st.rz_new
    k.direction_matvec(f.idx, f.wp, f.d, f.we, f.ws, st.z, st.p, st.q, np.zeros(k.NC), st.pq)
    for _ in range(max_iter):
        alpha = np.divide(st.rz, st.pq, out=np.zeros(k.NC), where=st.pq > 0)
        precondition(hier, ws, st, alpha)
        if certified(st.rmax, st.xmax, max_error):  # confirm on the true residual
            k.residual(f.idx, f.wp, f.d, f.we, f.ws, st.x, b, st.r)
            k.max_abs_rows(f.idx, st.r, st.rmax)
            k.max_rows(f.idx, st.x, st.xmax)
            if certified(st.rmax, st.xmax, max_error):
                return st.x, True
            precondition(hier, ws, st, None)
        beta = np.divide(st.rz_new, st.rz, out=np.zeros(k.NC), where=st.rz > 0)
        st.rz[:] = st.rz_new
        k.direction_matvec(f.idx, f.wp, f.d, f.we, f.ws, st.z, st.p, st.q, beta, st.pq)
    return st.x, False


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
