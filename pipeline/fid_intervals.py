"""Bootstrap 95% intervals for FID and KID, so nightly comparisons can flag them like any metric.

FID and KID compare sets, so there is no per-image value to bootstrap; instead the *images* are
resampled with replacement (each output stays paired with its own ground truth) and both metrics are
recomputed on every resample. That is cheap because neither needs the 2048×2048 matrix square root
while the set is smaller than the feature dimension:

- FID = |μ1 − μ2|² + tr Σ1 + tr Σ2 − 2 tr √(Σ1Σ2). With centred features A, B ([n,D], divided by
  √(n−1)), Σ1 = AᵀA and Σ2 = BᵀB, and the non-zero eigenvalues of Σ1Σ2 are the squared singular
  values of the n×n matrix ABᵀ, so tr √(Σ1Σ2) is its nuclear norm: one n×n SVD per resample.
  Larger sets use torch-fidelity's own D×D formula, with fewer resamples.
- KID (torch-fidelity's cubic polynomial kernel, unbiased MMD²): the three kernel matrices are
  computed once and each resample only gathers from them. Pairs of a resample drawn from the same
  image are left out of the within-set sums, as the unbiased estimator leaves out the diagonal.

Intervals are percentile intervals of the resampled values shifted by the bootstrap's bias estimate
(see :func:`bootstrap_fid_kid`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapConfig:
    """How many resamples: the fast n×n route affords many; the D×D route for big sets few."""

    resamples: int = 200  # sets smaller than the feature dimension
    resamples_large: int = 20  # sets of at least D images (one D×D eigen-decomposition each)
    seed: int = 0


def fid_fast(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two paired ``[n,D]`` feature sets; equals torch-fidelity's formula."""
    n, dim = a.shape
    diff = a.mean(0) - b.mean(0)
    ca = (a - a.mean(0)) / np.sqrt(n - 1)
    cb = (b - b.mean(0)) / np.sqrt(n - 1)
    trace_a, trace_b = float((ca * ca).sum()), float((cb * cb).sum())
    if n <= dim:
        tr_covmean = float(np.linalg.svd(ca @ cb.T, compute_uv=False).sum())
    else:
        eig = np.linalg.eigvals((ca.T @ ca) @ (cb.T @ cb)).astype(np.complex128)
        tr_covmean = float(np.sqrt(eig).real.sum())
    return float(diff @ diff + trace_a + trace_b - 2 * tr_covmean)


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """torch-fidelity's KID kernel: (x·y / D + 1)³."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def kid_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, same: np.ndarray) -> float:
    """Unbiased MMD² from kernel matrices of a resample; ``same`` marks pairs drawn from one image.

    Same-image pairs are left out of the within-set terms (as the estimator leaves out the
    diagonal), and the cross term weighs an output against its own ground truth by 1/n, as the
    full-set estimator does; duplicates would otherwise weigh those matched pairs twice as much."""
    n = len(same)
    distinct = ~same
    within = (kxx[distinct].sum() + kyy[distinct].sum()) / distinct.sum()
    cross = (1 - 1 / n) * kxy[distinct].mean() + (1 / n) * np.diagonal(kxy).mean()
    return float(within - 2 * cross)


def bootstrap_fid_kid(a: np.ndarray, b: np.ndarray, fid: float, kid: float,
                      config: BootstrapConfig = BootstrapConfig()) -> dict[str, float | int]:
    """95% intervals of FID and KID for paired ``[n,D]`` features (n ≥ 2) around the full-set
    values ``fid`` and ``kid``: the percentile interval of the resampled values, shifted by the
    bootstrap's bias estimate (mean of the resamples − full-set value). Resampling duplicates
    images, which raises FID (a duplicated image adds no spread to the covariance); the shift
    removes that offset and keeps the spread.

    Sets of more than D images get ``resamples_large`` FID resamples through the D×D formula, and
    their KID resamples draw D images each (an m-out-of-n bootstrap: a wider, conservative interval,
    so that no n×n kernel of a huge set is ever held)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n, dim = a.shape
    rng = np.random.default_rng(config.seed)
    large = n > dim
    resamples = config.resamples_large if large else config.resamples
    kernels = None if large else (_poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b))
    fids, kids = [], []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        if len(np.unique(idx)) < 2:  # a resample of one image has no spread to measure
            continue
        fids.append(fid_fast(a[idx], b[idx]))
        if kernels is None:
            idx = idx[:dim]
            kxx, kyy, kxy = _poly_kernel(a[idx], a[idx]), _poly_kernel(b[idx], b[idx]), _poly_kernel(a[idx], b[idx])
        else:
            grid = np.ix_(idx, idx)
            kxx, kyy, kxy = kernels[0][grid], kernels[1][grid], kernels[2][grid]
        kids.append(kid_unbiased(kxx, kyy, kxy, idx[:, None] == idx[None, :]))
    if not fids:
        return {"resamples": 0}
    fid_low, fid_high = np.percentile(fids, [2.5, 97.5]) - (np.mean(fids) - fid)
    fid_low = max(fid_low, 0.0)  # FID is a squared distance: the shift must not take it below zero
    kid_low, kid_high = np.percentile(kids, [2.5, 97.5]) - (np.mean(kids) - kid)
    return {"fid_low": float(fid_low), "fid_high": float(fid_high), "kid_low": float(kid_low),
            "kid_high": float(kid_high), "resamples": len(fids)}
