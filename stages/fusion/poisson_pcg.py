"""Multigrid hierarchy, mixed-precision PCG and the proven stop rule.

Why: the harmonic correction must be accurate to a known bound (<< 0.5 grey
levels) on every pixel, not just "converged" in some norm.  The stop rule uses
the M-matrix property of the masked Laplacian: for any v with m = min(A v) > 0,
A^{-1} 1 <= v / m, hence  max|x - x*| <= ||b - A x||_inf * max(v) / m.
The hierarchy is built here (Galerkin, poisson_gmg); the iteration runs in
float32 on dense planes (poisson_dense), and every residual the proof uses
is recomputed in float64 (iterative refinement).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from stages.fusion import poisson_gmg as g
from stages.fusion import poisson_dense as dn
from stages.fusion.poisson_work import WorkArrays, work_arrays

MAX_COARSE = 256  # unknowns on the coarsest level (dense Cholesky there)
NPLANES = 4  # 3 colour channels + the bound problem A v = 1
INNER_REDUCTION = 1e-5  # float32 PCG: residual reduction per round (float32 floor ~1e-6)
# float32 PCG goal for the bound plane (max|1 - A v|): loose, since m = 1 - max|1 - A v|
# only scales the certificate by 1/m (<= 1.25 here); 0.2 instead of 0.1 drops v one
# iteration earlier on 1024^2 NVIDIA 50 % and random 20 % with no more iterations
# after it; 0.3 costs 2048^2 random 20 % a second round (docs/poisson.md, sixth round).
BOUND_RESIDUAL = 0.2
CERT_MARGIN = 0.8  # stop a round at this fraction of the residual the certificate needs
MAX_INNER = 40  # PCG iterations per round
MAX_ROUNDS = 8  # refinement rounds before the direct fallback
BOUND_GOOD = 0.5  # stop refining v once m = min(A v) >= this
# The first coarse level is smoothed by damped Jacobi instead of four-colour Gauss-Seidel:
# 2 instead of 5 nine-point row evaluations per point and cycle, and the same PCG
# iteration count at 1024^2 (measured in docs/poisson.md); the deeper, smaller levels
# keep Gauss-Seidel (Jacobi on all of them costs 1-2 iterations).
JACOBI_LEVELS = 1
JACOBI_OMEGA = 0.8


@dataclass
class Level:
    """The fine grid: padded 5-point operator (d, we, ws: flat views, see poisson_gmg for the
    layout) and its dense planes (d, we, ws, inv, mask; see poisson_dense), float32."""

    h: int
    w: int
    idx: np.ndarray
    d: np.ndarray
    we: np.ndarray
    ws: np.ndarray
    dense32: tuple
    ext: np.ndarray | None = None  # row extents of the unknown mask, if already known

    @property
    def wp(self) -> int:
        return self.w + 2

    @property
    def npad(self) -> int:
        return (self.h + 2) * (self.w + 2)


@dataclass
class Coarse:
    """A padded 9-point Galerkin level: stencil planes a[s] (float32 [9, h + 2, w + 2], see
    poisson_gmg) and the inverse diagonal (0 off the unknowns)."""

    h: int
    w: int
    idx: np.ndarray
    a: np.ndarray
    inv: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        diag = self.a[4]
        self.inv = np.divide(np.float32(1.0), diag, out=np.zeros_like(diag), where=diag > 0)

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
            ac = g.galerkin5(cidx, cmask, wc + 2, lev.wp, lev.d, lev.we, lev.ws, lev.h, lev.w,
                             interior_stencil())
        else:
            depth = len(coarse)  # lev is coarse level `depth` (1 = the first)
            ac = g.galerkin9(cidx, cmask, wc + 2, lev.wp, lev.a.reshape(9, -1), lev.h, lev.w,
                             interior_stencil(depth - 1), interior_stencil(depth))
        if np.any(ac[4, cidx] <= 0):
            raise FloatingPointError("coarse operator lost its diagonal")
        lev = Coarse(hc, wc, cidx, ac.reshape(9, hc + 2, wc + 2))
        coarse.append(lev)
        if cidx.size <= max_coarse:
            return Hierarchy(fine, coarse, g.cholesky(coarse_dense(lev)))


@functools.cache
def interior_stencil(depth: int = 0) -> np.ndarray:
    """P^T A P at a point deep inside a hole on coarse level depth + 1 (float32 [9]),
    computed by the Galerkin kernels themselves on a 12 x 12 patch that is all
    unknowns (depth 0, galerkin5) or all the previous level's interior stencil
    (galerkin9), so the shortcut equals the full computation."""
    n = 12
    hc = (n + 1) // 2
    centre = (hc // 2 + 1) * (hc + 2) + hc // 2 + 1  # fine (6, 6): 5x5 block all interior
    if depth == 0:
        hole = np.ones((n, n), bool)
        idx, (d, we, ws, *_), _ = dn.build_fine(hole, np.zeros((n, n, 3), np.uint8),
                                               np.zeros((n, n, 3), np.uint8), 0, 0, n, n)
        cidx, cmask = g.coarse_unknowns(idx, n + 2, hc, hc)
        ac = g.galerkin5(cidx, cmask, hc + 2, n + 2, d.reshape(-1), we.reshape(-1),
                         ws.reshape(-1), n, n, np.zeros(0, np.float32))
        return ac[:, centre].copy()
    a = np.zeros((9, n + 2, n + 2), np.float32)
    a[:, 1:-1, 1:-1] = interior_stencil(depth - 1)[:, None, None]
    idx = np.flatnonzero(a[4])
    cidx, cmask = g.coarse_unknowns(idx, n + 2, hc, hc)
    empty = np.zeros(0, np.float32)
    ac = g.galerkin9(cidx, cmask, hc + 2, n + 2, a.reshape(9, -1), n, n, empty, empty)
    return ac[:, centre].copy()


def coarse_dense(lev: Coarse) -> np.ndarray:
    """Dense matrix (float64) of a 9-point level over its unknowns."""
    n = lev.idx.size
    a = lev.a.reshape(9, -1)
    pos = np.full(a.shape[1], n, np.int64)
    pos[lev.idx] = np.arange(n)
    out = np.zeros((n + 1, n + 1))
    for s in range(9):
        nb_pos = pos[lev.idx + (s // 3 - 1) * lev.wp + s % 3 - 1]
        np.add.at(out, (np.arange(n), nb_pos), a[s, lev.idx].astype(np.float64))
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
    a = sp.coo_matrix((np.concatenate(vals).astype(np.float64),
                       (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    return a.tocsr()


def jacobi_weight(a: np.ndarray, ext: np.ndarray) -> float:
    """JACOBI_OMEGA, lowered if needed so that damped Jacobi provably converges.

    omega D^-1 is a convergent smoother iff omega lambda_max(D^-1 A) < 2, and by
    Gershgorin lambda_max(D^-1 A) <= 1 + max_p sum_{q != p} |a_pq| / a_pp; a
    convergent smoother keeps the V-cycle positive definite, as CG requires.
    """
    return min(JACOBI_OMEGA, 1.9 / (1.0 + dn.jacobi_radius9(a, ext)))


class DenseLevels:
    """The hierarchy as dense float32 planes with row extents (see poisson_dense)."""

    def __init__(self, hier: Hierarchy) -> None:
        f = hier.fine
        self.shape = (f.h + 2, f.w + 2)
        self.d, self.we, self.ws, self.inv, self.mask = f.dense32
        self.par = dn.parity_rows(self.shape[1])
        self.ext = dn.row_extents(self.mask) if f.ext is None else f.ext
        self.coarse: list[CoarsePlanes] = []
        for i, lev in enumerate(hier.coarse):
            mask = (lev.a[4] != 0).astype(np.float32)
            ext = dn.row_extents(mask)
            omega = jacobi_weight(lev.a, ext) if i < JACOBI_LEVELS else 0.0
            self.coarse.append(CoarsePlanes(dn.half_stencil(lev.a), lev.inv, mask, ext, lev.idx,
                                            np.float32(omega)))
        self.chol = hier.coarse_chol


@dataclass(frozen=True)
class CoarsePlanes:
    """One coarse level: the symmetric half of its 9-point stencil (dn.half_stencil),
    inverse diagonal, unknown mask, row extents, the padded flat positions of its
    unknowns, and its smoother: damped Jacobi with weight omega, or four-colour
    Gauss-Seidel where omega is 0."""

    a: np.ndarray
    inv: np.ndarray
    mask: np.ndarray
    ext: np.ndarray
    idx: np.ndarray
    omega: np.float32


class DenseWork:
    """float32 CG vectors and scratch rows for nc planes.

    arrays: take the planes from these reused work arrays instead of fresh zeros.
    Only z, p and r need zeros, and only on the halo of the row extents (dn.zero_halo:
    their stencils read there; inside, every pass writes before it reads): x is
    read only where written, the coarse planes are cleared by the cycle and the
    restriction.
    """

    def __init__(self, lv: DenseLevels, nc: int, arrays: WorkArrays | None = None) -> None:
        hp, wp = lv.shape
        self.nc = nc
        if arrays is None:
            self.x, self.r, self.z, self.p = (np.zeros((nc, hp, wp), np.float32)
                                              for _ in range(4))
            self.cx = [np.zeros((nc,) + c.mask.shape, np.float32) for c in lv.coarse]
            self.cb = [np.zeros_like(v) for v in self.cx]
        else:
            self.x, self.r, self.z, self.p = (arrays.get(name, (nc, hp, wp), np.float32)
                                              for name in ("x", "r", "z", "p"))
            dn.zero_halo(self.z, lv.ext)
            dn.zero_halo(self.p, lv.ext)
            dn.zero_halo(self.r, lv.ext)  # the first pass reads r on each row's lo - 1, hi
            self.cx = [arrays.get(f"cx{i}", (nc,) + c.mask.shape, np.float32)
                       for i, c in enumerate(lv.coarse)]
            self.cb = [arrays.get(f"cb{i}", (nc,) + c.mask.shape, np.float32)
                       for i, c in enumerate(lv.coarse)]
        self.tmp = np.zeros(wp, np.float32)
        self.rows = np.zeros((2, nc, wp), np.float32)  # the post-smoothing's black rows
        self.res = np.zeros((nc, wp), np.float32)
        self.crow = np.zeros((nc, wp), np.float32)
        self.even, self.odd = np.zeros((nc, wp), np.float32), np.zeros((nc, wp), np.float32)
        self.rmax = np.zeros(nc, np.float32)
        self.dots = np.zeros(nc)
        self.zaz = np.zeros(nc)  # <z, A z> per plane

    def planes(self, nc: int) -> "DenseWork":
        """The same buffers restricted to the first nc planes (views, no copies)."""
        view = object.__new__(DenseWork)
        view.__dict__.update({k: (v[:nc] if isinstance(v, np.ndarray) and v.ndim > 1 else v)
                              for k, v in self.__dict__.items()})
        view.rows = np.zeros((2, nc, self.rows.shape[2]), np.float32)  # contiguous rows
        view.cx = [v[:nc] for v in self.cx]
        view.cb = [v[:nc] for v in self.cb]
        view.rmax = np.zeros(nc, np.float32)
        view.dots = np.zeros(nc)
        view.zaz = np.zeros(nc)
        view.nc = nc
        return view


def dense_coarse_cycle(lv: DenseLevels, wk: DenseWork) -> None:
    """V-cycle below the fine level: wk.cb[0] -> wk.cx[0] (damped Jacobi or four-colour
    GS per level, Cholesky at the bottom)."""
    last = len(lv.coarse) - 1
    exact_last = lv.chol is not None
    for i, lev in enumerate(lv.coarse):
        x, b = wk.cx[i], wk.cb[i]
        if lev.omega and i < last:  # one pass, writes all of x (no clearing)
            dn.jacobi9_residual_restrict(x, b, lev.a, lev.inv, lev.ext, lev.omega,
                                         wk.cb[i + 1], lv.coarse[i + 1].mask, wk.res,
                                         wk.crow, wk.tmp)
            continue
        x[:] = 0.0
        if i == last and exact_last:
            dn.cho_solve_planar(lv.chol, lev.idx, b, x)
            break
        if lev.omega:
            dn.jacobi9_from_zero(x, b, lev.inv, lev.ext, lev.omega)
        else:
            dn.gs9_sweep(x, b, lev.a, lev.inv, lev.ext, False, wk.crow)
        if i < last:
            dn.residual_restrict9(x, b, lev.a, lev.ext, wk.cb[i + 1], lv.coarse[i + 1].mask,
                                  wk.res, wk.crow, wk.tmp)
    for i in range(last - 1 if exact_last else last, -1, -1):
        lev = lv.coarse[i]
        if lev.omega and i < last:
            dn.prolong_jacobi9_sweep(wk.cx[i], wk.cx[i + 1], wk.cb[i], lev.a, lev.inv, lev.mask,
                                     lev.ext, lev.omega, wk.even, wk.odd, wk.crow, wk.tmp)
            continue
        if i < last:
            dn.prolong(wk.cx[i], wk.cx[i + 1], lev.mask, lev.ext, wk.crow, wk.tmp)
        if lev.omega:
            dn.jacobi9_sweep(wk.cx[i], wk.cb[i], lev.a, lev.inv, lev.ext, lev.omega, wk.even,
                             wk.odd)
        else:
            dn.gs9_sweep(wk.cx[i], wk.cb[i], lev.a, lev.inv, lev.ext, True, wk.crow)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float32, 0 where den <= 0 (a converged plane)."""
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0).astype(np.float32)


