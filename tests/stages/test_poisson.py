"""Poisson fusion against an independent sparse direct solve of Delta f = Delta g."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from stages.fusion.poisson import MAX_ERROR, poisson_fuse, poisson_fuse_float
from stages.fusion.poisson_reference import exact_poisson

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "bench-dev"


def exact_solution(image: np.ndarray, generated: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Reference: Delta f = Delta g assembled directly (no correction trick), spsolve."""
    return exact_poisson(image, generated, hole)


def check_exact(image: np.ndarray, generated: np.ndarray, hole: np.ndarray) -> None:
    """Float result within MAX_ERROR, uint8 result within rounding, knowns intact."""
    ref = exact_solution(image, generated, hole)
    fl = poisson_fuse_float(image, generated, hole)
    out = poisson_fuse(image, generated, hole)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.abs(fl - ref).max(initial=0.0) <= MAX_ERROR
    assert np.abs(out - np.clip(ref, 0, 255)).max(initial=0.0) <= 0.5 + MAX_ERROR
    np.testing.assert_array_equal(out[~hole], image[~hole])


def random_case(rng: np.random.Generator, h: int, w: int, ratio: float):
    """Random noise image/generated pair and a random-pixel hole."""
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image, generated, rng.random((h, w)) < ratio


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.7, 0.9])
def test_scattered_random_pixel_masks(ratio: float) -> None:
    rng = np.random.default_rng(int(ratio * 100))
    check_exact(*random_case(rng, 64, 80, ratio))


def test_border_touching_blob() -> None:
    rng = np.random.default_rng(1)
    image, generated, _ = random_case(rng, 48, 40, 0.0)
    hole = np.zeros((48, 40), bool)
    hole[:20, :15] = True  # corner
    hole[30:, 25:] = True  # opposite corner
    hole[10:12, :] = True  # strip from edge to edge
    check_exact(image, generated, hole)


def test_one_pixel_holes_everywhere() -> None:
    rng = np.random.default_rng(2)
    image, generated, _ = random_case(rng, 9, 11, 0.0)
    for y, x in [(0, 0), (0, 5), (4, 10), (8, 10), (4, 5)]:
        hole = np.zeros((9, 11), bool)
        hole[y, x] = True
        check_exact(image, generated, hole)


def test_full_image_minus_frame() -> None:
    rng = np.random.default_rng(3)
    image, generated, _ = random_case(rng, 96, 70, 0.0)
    hole = np.zeros((96, 70), bool)
    hole[1:-1, 1:-1] = True
    check_exact(image, generated, hole)


def test_frame_only_hole() -> None:
    rng = np.random.default_rng(4)
    image, generated, _ = random_case(rng, 30, 30, 0.0)
    hole = np.ones((30, 30), bool)
    hole[1:-1, 1:-1] = False
    check_exact(image, generated, hole)


def test_thin_odd_lines_without_coarse_grid() -> None:
    """Hole only on odd rows: no even-even point, so no coarse level exists."""
    rng = np.random.default_rng(9)
    image, generated, _ = random_case(rng, 64, 70, 0.0)
    hole = np.zeros((64, 70), bool)
    hole[1::2, :] = True
    check_exact(image, generated, hole)


def test_direct_fallback_when_iteration_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.fusion import poisson_pcg

    monkeypatch.setattr(poisson_pcg, "refine", lambda hier, b, err: (b * 0.0, False))
    rng = np.random.default_rng(10)
    check_exact(*random_case(rng, 40, 40, 0.6))


def test_whole_image_hole_returns_generated() -> None:
    rng = np.random.default_rng(5)
    image, generated, _ = random_case(rng, 7, 5, 0.0)
    out = poisson_fuse(image, generated, np.ones((7, 5), bool))
    np.testing.assert_array_equal(out, generated)


def test_empty_hole_is_identity() -> None:
    rng = np.random.default_rng(6)
    image, generated, hole = random_case(rng, 12, 13, 0.0)
    out = poisson_fuse(image, generated, hole)
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_constant_offset_is_reproduced_exactly() -> None:
    """g = known - 10 everywhere: the harmonic correction is exactly +10."""
    rng = np.random.default_rng(7)
    generated = rng.integers(0, 200, (40, 40, 3), dtype=np.uint8)
    image = generated + np.uint8(10)
    hole = rng.random((40, 40)) < 0.6
    np.testing.assert_array_equal(poisson_fuse(image, generated, hole), image)


