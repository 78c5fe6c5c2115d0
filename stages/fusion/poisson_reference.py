"""Reference Poisson solve: Delta f = Delta g assembled directly and solved by scipy's spsolve.

Written independently of the fast solver (no harmonic-correction trick, no multigrid), so tests
and the benchmark can use it as the oracle the fast solver must match.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def system(image: np.ndarray, generated: np.ndarray, hole: np.ndarray):
    """Assemble Delta f = Delta g over the hole (Neumann at the image edge)."""
    h, w = hole.shape
    n = int(hole.sum())
    ids = np.full((h, w), -1)
    ids[hole] = np.arange(n)
    ys, xs = np.nonzero(hole)
    g, im = generated.astype(np.float64), image.astype(np.float64)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], []
    deg, rhs = np.zeros(n), np.zeros((n, 3))
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        yy, xx = ys + dy, xs + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        i, yq, xq = np.flatnonzero(ok), yy[ok], xx[ok]
        deg[i] += 1
        rhs[i] += g[ys[i], xs[i]] - g[yq, xq]
        inside = hole[yq, xq]
        rows.append(i[inside])
        cols.append(ids[yq[inside], xq[inside]])
        vals.append(-np.ones(int(inside.sum())))
        rhs[i[~inside]] += im[yq[~inside], xq[~inside]]
    vals.insert(0, deg)
    a = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    return a, rhs


def exact_poisson(image: np.ndarray, generated: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`[H,W,3] float64` exact (unrounded) fusion; the whole-image hole returns `generated`."""
    n = int(hole.sum())
    out = image.astype(np.float64)
    if n == 0:
        return out
    if n == hole.size:
        return generated.astype(np.float64)
    a, rhs = system(image, generated, hole)
    out[hole] = np.reshape(spla.spsolve(a.tocsc(), rhs), (n, 3))
    return out
