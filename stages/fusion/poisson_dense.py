"""Branch-free dense-grid multigrid kernels (numba, float32, channel planes).

Why: visiting the hole pixels through an index list costs ~25 ns per pixel
per pass (gathers, a Gauss-Seidel dependency chain along x); contiguous
float32 rows vectorise (AVX2 / AVX-512) even though they also visit some
known pixels.

Layout: every vector is [C, Hp, Wp] (one plane per colour channel, plus the
bound problem's plane), zero-padded by one pixel; coefficient arrays are
[Hp, Wp] and shared by all planes.  Coefficients vanish off the unknowns, so
no kernel needs a mask test: a vector that is zero on the known pixels stays
zero there.  Each row is only visited over its extent ``ext[y] = (lo, hi)``
(first unknown, last unknown + 1); everything outside is a known pixel and
stays zero.

Fine level: 5-point stencil (d, we, ws) as in poisson_gmg.  The smoother is
red-black Gauss-Seidel (``inv`` = 1/d on the unknowns, 0 elsewhere): red
then black before the coarse correction, black then red after it, so the
V-cycle is symmetric and CG applies.  A colour's update is evaluated for the
whole row and selected by (or multiplied with) a 0/1 parity row
(``parity_rows``, zero on the other colour; the unknown mask is min(d, 1)),
so only d and inv are streamed as coefficient planes.  A sweep never
updates the row it reads (an in-place colour update would chain the points
and not vectorise): the pre-smoothing from zero takes the same-row red
values as inv r, the post-smoothing writes its black rows to a rolling pair
of rows and the red sweep reads them from there.  Each PCG iteration is two
fused passes whose rows are pipelined (a row is processed as soon as the
rows its stencil reads are final); CG in the Chronopoulos-Gear form (one
reduction point per iteration) lets the direction update ride in the first.

Coarse levels: 9-point Galerkin stencils a[s] (slot s = 3 (dy + 1) + dx + 1,
see poisson_gmg), smoothed by damped Jacobi (one sweep each way; the same
linear map both ways, so symmetric) or by four-colour Gauss-Seidel (no two
points of a colour are neighbours), forward colour order down, reverse up.  Transfers are
poisson_gmg's bilinear P and P^T, evaluated row by row.

Reductions: dots accumulate in float64; max |r| uses integer maxima of the
float bit patterns (a float max reduction does not vectorise).
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = {"cache": True, "nogil": True, "fastmath": True}
# Row helpers are inlined into their kernels at numba's IR level: a call per row
# (with its array arguments) cost the three first-level coarse kernels +0.15 ms
# per cycle at 1024^2 (tenth round).
_ROW = dict(_JIT, inline="always")


# ---------------------------------------------------------------- row helpers

@nb.njit(**_ROW)
def _absmax_bits32(row):  # pragma: no cover - jit
    """Bit pattern of max |row| (float32, contiguous).

    For non-negative floats the bit patterns order like the values, and an
    integer max reduction vectorises (numba's float max is NaN-aware and
    does not).  A NaN compares as the largest, so it never certifies.
    """
    bits = row.view(np.int32)
    m = np.int32(0)
    for i in range(bits.shape[0]):
        m = max(m, bits[i] & np.int32(0x7FFFFFFF))
    return m


@nb.njit(**_ROW)
def _absmax_bits64(row):  # pragma: no cover - jit
    """As _absmax_bits32 for float64."""
    bits = row.view(np.int64)
    m = np.int64(0)
    for i in range(bits.shape[0]):
        m = max(m, bits[i] & np.int64(0x7FFFFFFFFFFFFFFF))
    return m


@nb.njit(**_ROW)
def _black_into_rows(z, r, inv, pb, y, lo, hi, lo2, hi2, out):  # pragma: no cover - jit
    """Black Gauss-Seidel on row y of z, written to out [C, Wp] instead of z: inv (r +
    the four red neighbours) at the black points (pb: their parity pattern, see
    parity_rows), z at the red ones.  Writing another row than it reads lets the loop
    write every point (no scratch row, no second loop).  out is zeroed on
    lo - 1, hi and the part of row y - 1's extent [lo2, hi2) outside [lo, hi):
    the red sweep reads it there."""
    nc = z.shape[0]
    iv, pt = inv[y, lo:hi], pb[:hi - lo]
    for c in range(nc):
        o = out[c]
        if hi > lo:
            zm, zn, zs, rr = z[c, y, lo - 1:hi + 1], z[c, y - 1, lo:hi], z[c, y + 1, lo:hi], r[c, y, lo:hi]
            oo = o[lo:hi]
            for k in range(hi - lo):
                zc = zm[k + 1]
                v = iv[k] * (rr[k] + zm[k + 2] + zm[k] + zs[k] + zn[k])
                oo[k] = v if pt[k] != 0.0 else zc
            a, b = lo - 1, hi + 1
            if hi2 > lo2:
                a, b = min(a, lo2), max(b, hi2)
            o[a:lo] = 0.0
            o[hi:b] = 0.0
        elif hi2 > lo2:
            o[lo2:hi2] = 0.0


@nb.njit(**_ROW)
def _red_from_rows(z, r, d, inv, pr, y, lo, hi, here, south, dots,
                   zaz):  # pragma: no cover - jit
    """Red Gauss-Seidel on row y from the black sweep's rows (here: row y, south: row
    y + 1, from _black_into_rows; row y - 1 of z is final), writing row y of z whole
    (red: inv (r + the four black neighbours), black: copied), and adding
    <r_c, z_c> over the row to dots[c] and its part of <z_c, A z_c> to zaz[c] in the
    same loop.

    <z, A z> without a stencil: every edge joins a red and a black point, and a red
    point's black neighbours sum to S = d z - r (it was updated last), so
    <z, A z> = sum d z^2 - 2 sum_red z S = sum_black d z^2 + sum_red (2 r z - d z^2).
    """
    nc = z.shape[0]
    dd, iv, pt = d[y, lo:hi], inv[y, lo:hi], pr[:hi - lo]
    for c in range(nc):
        hm, ss, zn, rr = here[c, lo - 1:hi + 1], south[c, lo:hi], z[c, y - 1, lo:hi], r[c, y, lo:hi]
        zo = z[c, y, lo:hi]
        acc, acc2 = 0.0, 0.0
        for k in range(hi - lo):
            hc = hm[k + 1]
            v = iv[k] * (rr[k] + hm[k + 2] + hm[k] + ss[k] + zn[k])
            red = pt[k] != 0.0
            v = v if red else hc
            zo[k] = v
            q, e = rr[k] * v, dd[k] * v * v
            acc += np.float64(q)
            acc2 += np.float64((q + q - e) if red else e)
        dots[c] += acc
        zaz[c] += acc2


@nb.njit(**_ROW)
def _black_from_red(z, r, inv, pb, y, lo, hi):  # pragma: no cover - jit
    """Row y of z after a red-black sweep from zero, written whole in one loop: red
    z = inv r, black z = inv (r + its four red neighbours); pb: the black parity
    pattern (see parity_rows).

    The east and west red neighbours are taken as inv r of row y (r is zero on each
    row's lo - 1 and hi, inv off the unknowns), so the loop never reads the row it
    writes: no scratch row and no second loop, as an in-place colour update needs.
    Rows y - 1 and y + 1 of z must hold their red values (read at the black points'
    north and south, which are red).
    """
    nc = z.shape[0]
    iv, pt = inv[y, lo - 1:hi + 1], pb[:hi - lo]
    for c in range(nc):
        rr, zn, zs = r[c, y, lo - 1:hi + 1], z[c, y - 1, lo:hi], z[c, y + 1, lo:hi]
        zo = z[c, y, lo:hi]
        for k in range(hi - lo):
            zo[k] = iv[k + 1] * (rr[k + 1] + pt[k] * (iv[k] * rr[k] + iv[k + 2] * rr[k + 2]
                                                     + zn[k] + zs[k]))


@nb.njit(**_ROW)
def _red_residual_row(z, d, pr, y, lo, hi, res):  # pragma: no cover - jit
    """res[c] = (r - A z)[c, y] on [lo, hi) for z from _black_from_red, zero on the
    three points either side.

    Black points were updated last, so their residual is zero; a red point's is
    r - d (r / d) + the sum of its black neighbours, i.e. that sum: no r and no
    centre term to load (pr: the red parity pattern; min(d, 1) the unknown mask).
    """
    nc = z.shape[0]
    dd, pt, one = d[y, lo:hi], pr[:hi - lo], np.float32(1.0)
    for c in range(nc):
        out = res[c]
        out[max(lo - 3, 0):lo] = 0.0  # what _restrict_red_row reads around the extent
        out[hi:hi + 3] = 0.0
        o = out[lo:hi]
        zm, zn, zs = z[c, y, lo - 1:hi + 1], z[c, y - 1, lo:hi], z[c, y + 1, lo:hi]
        for k in range(hi - lo):
            o[k] = (pt[k] * min(dd[k], one)) * (zm[k + 2] + zm[k] + zs[k] + zn[k])


@nb.njit(**_ROW)
def _weight(j, n):  # pragma: no cover - jit
    """Weight of odd fine index j (0-based) towards its lower coarse parent.

    An odd last row/column has no upper parent and takes the full weight
    (constant extrapolation, the Neumann image edge; see poisson_gmg).
    """
    return np.float32(1.0) if j + 1 == n else np.float32(0.5)


@nb.njit(**_ROW)
def _coarse_span(lo, hi, wc):  # pragma: no cover - jit
    """Coarse columns [c0, c1) whose hats touch the fine padded columns [lo, hi)."""
    return max((lo - 2) // 2, 0), min((hi - 1) // 2 + 1, wc)


@nb.njit(**_ROW)
def _restrict_row(res, bc, yf, hf, wf, lo, hi, crow, tmp):  # pragma: no cover - jit
    """Add P^T of one fine residual row (res [C, Wp], zero outside the padded columns
    [lo, hi); unpadded fine row yf) into bc."""
    if hi <= lo:
        return
    nc = res.shape[0]
    wc = (wf + 1) // 2
    c0, c1 = _coarse_span(lo, hi, wc)
    f0, f1 = 2 * c0 + 1, 2 * c1
    half = np.float32(0.5)
    for c in range(nc):
        rc = res[c]
        rm, rl, rr = rc[f0:f1], rc[f0 - 1:f1 - 1], rc[f0 + 1:f1 + 1]
        for k in range(f1 - f0):  # horizontal hat at full resolution (vectorises) ...
            tmp[k] = rm[k] + half * (rl[k] + rr[k])
        row = crow[c]
        for xc in range(c1 - c0):  # ... then every other column
            row[xc] = tmp[2 * xc]
        if wf % 2 == 0 and c1 == wc:  # odd last column: one parent, full weight
            row[wc - 1 - c0] += half * rc[wf]
    _add_coarse_row(bc, crow, yf, hf, c0, c1)


@nb.njit(**_ROW)
def _restrict_red_row(res, bc, yf, hf, wf, lo, hi, crow):  # pragma: no cover - jit
    """_restrict_row for a residual row that is zero on its black points
    (_red_residual_row), with no horizontal hat pass: the coarse-aligned columns
    (even unpadded x) are red on even rows yf, so the hat there is the point's own
    value, and black on odd rows, where it is half the sum of the two red
    neighbours (the same arithmetic as the hat, which adds zeros)."""
    if hi <= lo:
        return
    nc = res.shape[0]
    wc = (wf + 1) // 2
    c0, c1 = _coarse_span(lo, hi, wc)
    f0, n = 2 * c0 + 1, c1 - c0
    half = np.float32(0.5)
    for c in range(nc):
        rc, row = res[c], crow[c]
        if yf & 1 == 0:
            for xc in range(n):
                row[xc] = rc[f0 + 2 * xc]
        else:
            for xc in range(n):
                row[xc] = half * (rc[f0 + 2 * xc - 1] + rc[f0 + 2 * xc + 1])
        if wf % 2 == 0 and c1 == wc:  # odd last column: one parent, full weight
            row[wc - 1 - c0] += half * rc[wf]
    _add_coarse_row(bc, crow, yf, hf, c0, c1)


@nb.njit(**_ROW)
def _add_coarse_row(bc, crow, yf, hf, c0, c1):  # pragma: no cover - jit
    """bc += the vertical hat of one horizontally restricted fine row (crow, coarse
    columns [c0, c1)) of unpadded fine row yf."""
    nc = bc.shape[0]
    half = np.float32(0.5)
    yc = yf >> 1
    if yf & 1 == 0:
        for c in range(nc):
            out, row = bc[c, yc + 1, c0 + 1:c1 + 1], crow[c]
            for xc in range(c1 - c0):
                out[xc] += row[xc]
    else:
        wlo = _weight(yf, hf)
        for c in range(nc):
            out, row = bc[c, yc + 1, c0 + 1:c1 + 1], crow[c]
            for xc in range(c1 - c0):
                out[xc] += wlo * row[xc]
        if yf + 1 < hf:
            for c in range(nc):
                out, row = bc[c, yc + 2, c0 + 1:c1 + 1], crow[c]
                for xc in range(c1 - c0):
                    out[xc] += half * row[xc]


@nb.njit(**_ROW)
def _open_coarse_rows(bc, yf, hf):  # pragma: no cover - jit
    """Zero the coarse rows that fine row yf (unpadded) is the first to restrict into
    (and the top padding row), so bc needs no clearing before a restriction: the
    coarse padded row Y receives fine rows 2Y - 3 .. 2Y - 1 (_add_coarse_row)."""
    if yf == 0:
        bc[:, 0, :] = 0.0
        bc[:, 1, :] = 0.0
    elif yf & 1 and yf + 1 < hf:
        bc[:, (yf >> 1) + 2, :] = 0.0


@nb.njit(**_ROW)
def _close_coarse_row(bc, cmask, yf, hf):  # pragma: no cover - jit
    """Mask the coarse row that fine row yf is the last to restrict into (zero off the
    coarse unknowns), while it is still in cache; after the last fine row, also zero
    the bottom padding row.  With _open_coarse_rows: a full clearing and a masking
    pass over bc fewer per restriction (ninth round)."""
    if yf & 1 or yf == hf - 1:
        yc = (yf >> 1) + 1
        m = cmask[yc]
        for c in range(bc.shape[0]):
            row = bc[c, yc]
            for i in range(row.shape[0]):
                row[i] *= m[i]
    if yf == hf - 1:
        bc[:, bc.shape[1] - 1, :] = 0.0


@nb.njit(**_ROW)
def _prolong_row(z, zc, mask, y, lo, hi, crow, tmp):  # pragma: no cover - jit
    """z[:, y] += mask * (P zc) for one padded fine row y, on its columns [lo, hi).

    mask: the unknown mask, or the fine d (min(d, 1) is the mask, see _red_residual_row).
    """
    if hi <= lo:
        return
    nc, hp, wp = z.shape
    hf, wf = hp - 2, wp - 2
    wc = (wf + 1) // 2
    c0, c1 = _coarse_span(lo, hi, wc)
    n = c1 - c0
    half = np.float32(0.5)
    yf = y - 1
    yc = yf >> 1
    mrow = mask[y, 2 * c0 + 1:2 * c1 + 1]
    one = np.float32(1.0)
    for c in range(nc):
        row = crow[c]  # coarse columns c0 .. c1 (one past: the right neighbour)
        lower = zc[c, yc + 1, c0 + 1:c1 + 2]
        if yf & 1 == 0 or yf + 1 >= hf:  # even row, or odd last row (one parent)
            for xc in range(n + 1):
                row[xc] = lower[xc]
        else:
            upper = zc[c, yc + 2, c0 + 1:c1 + 2]
            for xc in range(n + 1):
                row[xc] = half * (lower[xc] + upper[xc])
        for xc in range(n):  # fine padded 2(c0+xc)+1 (even x) and the odd x after it
            tmp[2 * xc] = row[xc]
            tmp[2 * xc + 1] = half * (row[xc] + row[xc + 1])
        if wf % 2 == 0 and c1 == wc:  # odd last column: one parent, full weight
            tmp[2 * n - 1] = row[n - 1]
        zr = z[c, y, 2 * c0 + 1:2 * c1 + 1]
        for k in range(2 * n):
            zr[k] += min(mrow[k], one) * tmp[k]


@nb.njit(**_ROW)
def _stencil9_row(z, r, a, y, lo, hi, out, off, centre):  # pragma: no cover - jit
    """out[c, off + k] = r - sum_s a_s z_s at padded (y, lo + k) for every plane c; the
    centre term is weighted by `centre` (0: the Gauss-Seidel numerator, 1: the residual).

    out: a C-contiguous [C, >= off + hi - lo] buffer, written from column off: a
    column slice out[:, lo:hi] would be a non-contiguous 2-D view, which numba types
    with layout "A", and the loop then does not vectorise (2.1x slower, ninth round).

    a: the symmetric half-stencil [5, Hp, Wp] (slots 4..8, see half_stencil); the
    slots 0..3 of a point are slots 8..5 of its neighbour.  One loop over all nine
    terms (1.8x faster than a loop per slot); the coefficient row slices are made
    once for all planes.
    """
    a4, a6, a7, a8 = a[0, y, lo:hi], a[2, y, lo:hi], a[3, y, lo:hi], a[4, y, lo:hi]
    a35 = a[1, y, lo - 1:hi]  # a3 = a5 of the west neighbour: a35[k]; a5: a35[k + 1]
    a0, a1, a2 = a[4, y - 1, lo - 1:hi - 1], a[3, y - 1, lo:hi], a[2, y - 1, lo + 1:hi + 1]
    for c in range(z.shape[0]):
        rr, o = r[c, y, lo:hi], out[c, off:off + hi - lo]
        zn, zm, zs = z[c, y - 1, lo - 1:hi + 1], z[c, y, lo - 1:hi + 1], z[c, y + 1, lo - 1:hi + 1]
        for k in range(hi - lo):
            o[k] = rr[k] - (a0[k] * zn[k] + a1[k] * zn[k + 1] + a2[k] * zn[k + 2]
                            + a35[k] * zm[k] + centre * a4[k] * zm[k + 1] + a35[k + 1] * zm[k + 2]
                            + a6[k] * zs[k] + a7[k] * zs[k + 1] + a8[k] * zs[k + 2])


def half_stencil(a: np.ndarray) -> np.ndarray:
    """Slots 4..8 (centre, east, south-west, south, south-east) of a symmetric 9-point
    level a [9, Hp, Wp], as a [5, Hp, Wp] view (no copy: the last five planes).

    A Galerkin operator is symmetric (a_s at p = a_(8-s) at the slot-s neighbour), so
    the other four slots are read from the neighbours: 5 coefficient planes stream
    through memory instead of 9 (the coarse kernels are bound by memory bandwidth).
    """
    return a[4:]


@nb.njit(**_ROW)
def _gs9_row(z, b, a, inv, y, px, lo, hi, tmp):  # pragma: no cover - jit
    """Gauss-Seidel on row y's points of column parity px (unpadded x), within [lo, hi).

    The 9-point update is evaluated for the whole extent (vectorised), then
    stored at every other point (a strided loop does not vectorise: 3x slower).
    tmp: [C, >= hi - lo] scratch.
    """
    first = (lo - 1 - px) & 1  # offset of the first point of parity px
    iv = inv[y, lo:hi]
    _stencil9_row(z, b, a, y, lo, hi, tmp, 0, np.float32(0.0))
    for c in range(z.shape[0]):
        zo, t = z[c, y, lo:hi], tmp[c]
        for k in range(first, hi - lo, 2):
            zo[k] = t[k] * iv[k]


P_KEEP, P_UPDATE, P_FIRST = 0, 1, 2  # step_presmooth_restrict's direction update


@nb.njit(**_ROW)
def _direction_row(x, p, z, alpha, beta, y, lo, hi, pmode):  # pragma: no cover - jit
    """Row y of the CG direction and solution: p = z + beta p, x += alpha p (P_UPDATE), or
    p = z and x = alpha z (P_FIRST: the first step of a solve from x = 0; p and x may
    hold anything, not read)."""
    for c in range(z.shape[0]):
        pp, zz, xx = p[c, y, lo:hi], z[c, y, lo:hi], x[c, y, lo:hi]
        a = alpha[c]
        if pmode == P_FIRST:  # loops: slice assignments here took twice as long
            for k in range(hi - lo):
                v = zz[k]
                pp[k] = v
                xx[k] = a * v
        else:
            b = beta[c]
            for k in range(hi - lo):
                v = zz[k] + b * pp[k]
                pp[k] = v
                xx[k] += a * v


# ---------------------------------------------------------- fine-level passes

@nb.njit(**_JIT)
def step_presmooth_restrict(x, r, p, alpha, z, d, inv, par, ext, bc, cmask, rmax,
                            res, crow, tmp, beta, pmode, smooth=True):  # pragma: no cover - jit
    """One fused pass: p = z + beta p and x += alpha p (pmode, see _direction_row; P_KEEP:
    neither p nor x change); r -= alpha A p (rmax[c] = max|r_c|); z = red-black
    GS(A z = r) from zero; bc = P^T (r - A z) (skipped when bc has no rows).  inv: 1/d
    on the unknowns; par: parity_rows (red / black selected per row, not streamed as
    planes).  r must be zero on each row's lo - 1 and hi (dn.zero_halo).

    From zero, the sweep and its residual need no full stencils: red z = inv r, black
    z = inv (r + red neighbours) (_black_from_red), and the residual is zero on the
    black points and the sum of the black neighbours on the red ones
    (_red_residual_row), so the restriction needs no horizontal hat pass
    (_restrict_red_row).
    smooth=False stops after the p, x and r updates (a convergence check that is
    expected to end the iteration); a plane with alpha = 0 keeps its x and r.
    The direction update rides here (one reduction per CG iteration, tenth
    round: no pass of its own), and x += alpha p with it, in the loop that has the
    new p in registers; z still holds the last preconditioned residual when row
    y + 1 of p is updated, one row ahead of its first reader.
    Pipelined: at step y, p and x of row y + 1, r and red z of row y, black z of
    row y-1, the residual of row y-2 (whose stencil rows are final by then).
    """
    nc, hp, wp = z.shape
    hf, wf = hp - 2, wp - 2
    restrict = smooth and bc.shape[1] > 0
    rbits = np.zeros(nc, np.int32)
    if pmode != P_KEEP and hp > 2:
        _direction_row(x, p, z, alpha, beta, 1, ext[1, 0], ext[1, 1], pmode)
    for y in range(1, hp + 1):
        if pmode != P_KEEP and y + 1 < hp - 1:
            _direction_row(x, p, z, alpha, beta, y + 1, ext[y + 1, 0], ext[y + 1, 1], pmode)
        if y < hp - 1:
            lo, hi = ext[y, 0], ext[y, 1]
            dd, iv, one = d[y, lo:hi], inv[y, lo:hi], np.float32(1.0)
            pr = par[(y + lo) & 1, :hi - lo]  # red: padded y + x even
            for c in range(nc):
                a = alpha[c]
                pm, pn, ps = p[c, y, lo - 1:hi + 1], p[c, y - 1, lo:hi], p[c, y + 1, lo:hi]
                rr, zo = r[c, y, lo:hi], z[c, y, lo:hi]
                if a != 0.0 and smooth:  # one loop: r update, red z from zero
                    for k in range(hi - lo):
                        pc = pm[k + 1]
                        v = rr[k] - a * (dd[k] * pc
                                         - min(dd[k], one) * (pm[k + 2] + pm[k] + ps[k] + pn[k]))
                        rr[k] = v
                        zo[k] = (iv[k] * pr[k]) * v
                    rbits[c] = max(rbits[c], _absmax_bits32(rr))
                    continue
                if a != 0.0:
                    for k in range(hi - lo):
                        pc = pm[k + 1]
                        rr[k] -= a * (dd[k] * pc
                                      - min(dd[k], one) * (pm[k + 2] + pm[k] + ps[k] + pn[k]))
                rbits[c] = max(rbits[c], _absmax_bits32(rr))
                if smooth:
                    for k in range(hi - lo):
                        zo[k] = (iv[k] * pr[k]) * rr[k]  # red from zero; black ones 0
        if smooth and 2 <= y < hp:
            lo, hi = ext[y - 1, 0], ext[y - 1, 1]
            _black_from_red(z, r, inv, par[(y + lo) & 1], y - 1, lo, hi)
        if restrict and 3 <= y:
            lo, hi = ext[y - 2, 0], ext[y - 2, 1]
            _red_residual_row(z, d, par[(y + lo) & 1], y - 2, lo, hi, res)
            _open_coarse_rows(bc, y - 3, hf)
            _restrict_red_row(res, bc, y - 3, hf, wf, lo, hi, crow)
            _close_coarse_row(bc, cmask, y - 3, hf)
    rmax[:] = rbits.view(np.float32)


@nb.njit(**_JIT)
def prolong_postsmooth_dot(z, zc, r, d, inv, par, ext, dots, zaz, crow, tmp,
                           rows):  # pragma: no cover - jit
    """One fused pass: z += P zc (skipped when zc has no rows); black then red GS
    sweep on A z = r; dots[c] = <r_c, z_c>, zaz[c] = <z_c, A z_c> (inv, par: see
    step_presmooth_restrict).  Both dots of the iteration in one pass: the
    Chronopoulos-Gear recurrence for <p, A p> needs no pass over p (tenth round).

    Pipelined: prolong row y, black row y-1 into rows[(y-1) & 1] (a rolling
    pair of rows, [2, C, Wp]), red row y-2 from those rows into z (and its dots,
    _red_from_rows).  No sweep updates the row it reads, so each is one loop over
    the row.
    """
    nc, hp, wp = z.shape
    coarse = zc.shape[1] > 0
    for c in range(nc):
        dots[c] = 0.0
        zaz[c] = 0.0
    for y in range(1, hp + 1):
        if coarse and y < hp - 1:
            _prolong_row(z, zc, d, y, ext[y, 0], ext[y, 1], crow, tmp)
        if 2 <= y:  # y = hp: the padding row, only zeroed (the last red row's south)
            yy = y - 1
            lo, hi = ext[yy, 0], ext[yy, 1]
            lo2, hi2 = (ext[yy - 1, 0], ext[yy - 1, 1]) if yy >= 2 else (0, 0)
            _black_into_rows(z, r, inv, par[(y + lo) & 1], yy, lo, hi, lo2, hi2, rows[yy & 1])
        if 3 <= y:
            yy = y - 2
            lo, hi = ext[yy, 0], ext[yy, 1]
            if hi > lo:
                _red_from_rows(z, r, d, inv, par[(yy + lo) & 1], yy, lo, hi, rows[yy & 1],
                               rows[(yy + 1) & 1], dots, zaz)


@nb.njit(**_JIT)
def correct_residual64(x, dx, b, d, ext, r, rmax, row64,
                       first=False):  # pragma: no cover - jit
    """x += dx (float32 correction; first: x = dx, x's extents may hold anything, outside
    them x must be zero); r = b - A x evaluated in float64 (the certified
    residual), stored as float32 into r (the next round's right-hand side);
    rmax[c] = max |r_c| of the float64 values.  row64: [Wp] float64 scratch.

    Pipelined: correct row y, residual of row y-1.  The float64 residual is
    never stored as planes: only its max is certified, and the next round
    needs it in float32 anyway.
    """
    nc, hp, wp = x.shape
    rbits = np.zeros(nc, np.int64)
    for c in range(nc):
        xc = x[c]
        for y in range(1, hp + 1):
            if y < hp - 1:
                xx, dxx = xc[y, ext[y, 0]:ext[y, 1]], dx[c, y, ext[y, 0]:ext[y, 1]]
                if first:
                    for k in range(xx.shape[0]):
                        xx[k] = dxx[k]
                else:
                    for k in range(xx.shape[0]):
                        xx[k] += dxx[k]
            if 2 <= y < hp:
                yy = y - 1
                lo, hi = ext[yy, 0], ext[yy, 1]
                dd, one = d[yy, lo:hi], np.float32(1.0)
                xm, xn, xs = xc[yy, lo - 1:hi + 1], xc[yy - 1, lo:hi], xc[yy + 1, lo:hi]
                bb, tt, rr = b[c, yy, lo:hi], row64[:hi - lo], r[c, yy, lo:hi]
                for k in range(hi - lo):  # min(d, 1): the unknown mask, as in the fine passes
                    v = bb[k] - (dd[k] * xm[k + 1]
                                 - min(dd[k], one) * (xm[k + 2] + xm[k] + xs[k] + xn[k]))
                    tt[k] = v
                    rr[k] = v
                rbits[c] = max(rbits[c], _absmax_bits64(tt))
    rmax[:] = rbits.view(np.float64)


# ------------------------------------------------------------- coarse levels

@nb.njit(**_JIT)
def gs9_sweep(z, b, a, inv, ext, reverse, tmp):  # pragma: no cover - jit
    # tmp: [C, Wp] scratch
    """Four-colour Gauss-Seidel sweep on a 9-point level, in one pass.

    Colours are (row parity, column parity); no two points of a colour are
    neighbours.  Forward order (0,0), (0,1), (1,0), (1,1); reverse the
    opposite, so forward-then-reverse is symmetric.  Rows are pipelined: a
    row of the second parity is done as soon as the rows around it are.
    """
    nc, hp, wp = z.shape
    first = 1 if reverse else 0
    c0 = 1 if reverse else 0
    for y in range(1 + first, hp, 2):  # padded rows whose unpadded parity is `first`
        if y < hp - 1:
            _gs9_row(z, b, a, inv, y, c0, ext[y, 0], ext[y, 1], tmp)
            _gs9_row(z, b, a, inv, y, 1 - c0, ext[y, 0], ext[y, 1], tmp)
        if y - 1 >= 1:
            _gs9_row(z, b, a, inv, y - 1, c0, ext[y - 1, 0], ext[y - 1, 1], tmp)
            _gs9_row(z, b, a, inv, y - 1, 1 - c0, ext[y - 1, 0], ext[y - 1, 1], tmp)


@nb.njit(**_JIT)
def jacobi_radius9(a, ext):  # pragma: no cover - jit
    """max over the unknowns of sum_{s != 4} |a_s| / a_4 (Gershgorin radius of D^-1 A - I)."""
    worst = 0.0
    for y in range(1, a.shape[1] - 1):
        for x in range(ext[y, 0], ext[y, 1]):
            diag = a[4, y, x]
            if diag > 0.0:
                off = 0.0
                for s in range(9):
                    if s != 4:
                        off += abs(a[s, y, x])
                worst = max(worst, off / diag)
    return worst


@nb.njit(**_JIT)
def jacobi9_from_zero(z, b, inv, ext, omega):  # pragma: no cover - jit
    """z = omega inv b: one damped Jacobi sweep on A z = b from z = 0 (no stencil needed)."""
    nc, hp, wp = z.shape
    for c in range(nc):
        for y in range(1, hp - 1):
            lo, hi = ext[y, 0], ext[y, 1]
            zo, bb, iv = z[c, y, lo:hi], b[c, y, lo:hi], inv[y, lo:hi]
            for k in range(hi - lo):
                zo[k] = omega * iv[k] * bb[k]


@nb.njit(**_ROW)
def _jacobi9_row_into(z, b, a, inv, y, lo, hi, omega, buf):  # pragma: no cover - jit
    """buf[c] = z + omega inv (b - A z) on row y's extent [lo, hi) (the new row of a
    damped Jacobi sweep, kept out of z until no stencil reads the old row)."""
    _stencil9_row(z, b, a, y, lo, hi, buf, 0, np.float32(1.0))
    iv = inv[y, lo:hi]
    for c in range(z.shape[0]):
        t, zo = buf[c], z[c, y, lo:hi]
        for k in range(hi - lo):
            t[k] = zo[k] + omega * iv[k] * t[k]


@nb.njit(**_ROW)
def _copy_row_back(z, buf, y, lo, hi):  # pragma: no cover - jit
    """z[c, y, lo:hi] = buf[c, :hi - lo]."""
    for c in range(z.shape[0]):
        t, zo = buf[c], z[c, y, lo:hi]
        for k in range(hi - lo):
            zo[k] = t[k]


@nb.njit(**_JIT)
def jacobi9_sweep(z, b, a, inv, ext, omega, even, odd):  # pragma: no cover - jit
    """z += omega inv (b - A z): one damped Jacobi sweep on a 9-point level.

    Pipelined: the new row y is computed from the old rows y-1..y+1 into a
    two-row buffer and row y-1 is written back once nothing reads its old value.
    even, odd: [C, Wp] scratch rows (the buffers of even and odd rows).
    """
    hp = z.shape[1]
    for y in range(1, hp):
        if y < hp - 1:
            _jacobi9_row_into(z, b, a, inv, y, ext[y, 0], ext[y, 1], omega,
                              odd if y & 1 else even)
        if y >= 2:
            _copy_row_back(z, even if y & 1 else odd, y - 1, ext[y - 1, 0], ext[y - 1, 1])


@nb.njit(**_ROW)
def _residual_restrict9_row(z, r, a, y, lo, hi, bc, cmask, res, crow,
                            tmp):  # pragma: no cover - jit
    """Row y's residual r - A z (9-point, into res at its own columns, zero beside them)
    added into bc by P^T; bc's rows are opened and closed as the fine rows reach them."""
    hf, wf = z.shape[1] - 2, z.shape[2] - 2
    res[:, :lo] = 0.0
    res[:, hi:] = 0.0
    _stencil9_row(z, r, a, y, lo, hi, res, lo, np.float32(1.0))
    _open_coarse_rows(bc, y - 1, hf)
    _restrict_row(res, bc, y - 1, hf, wf, lo, hi, crow, tmp)
    _close_coarse_row(bc, cmask, y - 1, hf)


@nb.njit(**_JIT)
def jacobi9_residual_restrict(x, b, a, inv, ext, omega, bc, cmask, res, crow,
                              tmp):  # pragma: no cover - jit
    """x = omega inv b (jacobi9_from_zero) and bc = P^T (b - A x) (residual_restrict9) in
    one pass: the first coarse level's down leg.  x is written whole (zero outside the
    extents), so the cycle need not clear it first.

    Pipelined: x row y, then the residual of row y - 1 (its three rows are final).
    One pass instead of two, and no clearing of x (ninth round).
    """
    nc, hp = x.shape[0], x.shape[1]
    for c in range(nc):
        x[c, 0, :] = 0.0
        x[c, hp - 1, :] = 0.0
    for y in range(1, hp):
        if y < hp - 1:
            lo, hi = ext[y, 0], ext[y, 1]  # an empty row has (1, 1): zeroed whole
            iv = inv[y, lo:hi]
            for c in range(nc):
                xr = x[c, y]
                xr[:lo] = 0.0
                xr[hi:] = 0.0
                xo, bb = xr[lo:hi], b[c, y, lo:hi]
                for k in range(hi - lo):
                    xo[k] = omega * iv[k] * bb[k]
        if y >= 2:
            _residual_restrict9_row(x, b, a, y - 1, ext[y - 1, 0], ext[y - 1, 1], bc, cmask,
                                    res, crow, tmp)


@nb.njit(**_JIT)
def prolong_jacobi9_sweep(z, zc, b, a, inv, mask, ext, omega, even, odd, crow,
                          tmp):  # pragma: no cover - jit
    """z += mask * (P zc) (prolong), then z += omega inv (b - A z) (jacobi9_sweep), in one
    pass: the first coarse level's up leg.

    Pipelined: prolong row y + 1, the new row y into a two-row buffer from rows
    y - 1 .. y + 1 (prolonged, not yet smoothed), write back row y - 1.
    """
    hp = z.shape[1]
    if hp > 2:
        _prolong_row(z, zc, mask, 1, ext[1, 0], ext[1, 1], crow, tmp)
    for y in range(1, hp):
        if y + 1 < hp - 1:
            _prolong_row(z, zc, mask, y + 1, ext[y + 1, 0], ext[y + 1, 1], crow, tmp)
        if y < hp - 1:
            _jacobi9_row_into(z, b, a, inv, y, ext[y, 0], ext[y, 1], omega,
                              odd if y & 1 else even)
        if y >= 2:
            _copy_row_back(z, even if y & 1 else odd, y - 1, ext[y - 1, 0], ext[y - 1, 1])


@nb.njit(**_JIT)
def residual_restrict9(z, r, a, ext, bc, cmask, res, crow, tmp):  # pragma: no cover - jit
    """bc = P^T (r - A z) from a 9-point level, zero off the coarse unknowns."""
    for y in range(1, z.shape[1] - 1):
        _residual_restrict9_row(z, r, a, y, ext[y, 0], ext[y, 1], bc, cmask, res, crow, tmp)


@nb.njit(**_JIT)
def prolong(z, zc, mask, ext, crow, tmp):  # pragma: no cover - jit
    """z += mask * (P zc): bilinear from the coarse grid (zero off its unknowns)."""
    for y in range(1, z.shape[1] - 1):
        _prolong_row(z, zc, mask, y, ext[y, 0], ext[y, 1], crow, tmp)


@nb.njit(**_JIT)
def cho_solve_planar(low, flat_idx, b, x):  # pragma: no cover - jit
    """x[c].flat[idx] = A^{-1} b[c].flat[idx] with A = low low^T (float64 inside)."""
    nc = b.shape[0]
    n = flat_idx.shape[0]
    bf = b.reshape(nc, -1)
    xf = x.reshape(nc, -1)
    y = np.empty(n)
    for c in range(nc):
        for i in range(n):
            s = np.float64(bf[c, flat_idx[i]])
            for t in range(i):
                s -= low[i, t] * y[t]
            y[i] = s / low[i, i]
        for i in range(n - 1, -1, -1):
            s = y[i]
            for t in range(i + 1, n):
                s -= low[t, i] * y[t]
            y[i] = s / low[i, i]
        for i in range(n):
            xf[c, flat_idx[i]] = y[i]


# ------------------------------------------------------------ set-up, output

@nb.njit(**_JIT)
def row_extents(mask):  # pragma: no cover - jit
    """ext[y] = (first nonzero column, last + 1) of each row; (1, 1) for an empty row."""
    hp, wp = mask.shape
    ext = np.ones((hp, 2), np.int64)
    for y in range(hp):
        lo = -1
        hi = -1
        for i in range(wp):
            if mask[y, i] != 0.0:
                if lo < 0:
                    lo = i
                hi = i + 1
        if lo >= 0:
            ext[y, 0] = lo
            ext[y, 1] = hi
    return ext


@nb.njit(**_JIT)
def _known_diff_row(hole, image, generated, y0, x0, y, w, out):  # pragma: no cover - jit
    """out[c, 1 + x] = image - generated at crop pixel (y, x) where it is known, else 0."""
    hrow, irow = hole[y0 + y, x0:x0 + w], image[y0 + y, x0:x0 + w]
    grow = generated[y0 + y, x0:x0 + w]
    for c in range(out.shape[0]):
        o = out[c, 1:w + 1]
        for x in range(w):
            known = np.float32(1.0) - np.float32(hrow[x])
            o[x] = known * (np.float32(irow[x, c]) - np.float32(grow[x, c]))


@nb.njit(**_JIT)
def build_fine(hole, image, generated, y0, x0, h, w):  # pragma: no cover - jit
    """build_fine_into on fresh arrays, plus the padded flat positions of the unknowns
    (raster order): idx, (d, we, ws, inv, mask), b."""
    nc = image.shape[2]
    planes = np.empty((5, h + 2, w + 2), np.float32)
    b = np.empty((nc + 1, h + 2, w + 2), np.float32)
    build_fine_into(hole, image, generated, y0, x0, h, w, planes, b)
    flat = planes[4].reshape(-1)
    n = 0
    for i in range(flat.shape[0]):
        n += flat[i] != 0.0
    idx = np.empty(n, np.int64)
    k = 0
    for i in range(flat.shape[0]):
        if flat[i] != 0.0:
            idx[k] = i
            k += 1
    return idx, (planes[0], planes[1], planes[2], planes[3], planes[4]), b


@nb.njit(**_JIT)
def _zero_frame(v):  # pragma: no cover - jit
    """Zero the one-pixel frame of every [Hp, Wp] plane of v."""
    nc, hp, wp = v.shape
    for c in range(nc):
        v[c, 0, :] = 0.0
        v[c, hp - 1, :] = 0.0
        for y in range(1, hp - 1):
            v[c, y, 0] = 0.0
            v[c, y, wp - 1] = 0.0


@nb.njit(**_JIT)
def build_fine_into(hole, image, generated, y0, x0, h, w, planes, b):  # pragma: no cover - jit
    """Fine-level operator and right-hand side of the harmonic correction, row by row.

    Works on the crop [y0, y0 + h) x [x0, x0 + w) of the full arrays (no
    copies).  Unknown p has d_p = number of neighbours inside the crop
    (the crop keeps every hole pixel's neighbours, so this is the image's
    count: Neumann at the image edge), w = 1 towards unknown neighbours, and
    b_p = sum over its known neighbours of image - generated (the Dirichlet
    data of h); plane C of b is 1 on the unknowns (the bound problem A v = 1).
    Every value is a small integer, exact in float32.  The rows are
    branch-free (the known differences of three rows sit in a rolling buffer),
    so they vectorise and scattered masks cost no branch mispredictions.
    Writes planes = float32 [5, Hp, Wp] (the stencil d, we, ws, the inverse
    diagonal and the unknown mask) and b = float32 [C + 1, Hp, Wp];
    every point of both is written (their old contents do not matter).
    """
    nc = image.shape[2]
    wp = w + 2
    _zero_frame(planes)
    _zero_frame(b)
    d, we, ws, inv, mask = planes[0], planes[1], planes[2], planes[3], planes[4]
    for y in range(h):
        hrow, mrow = hole[y0 + y, x0:x0 + w], mask[y + 1, 1:w + 1]
        for x in range(w):
            mrow[x] = np.float32(hrow[x])
    diff = np.zeros((3, nc, wp), np.float32)  # rows y - 1, y, y + 1 (zero outside the crop)
    _known_diff_row(hole, image, generated, y0, x0, 0, w, diff[1])
    one = np.float32(1.0)
    for y in range(h):
        if y + 1 < h:
            _known_diff_row(hole, image, generated, y0, x0, y + 1, w, diff[(y + 2) % 3])
        else:
            diff[(y + 2) % 3] = 0.0
        dn, dm, ds = diff[y % 3], diff[(y + 1) % 3], diff[(y + 2) % 3]
        py = y + 1
        mm, ms, me = mask[py, 1:w + 1], mask[py + 1, 1:w + 1], mask[py, 2:w + 2]
        rows_in = np.float32(2 - (y == 0) - (y == h - 1))
        dd, ee, ss = d[py, 1:w + 1], we[py, 1:w + 1], ws[py, 1:w + 1]
        iv = inv[py, 1:w + 1]
        for x in range(w):
            deg = mm[x] * (rows_in + np.float32(2 - (x == 0) - (x == w - 1)))
            dd[x] = deg
            ee[x] = mm[x] * me[x]
            ss[x] = mm[x] * ms[x]
            iv[x] = mm[x] / (deg + one - mm[x])  # 1 / deg on the unknowns, 0 elsewhere
        for c in range(nc):
            bo, dcm, dcn, dcs = b[c, py, 1:w + 1], dm[c], dn[c, 1:w + 1], ds[c, 1:w + 1]
            for x in range(w):
                bo[x] = mm[x] * (dcm[x] + dcm[x + 2] + dcn[x] + dcs[x])
        bo = b[nc, py, 1:w + 1]
        for x in range(w):
            bo[x] = mm[x]
    return d, we, ws, inv, mask


@nb.njit(**_JIT)
def scatter_result(hole, y0, x0, h_planes, generated, out, as_float,
                   ext):  # pragma: no cover - jit
    """out[hole] = generated + h inside the crop at (y0, x0) (h planes are padded by one pixel;
    ext: their row extents, outside which no hole pixel lies).

    as_float=False rounds half-to-even and clips to [0, 255].  Branch-free per pixel
    (a select, not a jump), so scattered masks cost no mispredictions.
    """
    nc, hp, wp = h_planes.shape
    for y in range(hp - 2):
        lo, hi = ext[y + 1, 0] - 1, ext[y + 1, 1] - 1  # crop columns
        if hi <= lo:
            continue
        hrow, grow = hole[y0 + y, x0 + lo:x0 + hi], generated[y0 + y, x0 + lo:x0 + hi]
        orow = out[y0 + y, x0 + lo:x0 + hi]
        for c in range(nc):
            hc = h_planes[c, y + 1, lo + 1:hi + 1]
            for x in range(hi - lo):
                v = grow[x, c] + hc[x]
                if not as_float:
                    v = min(max(np.rint(v), 0.0), 255.0)
                orow[x, c] = v if hrow[x] else orow[x, c]


@nb.njit(**_JIT)
def copy_rows(src, dst, ext):  # pragma: no cover - jit
    """dst[c] = src[c] (any float types) on every row's extent; dst stays as it is elsewhere."""
    nc, hp, wp = dst.shape
    for c in range(nc):
        for y in range(hp):
            s, t = src[c, y, ext[y, 0]:ext[y, 1]], dst[c, y, ext[y, 0]:ext[y, 1]]
            for k in range(s.shape[0]):
                t[k] = s[k]


@nb.njit(**_JIT)
def plane_absmax(v, ext, out):  # pragma: no cover - jit
    """out[c] = max |v[c]| (float32 planes) over the row extents."""
    nc, hp, wp = v.shape
    bits = np.zeros(nc, np.int32)
    for c in range(nc):
        for y in range(hp):
            bits[c] = max(bits[c], _absmax_bits32(v[c, y, ext[y, 0]:ext[y, 1]]))
    out[:] = bits.view(np.float32)


@nb.njit(**_JIT)
def hole_depth_into(hole, y0, x0, h, w, cap, dist):  # pragma: no cover - jit
    """min(cap, max over hole pixels of the city-block distance to the nearest known pixel).

    Pixels beyond the image edge do not count as known (Neumann edge).  Two
    chamfer passes over the crop; exact for the city-block metric.  dist: int32
    [h, w] scratch (any contents).
    """
    big = np.int32(cap)
    for y in range(h):  # forward: from above (vectorises), then from the left (a scan)
        hrow, row = hole[y0 + y, x0:x0 + w], dist[y]
        if y > 0:
            up = dist[y - 1]
            for x in range(w):
                row[x] = min(big, up[x] + 1) * np.int32(hrow[x])
        else:
            for x in range(w):
                row[x] = big * np.int32(hrow[x])
        for x in range(1, w):
            row[x] = min(row[x], row[x - 1] + 1)
    deepest = np.int32(0)
    for y in range(h - 1, -1, -1):  # backward: from below, then from the right
        row = dist[y]
        if y + 1 < h:
            down = dist[y + 1]
            for x in range(w):
                row[x] = min(row[x], down[x] + 1)
        for x in range(w - 2, -1, -1):
            row[x] = min(row[x], row[x + 1] + 1)
        for x in range(w):
            deepest = max(deepest, row[x])
    return deepest


@nb.njit(**_JIT)
def zero_outside(v, ext):  # pragma: no cover - jit
    """v[c] = 0 outside the row extents (the padded frame included); inside them v is
    left as it is (a reused buffer whose kernels write every extent point before reading)."""
    nc, hp, wp = v.shape
    for c in range(nc):
        for y in range(hp):
            lo, hi = ext[y, 0], ext[y, 1]
            if hi <= lo:
                v[c, y, :] = 0.0
            else:
                v[c, y, :lo] = 0.0
                v[c, y, hi:] = 0.0


@nb.njit(**_JIT)
def count_unknowns(mask, ext):  # pragma: no cover - jit
    """Number of unknowns (nonzero mask points) over the row extents."""
    n = 0
    for y in range(mask.shape[0]):
        row = mask[y, ext[y, 0]:ext[y, 1]]
        for k in range(row.shape[0]):
            n += np.int64(row[k] != 0.0)
    return n


@nb.njit(**_JIT)
def split_unknowns(mask, we, ws, ext, rest, iso):  # pragma: no cover - jit
    """(coupled, isolated) padded flat positions of the unknowns in raster order, as views
    of rest and iso (int64 buffers of at least count_unknowns + 1 entries).

    One branch-free pass over the planes (scattered masks would mispredict every
    other pixel): isolated unknowns have no unknown neighbour, so d_p h_p = b_p
    solves them exactly and they are kept out of the iteration (41 % of a 20 %
    random-pixel hole).
    """
    hp, wp = mask.shape
    i = 0
    j = 0
    for y in range(1, hp - 1):
        lo, hi = ext[y, 0], ext[y, 1]
        mm, ee, ss, nn = mask[y, lo:hi], we[y, lo - 1:hi], ws[y, lo:hi], ws[y - 1, lo:hi]
        base = y * wp + lo
        for k in range(hi - lo):
            unknown = np.int64(mm[k] != 0.0)
            alone = np.int64(ee[k + 1] + ee[k] + ss[k] + nn[k] == 0.0)
            iso[i] = base + k
            rest[j] = base + k
            i += unknown * alone
            j += unknown * (1 - alone)
    return rest[:j], iso[:i]


def parity_rows(wp: int) -> np.ndarray:
    """[2, Wp] float32: row j is 1 at the even (j = 0) or odd (j = 1) offsets.  Row
    (y + lo) & 1 selects, from column lo of padded row y on, the red points (padded
    y + x even), the other row the black ones."""
    out = np.zeros((2, wp), np.float32)
    out[0, 0::2] = 1.0
    out[1, 1::2] = 1.0
    return out


@nb.njit(**_JIT)
def zero_halo(v, ext):  # pragma: no cover - jit
    """v[c] = 0 on the points outside the row extents that a 5-point stencil on the
    extents reads (each row's lo - 1 and hi, and the parts of the rows above and below
    that stick out of this row's extent); a reused buffer that the kernels write on
    the extents before they read needs no more (everything else is never read)."""
    nc, hp, wp = v.shape
    for y in range(hp):
        lo, hi = ext[y, 0], ext[y, 1]
        full = hi > lo
        a = lo - 1 if full else wp
        b = hi + 1 if full else 0
        for yy in (y - 1, y + 1):
            if 0 <= yy < hp and ext[yy, 1] > ext[yy, 0]:
                a = min(a, ext[yy, 0])
                b = max(b, ext[yy, 1])
        if not full:
            lo = hi = b
        a = max(a, 0)
        b = min(b, wp)
        for c in range(nc):
            if a < lo:
                v[c, y, a:lo] = 0.0
            if hi < b:
                v[c, y, hi:b] = 0.0
