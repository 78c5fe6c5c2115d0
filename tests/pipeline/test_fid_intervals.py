"""FID/KID bootstrap intervals: the fast formulas equal torch-fidelity's, intervals behave."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from pipeline.fid_intervals import BootstrapConfig, _poly_kernel, bootstrap_fid_kid, fid_fast, kid_unbiased
from pipeline.report import Report
from pipeline.report_compare import compare


def _pair(n: int, dim: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim))
    return a, a + rng.normal(size=(n, dim)) * 0.5 + shift


def _torch_fidelity_fid(a: np.ndarray, b: np.ndarray) -> float:
    stats = [fid_features_to_statistics(torch.from_numpy(x)) for x in (a, b)]
    return fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]


@pytest.mark.parametrize("n, dim", [(60, 128), (200, 32)])  # fewer images than dimensions, and more
def test_fid_fast_equals_torch_fidelity(n, dim):
    a, b = _pair(n, dim, 0.3)
    assert fid_fast(a, b) == pytest.approx(_torch_fidelity_fid(a, b), rel=1e-6)


def test_kid_of_the_identity_resample_equals_torch_fidelity():
    a, b = _pair(50, 16, 0.3)
    ours = kid_unbiased(_poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b), np.eye(50, dtype=bool))
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=2, kid_subset_size=50,
                                 rng_seed=0, verbose=False)["kernel_inception_distance_mean"]
    assert ours == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("n, dim", [(80, 128), (150, 64)])
def test_intervals_hold_the_estimate_shrink_with_more_images_and_repeat(n, dim):
    a, b = _pair(n, dim, 0.2)
    fid = fid_fast(a, b)
    kid = kid_unbiased(_poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b), np.eye(n, dtype=bool))
    small = bootstrap_fid_kid(a, b, fid, kid, BootstrapConfig(resamples=100, resamples_large=40))
    assert small["fid_low"] < fid < small["fid_high"] and small["kid_low"] < kid < small["kid_high"]
    assert small == bootstrap_fid_kid(a, b, fid, kid, BootstrapConfig(resamples=100, resamples_large=40))
    big_a, big_b = _pair(4 * n, dim, 0.2, seed=1)
    big = bootstrap_fid_kid(big_a, big_b, fid_fast(big_a, big_b), 0.0, BootstrapConfig(resamples=100, resamples_large=40))
    assert big["fid_high"] - big["fid_low"] < small["fid_high"] - small["fid_low"]


def test_compare_flags_a_fid_regression_with_disjoint_intervals(tmp_path):
    def report(name: str, fid: tuple[float, float, float]) -> Report:
        summary = {"n": 100, "mean": fid[0], "low": fid[1], "high": fid[2]}
        group = {"count": 100, "ok": 100, "error": 0, "scored": 100, "fid": summary}
        return Report(out=tmp_path / name, run={"config": {"method": name}}, buckets={"0.10-0.20": group},
                      overall=dict(group))

    base, same, worse = report("a", (20, 18, 22)), report("b", (21, 19, 23)), report("c", (30, 27, 33))
    found = compare([base, same, worse])
    assert {(r.run_label, r.bucket, r.metric) for r in found} == {("c (c)", "0.10-0.20", "fid"), ("c (c)", "all", "fid")}
