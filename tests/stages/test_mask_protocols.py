"""Benchmark mask protocols: target ratios at several sizes, determinism, spec parsing."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.mask_protocols import (
    MaskKind,
    _grow,
    brush_count_range,
    describe,
    generate_mask,
    noise_count,
    parse_mask_kind,
)

SIZES = [(128, 128), (256, 256), (512, 512), (300, 200)]
SEEDS = range(20)
BRUSH_SPECS = ["brush:10-20", "brush:20-30", "brush:30-40", "brush:40-50"]
NOISE_SPECS = ["noise:20", "noise:30", "noise:40", "noise:50", "noise:90"]
LAMA_SPECS = ["lama-thin", "lama-medium", "lama-thick"]
ALL_SPECS = ["center", *NOISE_SPECS, *BRUSH_SPECS, *LAMA_SPECS]
# Mean-ratio bands at any size for the LaMa families (faithful configs; see module docstring).
LAMA_MEAN_BANDS = {"lama-thin": (0.12, 0.42), "lama-medium": (0.10, 0.38), "lama-thick": (0.12, 0.42)}


def _seeds(height: int) -> range:
    return SEEDS if height <= 300 else range(8)  # keep 512 px cheap


def _ratios(spec: str, height: int, width: int) -> np.ndarray:
    kind = parse_mask_kind(spec)
    return np.array([generate_mask(kind, height, width, s).mean() for s in _seeds(height)])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("spec", BRUSH_SPECS)
def test_brush_ratio_in_range(spec: str, size: tuple[int, int]) -> None:
    kind = parse_mask_kind(spec)
    lo, hi = kind.param("lo") / 100, kind.param("hi") / 100
    for seed in _seeds(size[0]):
        mask = generate_mask(kind, *size, seed)
        assert mask.shape == size and mask.dtype == bool
        assert lo <= mask.mean() < hi, (spec, size, seed, mask.mean())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("spec", NOISE_SPECS)
def test_noise_exact_count(spec: str, size: tuple[int, int]) -> None:
    kind = parse_mask_kind(spec)
    p = kind.param("percent")
    for seed in range(3):
        mask = generate_mask(kind, *size, seed)
        assert int(mask.sum()) == noise_count(*size, p) == round(p / 100 * size[0] * size[1])


def test_noise_odd_counts() -> None:
    assert noise_count(7, 9, 50) == round(31.5)
    assert generate_mask(parse_mask_kind("noise:12.5"), 33, 17, 0).sum() == round(0.125 * 33 * 17)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("spec", LAMA_SPECS)
def test_lama_ratio_plausible(spec: str, size: tuple[int, int]) -> None:
    ratios = _ratios(spec, *size)
    assert ratios.min() > 0 and ratios.max() <= 0.5, ratios
    lo, hi = LAMA_MEAN_BANDS[spec]
    assert lo <= ratios.mean() <= hi, (spec, size, ratios.mean())


def _half_width(mask: np.ndarray) -> float:
    """Largest inscribed radius: half the thickest stroke or box side."""
    return float(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3).max())


def test_lama_thin_strokes_are_thinner_than_thick() -> None:
    thin, thick = parse_mask_kind("lama-thin"), parse_mask_kind("lama-thick")
    w_thin = np.median([_half_width(generate_mask(thin, 256, 256, s)) for s in SEEDS])
    w_thick = np.median([_half_width(generate_mask(thick, 256, 256, s)) for s in SEEDS])
    assert w_thin * 2 < w_thick


def test_lama_scales_with_resolution() -> None:
    kind = parse_mask_kind("lama-thick")
    small = np.mean([_half_width(generate_mask(kind, 128, 128, s)) for s in range(10)])
    large = np.mean([_half_width(generate_mask(kind, 512, 512, s)) for s in range(10)])
    assert 2.5 < large / small < 6.5  # ~4x for a 4x larger side


@pytest.mark.parametrize(
    "size, side", [((128, 128), (64, 64)), ((256, 256), (128, 128)), ((1024, 1024), (512, 512)), ((300, 200), (150, 100)), ((5, 7), (2, 3))]
)
def test_center_exact(size: tuple[int, int], side: tuple[int, int]) -> None:
    mask = generate_mask(parse_mask_kind("center"), *size, seed=0)
    rows, cols = np.nonzero(mask)
    assert mask.sum() == side[0] * side[1]
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == side
    # centred: equal margins (within one pixel for odd leftovers)
    assert abs(rows.min() - (size[0] - 1 - rows.max())) <= 1
    assert abs(cols.min() - (size[1] - 1 - cols.max())) <= 1
    assert np.array_equal(mask, generate_mask(parse_mask_kind("center"), *size, seed=99))


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_deterministic_and_seed_dependent(spec: str) -> None:
    kind = parse_mask_kind(spec)
    a = generate_mask(kind, 96, 80, 7)
    np.random.seed(123)  # global numpy state must not matter
    generate_mask(kind, 96, 80, 8)  # nor call order
    b = generate_mask(kind, 96, 80, 7)
    assert np.array_equal(a, b)
    if spec != "center":
        assert not np.array_equal(a, generate_mask(kind, 96, 80, 8))


def test_same_seed_differs_across_sizes_and_kinds() -> None:
    a = generate_mask(parse_mask_kind("noise:30"), 64, 64, 1)
    b = generate_mask(parse_mask_kind("noise:40"), 64, 64, 1)
    assert not np.array_equal(a, b[:64, :64])


@pytest.mark.parametrize(
    "spec", ["center", " CENTER ", "noise:20", "noise:12.5", "brush:10-20", "brush:1.5-2.5", "lama-thin", "lama-medium", "lama-thick"]
)
def test_parse_round_trip_and_describe(spec: str) -> None:
    kind = parse_mask_kind(spec)
    assert isinstance(kind, MaskKind)
    assert parse_mask_kind(kind.spec) == kind
    record = describe(kind)
    assert record["mask_kind"] == kind.name and record["spec"] == kind.spec
    json.dumps(record)  # manifests store it as JSON
    hash(kind)  # frozen: usable as a dict key


@pytest.mark.parametrize(
    "spec",
    ["", "circle", "noise", "noise:", "noise:0", "noise:100", "noise:abc", "noise:nan", "noise:-5",
     "brush", "brush:10", "brush:20-10", "brush:0-10", "brush:10-101", "brush:a-b", "lama-huge", "lama"],
)
def test_malformed_specs_raise_helpfully(spec: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_mask_kind(spec)
    message = str(info.value)
    assert repr(spec) in message and "valid forms" in message
    assert "brush:LO-HI" in message and "noise:P" in message and "lama-thick" in message


def test_non_string_spec_and_bad_size() -> None:
    with pytest.raises(ValueError):
        parse_mask_kind(20)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        generate_mask(parse_mask_kind("center"), 0, 10, 0)
    with pytest.raises(ValueError):
        generate_mask(MaskKind("blob"), 10, 10, 0)


def test_brush_infeasible_range_raises() -> None:
    with pytest.raises(ValueError, match="no achievable"):
        generate_mask(parse_mask_kind("brush:50-51"), 3, 3, 0)  # needs 4.5 <= n < 4.59 of 9 px
    with pytest.raises(ValueError, match="no achievable"):
        generate_mask(parse_mask_kind("brush:50-100"), 1, 1, 0)  # 100% is excluded
    assert generate_mask(parse_mask_kind("brush:50-51"), 4, 4, 0).sum() == 8  # 8/16 is in range


def test_brush_narrow_range_uses_fallback() -> None:
    kind = parse_mask_kind("brush:40-44")  # 5x5: exactly 10 pixels allowed
    for seed in range(5):
        assert generate_mask(kind, 5, 5, seed).sum() == 10


def test_grow_fallback_adds_exact_border_pixels() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 20), np.uint8)
    _grow(rng, mask, 1)  # from empty: one seed pixel
    _grow(rng, mask, 30)
    assert mask.sum() == 31
    n, _ = cv2.connectedComponents(mask, connectivity=8)
    assert n == 2  # one background label + one connected hole


@settings(max_examples=15, deadline=None)
@given(
    height=st.integers(8, 160),
    width=st.integers(8, 160),
    lo=st.integers(1, 85),
    span=st.integers(1, 15),
    seed=st.integers(0, 2**31),
)
def test_brush_property(height: int, width: int, lo: int, span: int, seed: int) -> None:
    hi = min(lo + span, 100)
    kind = parse_mask_kind(f"brush:{lo}-{hi}")
    try:
        lo_count, hi_max = brush_count_range(height, width, lo, hi)
    except ValueError:
        return  # no integer pixel count in range at this size
    mask = generate_mask(kind, height, width, seed)
    assert mask.shape == (height, width) and mask.dtype == bool
    assert lo_count <= mask.sum() <= hi_max
    assert lo / 100 <= mask.mean() < hi / 100
    assert np.array_equal(mask, generate_mask(kind, height, width, seed))