def inner_pcg(lv: DenseLevels, wk: DenseWork, goal: np.ndarray, max_iter: int,
              bound_plane: bool = False) -> int:
    """float32 PCG on A x = wk.r from x = 0 until max|r_c| <= goal[c] for every plane.

    The planes are independent CG recurrences sharing the passes.  Two
    fused fine-level passes per iteration (see poisson_dense): p, x and r
    updates + pre-smoothing + restriction; prolongation + post-smoothing +
    <r, z> and <z, A z>.  q = A p is recomputed rather than stored.  CG in
    the Chronopoulos-Gear form: with gamma = <r, z>, beta = gamma / gamma_old,
    <p, A p> = <z, A z> - beta gamma / alpha_old (exact in exact arithmetic:
    A-conjugate directions, <z, r_old> = 0), so <p, A p> needs no pass over p.
    A plane whose denominator is not positive gets alpha = 0 and stays frozen
    (its correction so far is kept; the float64 round after it decides).
    bound_plane: the last plane is the bound problem A v = 1; it is dropped
    from the passes as soon as it reaches its (loose) goal.  Colour planes are
    never dropped early: one stopped at its goal while the others go on starts
    the next round with a residual several times larger (measured: one more
    iteration in round 2, docs/poisson.md, sixth round).
    When the last reduction of max|r| predicts that this step ends the
    iteration, the first pass only updates r and checks; if the prediction
    fails, the pre-smoothing follows in a second pass (r is not updated again).
    """
    goal = goal.astype(np.float32)
    work, nc = wk, wk.nc
    alpha = np.zeros(nc, np.float32)
    beta = np.zeros(nc, np.float32)
    rz = np.zeros(nc)
    pmode = dn.P_KEEP  # the first step has no direction yet
    last = ratio = prev_step = None  # max|r| after the last step, predicted reduction
    for it in range(max_iter + 1):
        cb = work.cb[0] if lv.coarse else np.zeros((nc, 0, 0), np.float32)
        cx = work.cx[0] if lv.coarse else cb
        cmask = lv.coarse[0].mask if lv.coarse else lv.mask
        check_only = ratio is not None and bool(np.all(last * ratio <= goal[:nc]))
        dn.step_presmooth_restrict(work.x, work.r, work.p, alpha, work.z, lv.d, lv.inv, lv.par,
                                   lv.ext, cb, cmask, work.rmax, work.res, work.crow,
                                   work.tmp, beta, pmode, not check_only)
        done = work.rmax <= goal[:nc]
        if it and done.all():  # the pass has also done x += alpha p
            return it
        rmax = work.rmax.astype(np.float64)  # work (and its rmax) may shrink below
        if bound_plane and it and done[-1]:  # freeze the bound plane, go on with the others
            bound_plane = False
            nc -= 1
            work, alpha, beta, rz = wk.planes(nc), alpha[:nc], beta[:nc], rz[:nc]
            if lv.coarse:  # the restriction just done is still valid for the kept planes
                cb = work.cb[0]
        if check_only:  # not converged after all: pre-smooth and restrict the updated r
            dn.step_presmooth_restrict(work.x, work.r, work.p, np.zeros(nc, np.float32), work.z,
                                       lv.d, lv.inv, lv.par, lv.ext, cb, cmask,
                                       work.rmax, work.res, work.crow, work.tmp, beta,
                                       dn.P_KEEP, True)  # p is already updated
        rmax = rmax[:nc]
        if last is not None:
            step = np.divide(rmax, last[:nc], out=np.ones(nc), where=last[:nc] > 0)
            ratio = step if ratio is None else np.maximum(step, prev_step[:nc])
            prev_step = step
        last = rmax
        if lv.coarse:
            dense_coarse_cycle(lv, work)
        dn.prolong_postsmooth_dot(work.z, cx[:nc], work.r, lv.d, lv.inv, lv.par,
                                  lv.ext, work.dots, work.zaz, work.crow, work.tmp, work.rows)
        gamma = work.dots.copy()
        if it:
            beta = _ratio(gamma, rz)
            a_old = alpha.astype(np.float64)  # the alpha r was updated with
            pap = np.divide(beta * gamma, a_old, out=np.full(nc, np.inf), where=a_old != 0)
            pap = work.zaz - pap  # a frozen plane (alpha 0): -inf, stays frozen
        else:
            beta, pap = np.zeros(nc, np.float32), work.zaz.copy()
        pmode = dn.P_UPDATE if it else dn.P_FIRST  # P_FIRST: x = 0, p = z (both unread)
        rz = gamma
        alpha = _ratio(rz, pap)
    return max_iter