def test_inputs_unmodified_and_deterministic() -> None:
    rng = np.random.default_rng(8)
    image, generated, hole = random_case(rng, 50, 60, 0.4)
    copies = image.copy(), generated.copy(), hole.copy()
    first = poisson_fuse(image, generated, hole)
    second = poisson_fuse(image, generated, hole)
    np.testing.assert_array_equal(first, second)
    for before, after in zip(copies, (image, generated, hole)):
        np.testing.assert_array_equal(before, after)


def test_rejects_bad_inputs() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError):
        poisson_fuse(image, image, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        poisson_fuse(image, image[:3], np.zeros((4, 4), bool))


def _nvidia_masks(count: int) -> list[Path]:
    """One mask per hole-ratio bucket (first of each), from the shared set."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    rows = [line.split(",") for line in (SHARED / "masks.csv").read_text().splitlines()[1:]]
    seen: dict[str, Path] = {}
    for name, _, bucket in rows:
        seen.setdefault(bucket, SHARED / "masks" / name)
    return list(seen.values())[:count]


@pytest.mark.parametrize("bucket_index", range(6))
def test_real_nvidia_masks_on_faces(bucket_index: int) -> None:
    masks = _nvidia_masks(6)
    faces = sorted((SHARED / "faces" / "256").glob("*.png"))
    if bucket_index >= len(masks) or not faces:
        pytest.skip("not enough shared data")
    mask = cv2.imread(str(masks[bucket_index]), cv2.IMREAD_GRAYSCALE)
    hole = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_NEAREST) > 127
    face = cv2.resize(cv2.imread(str(faces[bucket_index % len(faces)])), (128, 128))
    generated = np.ascontiguousarray(np.roll(face[:, ::-1], 7, axis=0))  # plausible, mismatched
    check_exact(face, generated, hole)


@settings(max_examples=40, deadline=None)
@given(
    hole=hnp.arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_direct_solve(hole: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, hole.shape + (3,), dtype=np.uint8)
    generated = rng.integers(0, 256, hole.shape + (3,), dtype=np.uint8)
    check_exact(image, generated, hole)


def test_hole_depth_is_the_city_block_distance_to_known_pixels() -> None:
    from stages.fusion.poisson_dense import hole_depth_into

    def hole_depth(hole, y0, x0, h, w, cap):
        return hole_depth_into(hole, y0, x0, h, w, cap, np.empty((h, w), np.int32))

    hole = np.zeros((9, 12), bool)
    hole[1:8, 2:9] = True  # 7x7 square: centre is 4 steps from a known pixel
    assert hole_depth(hole, 0, 0, 9, 12, 10) == 4
    assert hole_depth(hole, 0, 0, 9, 12, 3) == 3  # capped
    edge = np.zeros((5, 5), bool)
    edge[:, :2] = True  # touches the image edge: the edge is not a known pixel
    assert hole_depth(edge, 0, 0, 5, 5, 10) == 2


def _on_unknowns(rng: np.random.Generator, mask: np.ndarray, planes: int) -> np.ndarray:
    """`planes` float32 standard-normal planes on the unknowns (mask != 0), zero elsewhere."""
    return np.where(mask != 0, rng.standard_normal((planes,) + mask.shape), 0).astype(np.float32)


def _hierarchy(hole: np.ndarray):
    """The multigrid hierarchy for a hole covering the whole crop."""
    from stages.fusion import poisson_dense as dense
    from stages.fusion import poisson_pcg as pcg

    h, w = hole.shape
    image = np.zeros((h, w, 3), np.uint8)
    _, dense32, _ = dense.build_fine(hole, image, image, 0, 0, h, w)
    d, we, ws = (v.reshape(-1) for v in dense32[:3])
    mask = dense32[4]
    ext = dense.row_extents(mask)
    n = dense.count_unknowns(mask, ext) + 1
    coupled, _ = dense.split_unknowns(mask, dense32[1], dense32[2], ext, np.empty(n, np.int64),
                                      np.empty(n, np.int64))
    return pcg.build_hierarchy(pcg.Level(h, w, coupled, d, we, ws, dense32), max_coarse=16)


def _odd_edge_hole(rng: np.random.Generator) -> np.ndarray:
    """An odd-sized (37 x 30) hole touching the image edge with scattered known pixels
    and a solid block: one-parent last rows and columns, irregular extents."""
    hole = np.ones((37, 30), bool)
    hole[rng.random(hole.shape) < 0.15] = False
    hole[10:20, 5:25] = True
    return hole


def _hierarchy_for(hole: np.ndarray):
    """Dense levels of the multigrid hierarchy for a hole covering the whole crop."""
    from stages.fusion import poisson_pcg as pcg

    return pcg.DenseLevels(_hierarchy(hole))


def test_transfers_are_transposes_and_the_preconditioner_is_symmetric() -> None:
    """P^T (restriction) must be the transpose of P (prolongation) and the V-cycle M
    symmetric, or CG's convergence theory (not its certificate) breaks; odd sizes and
    a hole touching the image edge exercise the one-parent rows and columns."""
    from stages.fusion import poisson_dense as dense
    from stages.fusion import poisson_pcg as pcg

    rng = np.random.default_rng(11)
    hole = _odd_edge_hole(rng)
    lv = _hierarchy_for(hole)
    assert lv.coarse, "the test needs at least one coarse level"
    mask = lv.mask.astype(bool)

    def fine_vector() -> np.ndarray:
        return _on_unknowns(rng, mask, 1)

    wk = pcg.DenseWork(lv, 1)
    cmask = lv.coarse[0].mask.astype(bool)
    coarse = _on_unknowns(rng, cmask, 1)
    up = np.zeros_like(wk.z)
    dense.prolong(up, coarse, lv.mask, lv.ext, wk.crow, wk.tmp)
    y = fine_vector()
    down = np.zeros_like(coarse)
    hf, wf = mask.shape[0] - 2, mask.shape[1] - 2
    for yy in range(1, hf + 1):  # P^T y, row by row, with the first pass's restriction
        lo, hi = lv.ext[yy]
        dense._restrict_row(y[:, yy], down, yy - 1, hf, wf, lo, hi, wk.crow, wk.tmp)
    down *= lv.coarse[0].mask  # zero off the coarse unknowns, as the first pass's rows are closed
    assert np.isclose(np.vdot(up, y), np.vdot(coarse, down), rtol=1e-4)

    def apply_m(r: np.ndarray) -> np.ndarray:
        wk.r[:] = r
        wk.p[:] = 0.0
        dense.step_presmooth_restrict(wk.x, wk.r, wk.p, np.zeros(1, np.float32), wk.z, lv.d,
                                      lv.inv, lv.par, lv.ext, wk.cb[0],
                                      lv.coarse[0].mask, wk.rmax, wk.res, wk.crow, wk.tmp,
                                      np.zeros(1, np.float32), dense.P_KEEP)
        pcg.dense_coarse_cycle(lv, wk)
        dense.prolong_postsmooth_dot(wk.z, wk.cx[0], wk.r, lv.d, lv.inv,
                                     lv.par, lv.ext, wk.dots, wk.zaz, wk.crow, wk.tmp, wk.rows)
        return wk.z.copy()

    u, v = fine_vector(), fine_vector()
    mu, mv = apply_m(u), apply_m(v)
    assert np.isclose(np.vdot(mu, v), np.vdot(u, mv), rtol=1e-4)
    assert np.vdot(mu, u) > 0


def _neighbour_sum(v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sum of each unknown's four neighbours in [C, H, W] planes (zero outside the grid), on the mask."""
    out = np.zeros_like(v)
    out[:, 1:] += v[:, :-1]
    out[:, :-1] += v[:, 1:]
    out[:, :, 1:] += v[:, :, :-1]
    out[:, :, :-1] += v[:, :, 1:]
    return out * mask


@pytest.mark.parametrize("pmode", ["keep", "update", "first"])
def test_first_pass_is_red_black_gauss_seidel_and_restricts_its_residual(pmode: str) -> None:
    """The first fine pass takes shortcuts that hold only for a sweep from zero (red
    z = r / d, black residual zero, no hat pass in the restriction): its z must be
    plain red-black Gauss-Seidel from zero, and its coarse right-hand side P^T of
    the true residual r - A z, written whole (NaN before; zero off the coarse
    unknowns); it must first update the direction from the z it finds and the solution
    with it (p = z + beta p, x += alpha p; "first": p = z and x = alpha z, NaN in both
    before; "keep": neither changes), then r -= alpha A p, and never read z outside the
    extents' halo (NaN there).  Odd sizes and a hole
    touching the image edge, as in the transpose test."""
    from stages.fusion import poisson_dense as dense
    from stages.fusion import poisson_pcg as pcg

    rng = np.random.default_rng(12)
    hole = _odd_edge_hole(rng)
    lv = _hierarchy_for(hole)
    mask = lv.mask.astype(bool)
    d = lv.d.astype(np.float64)
    nc = 2

    def fine(n: int) -> np.ndarray:
        return _on_unknowns(rng, mask, n)

    def neighbours(v: np.ndarray) -> np.ndarray:
        return _neighbour_sum(v, mask)

    def apply_a(v: np.ndarray) -> np.ndarray:
        return d * v - neighbours(v)

    r0, p0, x0, z0 = fine(nc), fine(nc), fine(nc), fine(nc)
    alpha = np.array([0.7, -0.3], np.float32)
    beta = np.array([0.4, 1.3], np.float32)
    wk = pcg.DenseWork(lv, nc)
    extent = np.zeros(mask.shape, bool)
    for y, (lo, hi) in enumerate(lv.ext):
        extent[y, lo:hi] = True
    x, r, p = x0.copy(), r0.copy(), p0.copy()
    z = np.full_like(r, np.nan)
    dense.zero_halo(z, lv.ext)
    mode = {"keep": dense.P_KEEP, "update": dense.P_UPDATE, "first": dense.P_FIRST}[pmode]
    if mode != dense.P_KEEP:
        z[:, extent] = z0[:, extent]  # the preconditioned residual the pass starts from
    if mode == dense.P_FIRST:
        x[:, extent] = np.nan
        p[:, extent] = np.nan
    down = np.full_like(wk.cb[0], np.nan)  # written whole: no clearing needed before
    dense.step_presmooth_restrict(x, r, p, alpha, z, lv.d, lv.inv, lv.par, lv.ext, down,
                                  lv.coarse[0].mask, wk.rmax, wk.res, wk.crow, wk.tmp,
                                  beta, mode)

    p_ref = {"keep": p0, "update": z0 + beta[:, None, None] * p0, "first": z0}[pmode]
    np.testing.assert_allclose(p, p_ref, rtol=1e-6, atol=1e-6)
    a = alpha.astype(np.float64)[:, None, None]
    r_ref = r0 - a * apply_a(p_ref.astype(np.float64))
    x_ref = {"keep": x0, "update": x0 + a * p_ref, "first": a * p_ref}[pmode]
    np.testing.assert_allclose(x, x_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r, r_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(wk.rmax, np.abs(r).max(axis=(1, 2)), rtol=1e-6)
    yy, xx = np.indices(mask.shape)
    red = mask & ((yy + xx) % 2 == 0)
    black = mask & ~red
    rr = r.astype(np.float64)
    z_ref = np.where(red, rr / np.where(mask, d, 1), 0)
    z_ref = np.where(black, (rr + neighbours(z_ref)) / np.where(mask, d, 1), z_ref)
    np.testing.assert_allclose(np.where(mask, z, 0), z_ref, rtol=1e-5, atol=1e-6)
    res = rr - apply_a(z_ref)
    assert np.abs(res[:, black]).max() < 1e-5 * np.abs(rr).max()
    cmask = lv.coarse[0].mask.astype(bool)
    assert np.isfinite(down).all()
    np.testing.assert_array_equal(down[:, ~cmask], 0)
    u = _on_unknowns(rng, cmask, nc)
    up = np.zeros_like(z)
    dense.prolong(up, u, lv.mask, lv.ext, wk.crow, wk.tmp)
    for c in range(nc):
        assert np.isclose(np.vdot(up[c].astype(np.float64), res[c]),
                          np.vdot(u[c].astype(np.float64), down[c]), rtol=1e-4)


def test_float64_residual_is_the_true_residual_of_the_corrected_solution() -> None:
    """The certificate rests on correct_residual64: x += dx (first: x = dx, NaN on the
    extents before) and r = b - A x in float64, rmax its exact max |.| per plane, r
    stored as float32; A from d alone (min(d, 1) as the unknown mask)."""
    from stages.fusion import poisson_dense as dense

    rng = np.random.default_rng(16)
    hole = _odd_edge_hole(rng)
    lv = _hierarchy_for(hole)
    mask = lv.mask.astype(bool)
    nc = 3

    def fine() -> np.ndarray:
        return _on_unknowns(rng, mask, nc)

    b, dx1, dx2 = fine(), fine(), fine()
    x = np.full(b.shape, np.nan)
    dense.zero_outside(x, lv.ext)
    r = np.full(b.shape, np.nan, np.float32)
    rmax, row64 = np.full(nc, np.nan), np.full(lv.shape[1], np.nan)
    for dx, first in ((dx1, True), (dx2, False)):
        dense.correct_residual64(x, dx, b, lv.d, lv.ext, r, rmax, row64, first)
    x_ref = dx1.astype(np.float64) + dx2
    np.testing.assert_array_equal(x, x_ref)
    res = b - (lv.d * x_ref - _neighbour_sum(x_ref, mask))
    np.testing.assert_allclose(rmax, np.abs(res).max(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(r[:, mask], res[:, mask], rtol=1e-6, atol=1e-12)


def _two_coarse_levels(seed: int):
    """The first two coarse levels (dense planes) and the first one's full 9-point
    stencil (float64 [9, Hp, Wp]), for an odd-sized hole touching the image edge."""
    from stages.fusion import poisson_pcg as pcg

    rng = np.random.default_rng(seed)
    hole = _odd_edge_hole(rng)
    hier = _hierarchy(hole)
    lv = pcg.DenseLevels(hier)
    assert len(lv.coarse) >= 2, "the test needs two coarse levels"
    return lv.coarse[0], lv.coarse[1], hier.coarse[0].a.astype(np.float64)


def _apply9(full: np.ndarray, z: np.ndarray) -> np.ndarray:
    """A z for a 9-point level (full: [9, Hp, Wp] slots 3 (dy + 1) + dx + 1) on [C, Hp, Wp]."""
    hp, wp = full.shape[1:]
    padded = np.pad(z.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    return sum(full[s] * padded[:, s // 3:s // 3 + hp, s % 3:s % 3 + wp] for s in range(9))


def _check_restricted(lev, nxt, res: np.ndarray, down: np.ndarray, rng) -> None:
    """down == P^T res on the next level's unknowns (tested through <P u, res> = <u, down>
    with the prolongation, whose transpose test is above), zero elsewhere."""
    from stages.fusion import poisson_dense as dense

    nc, wp = res.shape[0], res.shape[2]
    assert np.isfinite(down).all()
    np.testing.assert_array_equal(down[:, nxt.mask == 0], 0)
    u = _on_unknowns(rng, nxt.mask, nc)
    up = np.zeros(res.shape, np.float32)
    dense.prolong(up, u, lev.mask, lev.ext, np.zeros((nc, wp), np.float32),
                  np.zeros(wp, np.float32))
    for c in range(nc):
        assert np.isclose(np.vdot(up[c].astype(np.float64), res[c]),
                          np.vdot(u[c].astype(np.float64), down[c]), rtol=1e-4)


def test_coarse_residual_restriction_is_p_transpose_of_the_nine_point_residual() -> None:
    """residual_restrict9 (the coarse levels' residual, written into a row buffer from the
    extent's first column, then restricted) must give P^T (b - A z) with the full
    9-point stencil, masked to the next level's unknowns, whatever its scratch row and
    output held before (NaN)."""
    from stages.fusion import poisson_dense as dense

    rng = np.random.default_rng(14)
    lev, nxt, full = _two_coarse_levels(14)
    mask, nc, wp = lev.mask.astype(bool), 2, lev.mask.shape[1]
    z, b = _on_unknowns(rng, mask, nc), _on_unknowns(rng, mask, nc)
    down = np.full((nc,) + nxt.mask.shape, np.nan, np.float32)
    scratch = np.full((nc, wp), np.nan, np.float32)
    crow, tmp = np.zeros((nc, wp), np.float32), np.zeros(wp, np.float32)
    dense.residual_restrict9(z, b, lev.a, lev.ext, down, nxt.mask, scratch, crow, tmp)
    _check_restricted(lev, nxt, np.where(mask, b - _apply9(full, z), 0), down, rng)


def test_first_coarse_down_leg_is_jacobi_from_zero_then_restricted_residual() -> None:
    """jacobi9_residual_restrict must write all of x (omega inv b on the unknowns, zero
    elsewhere: the cycle no longer clears x first, NaN before) and give P^T (b - A x)."""
    from stages.fusion import poisson_dense as dense

    rng = np.random.default_rng(15)
    lev, nxt, full = _two_coarse_levels(15)
    assert lev.omega > 0
    mask, nc, wp = lev.mask.astype(bool), 2, lev.mask.shape[1]
    b = _on_unknowns(rng, mask, nc)
    x = np.full_like(b, np.nan)
    down = np.full((nc,) + nxt.mask.shape, np.nan, np.float32)
    scratch = np.full((nc, wp), np.nan, np.float32)
    crow, tmp = np.zeros((nc, wp), np.float32), np.zeros(wp, np.float32)
    dense.jacobi9_residual_restrict(x, b, lev.a, lev.inv, lev.ext, lev.omega, down, nxt.mask,
                                    scratch, crow, tmp)
    x_ref = np.float64(lev.omega) * lev.inv * b.astype(np.float64)
    np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(x[:, ~mask], 0)
    _check_restricted(lev, nxt, np.where(mask, b - _apply9(full, x), 0), down, rng)


def test_first_coarse_up_leg_is_prolongation_then_damped_jacobi() -> None:
    """prolong_jacobi9_sweep must equal z + P zc followed by one damped Jacobi sweep
    z += omega D^-1 (b - A z) with the full 9-point stencil, whatever its row buffers
    held (NaN)."""
    from stages.fusion import poisson_dense as dense

    rng = np.random.default_rng(16)
    lev, nxt, full = _two_coarse_levels(16)
    mask, nc, wp = lev.mask.astype(bool), 2, lev.mask.shape[1]
    z, b = _on_unknowns(rng, mask, nc), _on_unknowns(rng, mask, nc)
    zc = _on_unknowns(rng, nxt.mask, nc)
    crow, tmp = np.zeros((nc, wp), np.float32), np.zeros(wp, np.float32)
    lifted = z.copy()
    dense.prolong(lifted, zc, lev.mask, lev.ext, crow, tmp)
    lifted = lifted.astype(np.float64)
    ref = lifted + np.float64(lev.omega) * lev.inv * np.where(mask, b - _apply9(full, lifted), 0)
    even, odd = np.full((nc, wp), np.nan, np.float32), np.full((nc, wp), np.nan, np.float32)
    dense.prolong_jacobi9_sweep(z, zc, b, lev.a, lev.inv, lev.mask, lev.ext, lev.omega, even,
                                odd, crow, tmp)
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(z[:, ~mask], 0)


def test_second_pass_is_prolongation_then_black_red_gauss_seidel() -> None:
    """The post-smoothing writes its black rows to a rolling pair of rows and the red
    sweep reads them there: z must be z + P zc followed by plain black then red
    Gauss-Seidel, dots <r, z> and zaz <z, A z> (taken without a stencil, from the red
    points' residual being zero), whatever the rolling rows held before (NaN)."""
    from stages.fusion import poisson_dense as dense
    from stages.fusion import poisson_pcg as pcg

    rng = np.random.default_rng(13)
    hole = _odd_edge_hole(rng)
    hole[30, :] = False  # an empty row inside the crop
    lv = _hierarchy_for(hole)
    mask = lv.mask.astype(bool)
    d = np.where(mask, lv.d.astype(np.float64), 1.0)
    nc = 2

    def neighbours(v: np.ndarray) -> np.ndarray:
        return _neighbour_sum(v, mask)

    z0, r = _on_unknowns(rng, mask, nc), _on_unknowns(rng, mask, nc)
    cmask = lv.coarse[0].mask.astype(bool)
    zc = _on_unknowns(rng, cmask, nc)
    wk = pcg.DenseWork(lv, nc)
    wk.rows[:] = np.nan
    z = z0.copy()
    dots, zaz = np.full(nc, np.nan), np.full(nc, np.nan)
    dense.prolong_postsmooth_dot(z, zc, r, lv.d, lv.inv, lv.par, lv.ext, dots, zaz, wk.crow,
                                 wk.tmp, wk.rows)

    up = np.zeros_like(z0)
    dense.prolong(up, zc, lv.mask, lv.ext, wk.crow, wk.tmp)
    yy, xx = np.indices(mask.shape)
    red = mask & ((yy + xx) % 2 == 0)
    black = mask & ~red
    ref = (z0 + up).astype(np.float64)
    rr = r.astype(np.float64)
    ref = np.where(black, (rr + neighbours(ref)) / d, ref)
    ref = np.where(red, (rr + neighbours(ref)) / d, ref)
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dots, (rr * ref).sum(axis=(1, 2)), rtol=1e-5)
    a_ref = np.where(mask, lv.d, 0) * ref - neighbours(ref)
    np.testing.assert_allclose(zaz, (ref * a_ref).sum(axis=(1, 2)), rtol=1e-5)


def test_galerkin_interior_shortcut_equals_the_full_product() -> None:
    """The constant stencil used deep inside a hole must be exactly what the full
    P^T A P computation gives there, next to edges, odd sizes and scattered holes."""
    from stages.fusion import poisson_dense as dense
    from stages.fusion import poisson_gmg as gmg
    from stages.fusion import poisson_pcg as pcg

    rng = np.random.default_rng(5)
    hole = np.zeros((41, 36), bool)
    hole[2:30, 3:33] = True  # a large interior
    hole[rng.random(hole.shape) < 0.02] = False  # scattered known pixels
    hole[:, :4] = True  # touches the image edge
    h, w = hole.shape
    image = np.zeros((h, w, 3), np.uint8)
    idx, (d, we, ws, *_), _ = dense.build_fine(hole, image, image, 0, 0, h, w)
    hc, wc = (h + 1) // 2, (w + 1) // 2
    cidx, cmask = gmg.coarse_unknowns(idx, w + 2, hc, wc)
    args = (cidx, cmask, wc + 2, w + 2, d.reshape(-1), we.reshape(-1), ws.reshape(-1), h, w)
    stencil = pcg.interior_stencil()
    fast = gmg.galerkin5(*args, stencil)
    full = gmg.galerkin5(*args, np.zeros(0, np.float32))
    assert np.array_equal(fast, full)
    assert (fast[:, cidx] == stencil[:, None]).all(axis=0).sum() > 30  # shortcut taken


def _poison_work_arrays() -> None:
    """Fill every kept work array with all-ones bits (NaN as floats, -1 as integers)."""
    from stages.fusion.poisson_work import work_arrays

    for buf in work_arrays()._buffers.values():
        buf.fill(0xFF)


def test_reused_work_arrays_give_the_fresh_result() -> None:
    """Whatever a reused work array holds (a larger crop, another mask, NaN garbage), the
    result equals the one computed on fresh arrays: every kernel writes before it reads."""
    from stages.fusion.poisson_work import release_work_arrays, work_arrays

    rng = np.random.default_rng(12)
    image, generated, _ = random_case(rng, 90, 100, 0.0)
    blob = np.zeros((90, 100), bool)
    blob[5:80, 8:95] = True
    blob[rng.random(blob.shape) < 0.05] = False
    small = np.zeros((90, 100), bool)
    small[40:70, 30:61] = True
    cases = [blob, small, rng.random((90, 100)) < 0.3, blob]
    release_work_arrays()
    fresh = []
    for hole in cases:
        fresh.append(poisson_fuse_float(image, generated, hole))
        release_work_arrays()
    poisson_fuse_float(image, generated, np.ones((90, 100), bool) ^ blob)  # keep other contents
    assert work_arrays().kept_bytes > 0
    for hole, expected in zip(cases, fresh):
        _poison_work_arrays()
        np.testing.assert_array_equal(poisson_fuse_float(image, generated, hole), expected)
    release_work_arrays()
    assert work_arrays().kept_bytes == 0


def test_work_arrays_keep_within_their_budget() -> None:
    from stages.fusion.poisson_work import WorkArrays

    arrays = WorkArrays(budget=1000)
    a = arrays.get("a", (100,), np.float32)  # 400 bytes: kept
    assert arrays.kept_bytes == 400 and a.shape == (100,)
    b = arrays.get("b", (200,), np.float32, zero=True)  # 800 more: over budget, fresh
    assert arrays.kept_bytes == 400 and not b.any()
    a[:] = 7.0
    again = arrays.get("a", (10, 5), np.float32)  # smaller: a view of the kept buffer
    assert np.shares_memory(again, a) and (again == 7.0).all()
    assert not arrays.get("a", (10, 5), np.float32, zero=True).any()
    arrays.clear()
    assert arrays.kept_bytes == 0


def test_coarse_operators_are_exactly_symmetric() -> None:
    """The coarse kernels read slots 0..3 of a point as slots 8..5 of its neighbours
    (half_stencil), which needs a_s(p) == a_(8-s)(p + offset_s) bit for bit."""
    from stages.fusion import poisson_dense as dense

    rng = np.random.default_rng(13)
    hole = np.ones((45, 38), bool)
    hole[rng.random(hole.shape) < 0.1] = False
    hole[:3, :] = False
    hier = _hierarchy(hole)
    assert len(hier.coarse) >= 2
    for lev in hier.coarse:
        a = lev.a
        for s in range(4):
            dy, dx = s // 3 - 1, s % 3 - 1
            shifted = np.roll(a[8 - s], (-dy, -dx), axis=(0, 1))  # a_(8-s) at p + (dy, dx)
            np.testing.assert_array_equal(a[s][1:-1, 1:-1], shifted[1:-1, 1:-1])
        np.testing.assert_array_equal(dense.half_stencil(a), a[4:])


def test_galerkin9_interior_shortcut_equals_the_full_product() -> None:
    """Deeper levels take a constant stencil where the 5x5 block below is all the previous
    level's interior stencil: it must equal the full P^T A P, for every level."""
    from stages.fusion import poisson_gmg as gmg
    from stages.fusion import poisson_pcg as pcg

    rng = np.random.default_rng(14)
    hole = np.zeros((150, 140), bool)
    hole[4:140, 3:137] = True  # a large interior, so every level has interior points
    hole[rng.random(hole.shape) < 0.002] = False
    hole[:, :6] = True  # touches the image edge
    hier = _hierarchy(hole)
    assert len(hier.coarse) >= 3
    empty = np.zeros(0, np.float32)
    shortcuts = 0
    for depth, lev in enumerate(hier.coarse[:-1], start=1):
        hc, wc = (lev.h + 1) // 2, (lev.w + 1) // 2
        cidx, cmask = gmg.coarse_unknowns(lev.idx, lev.wp, hc, wc)
        args = (cidx, cmask, wc + 2, lev.wp, lev.a.reshape(9, -1), lev.h, lev.w)
        stencil = pcg.interior_stencil(depth)
        fast = gmg.galerkin9(*args, pcg.interior_stencil(depth - 1), stencil)
        np.testing.assert_array_equal(fast, gmg.galerkin9(*args, empty, empty))
        shortcuts += int((fast[:, cidx] == stencil[:, None]).all(axis=0).sum())
    assert shortcuts > 100


def test_loose_bound_plane_still_bounds_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound plane v stops at the loose goal max|1 - A v| <= BOUND_RESIDUAL: the
    certificate max|r| max(v) / m (m from the float64 A v) must still bound the true error,
    the iteration must certify without the direct fallback, and only v leaves the passes
    early (a colour plane dropped at its goal would start the next round worse)."""
    from stages.fusion import poisson_dense as dense
    from stages.fusion import poisson_pcg as pcg

    certificates, planes = [], []
    real_certified, real_step = pcg.certified, dense.step_presmooth_restrict

    def record_certified(rmax, vmax, m, max_error):
        certificates.append((float(rmax.max()), vmax, m))
        return real_certified(rmax, vmax, m, max_error)

    def record_step(r, *args):
        planes.append(r.shape[0])
        return real_step(r, *args)

    def no_fallback(*args):
        raise AssertionError("direct fallback used")

    monkeypatch.setattr(pcg, "certified", record_certified)
    monkeypatch.setattr(pcg.dn, "step_presmooth_restrict", record_step)
    monkeypatch.setattr(pcg, "solve_direct", no_fallback)
    rng = np.random.default_rng(15)
    image, generated, _ = random_case(rng, 120, 110, 0.0)
    generated[..., 2] = image[..., 2] // 2 + 60  # blue meets its goal before the others
    hole = np.zeros((120, 110), bool)
    hole[6:110, 10:100] = True
    hole[50:60, 30:80] = False  # two lobes joined at the sides
    hole[rng.random(hole.shape) < 0.01] = False
    error = np.abs(poisson_fuse_float(image, generated, hole)
                   - exact_solution(image, generated, hole)).max()
    rmax, vmax, m = certificates[-1]
    assert 0.0 < m and rmax * vmax / m <= MAX_ERROR
    assert error <= rmax * vmax / m
    assert len(certificates) >= 2  # round 1 did not certify: the round-2 goal used m
    first_round = planes[:planes.index(3)]
    assert first_round and set(first_round) == {4}
    assert set(planes[len(first_round):]) == {3}  # the colour planes stay together