def certified(rmax: np.ndarray, vmax: float, m: float, max_error: float) -> bool:
    """True when max|x - x*| <= max_error is proven for every channel.

    v solves A v = 1 approximately: m = 1 - max|1 - A v| <= min(A v); if m > 0
    then A^{-1} 1 <= v / m (A^{-1} >= 0), so |error_c| <= max|r_c| * max(v) / m.
    """
    return bool(m > 0.0 and rmax.max() * vmax / m <= max_error)


def refine(hier: Hierarchy, b: np.ndarray, max_error: float) -> tuple[np.ndarray, bool]:
    """Mixed-precision iterative refinement: float32 PCG corrections, float64 residuals.

    b: planes [4, Hp, Wp] (3 channels + the all-ones bound problem).  Each
    round solves A dx = r in float32 (all the multigrid work), adds dx to the
    float64 solution and recomputes the true residual in float64, on which
    the stop rule is proven.  float32 cannot push the residual much below
    1e-6 of its start, hence rounds.  The bound plane v takes part until its
    own certificate m is good (normally after the first round).
    Returns the planar float64 solution [3, Hp, Wp] and whether it is certified;
    the solution planes are this thread's work arrays (poisson_work): valid until
    the thread's next solve.
    """
    lv = DenseLevels(hier)
    arrays = work_arrays()
    x64 = arrays.get("x64", b.shape, np.float64)
    dn.zero_outside(x64, lv.ext)  # inside: the first round assigns
    rmax = np.zeros(NPLANES)
    dn.plane_absmax(b, lv.ext, rmax)
    wk = DenseWork(lv, NPLANES, arrays)
    dn.copy_rows(b, wk.r, lv.ext)  # later rounds: correct_residual64 writes wk.r
    row64 = np.zeros(lv.shape[1])
    m, vmax, nc = 0.0, 0.0, NPLANES
    for rnd in range(MAX_ROUNDS):
        work = wk if nc == NPLANES else wk.planes(nc)
        goal = INNER_REDUCTION * rmax[:nc]
        if nc == NPLANES:  # the bound only needs m = 1 - max|1 - A v| near 1
            goal[-1] = BOUND_RESIDUAL
        elif m > 0.0:  # no need to go further than the certificate asks
            goal = np.maximum(goal, CERT_MARGIN * max_error * m / vmax)
        inner_pcg(lv, work, goal, MAX_INNER, nc == NPLANES)
        dn.correct_residual64(x64[:nc], work.x, b[:nc], lv.d, lv.ext,
                              work.r, rmax[:nc], row64, rnd == 0)
        if nc == NPLANES:
            m, vmax = 1.0 - rmax[-1], max(float(x64[-1].max()), 0.0)
            if m >= BOUND_GOOD:
                nc = NPLANES - 1
        if certified(rmax[:-1], vmax, m, max_error):
            return x64[:-1], True
    return x64[:-1], False


def solve_direct(fine: Level, b: np.ndarray) -> np.ndarray:
    """Sparse direct fallback (used only if the iteration fails); planes in and out."""
    x = np.zeros((b.shape[0] - 1, fine.npad))
    rhs = b.reshape(b.shape[0], -1)[:-1, fine.idx].T.astype(np.float64)
    sol = spla.spsolve(sparse_operator(fine).tocsc(), rhs)
    x[:, fine.idx] = np.reshape(sol, (fine.idx.size, b.shape[0] - 1)).T
    return x.reshape((b.shape[0] - 1, fine.h + 2, fine.w + 2))


def solve(fine: Level, b: np.ndarray, max_error: float, smoother_only: bool = False) -> np.ndarray:
    """Solve A x = b (planes [4, Hp, Wp], the last all ones on the unknowns) with a proven
    max error bound; returns the solution planes [3, Hp, Wp] (float64; from the
    iterative path they are this thread's work arrays, valid until its next solve).

    smoother_only: precondition with red-black Gauss-Seidel alone (no coarse
    levels), for holes whose every pixel is close to a known one (scattered
    masks): A is then strongly diagonally dominant and CG converges as fast
    as with multigrid, without the cost of the coarse levels.
    """
    try:
        hier = Hierarchy(fine, [], None) if smoother_only else build_hierarchy(fine)
        if not hier.coarse and hier.coarse_chol is not None:  # tiny: direct Cholesky
            x = np.zeros(b[:-1].shape)
            dn.cho_solve_planar(hier.coarse_chol, fine.idx, b[:-1], x)
            return x
        x, ok = refine(hier, b, max_error)
        if ok:
            return x
    except FloatingPointError:
        pass
    return solve_direct(fine, b)
