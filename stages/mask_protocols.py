"""Deterministic benchmark mask protocols, at any resolution.

This module owns the *synthetic* hole masks used by the benchmarks: the
centre square, random-noise, free-form brush and LaMa-style irregular masks
of the seed papers (He et al. 2022 §4; Suvorov et al. 2022 for LaMa). It does
not read mask files (NVIDIA irregular masks live in another module).

Why it exists: a benchmark row must be reproducible from
``(mask spec, image size, seed)`` alone, whatever process, worker or order
generates it. Each mask therefore gets its own ``np.random.default_rng``
derived by hashing ``(seed, canonical spec, height, width)``; no global RNG
state is touched and nothing depends on call order.

Specs (``parse_mask_kind``)::

    center              centred rectangle, half of each side (1/4 of the area)
    noise:P             exactly round(P/100*H*W) random pixels, 0 < P < 100
    brush:LO-HI         free-form brush strokes, hole ratio in [LO%, HI%)
    lama-thin           LaMa eval "random_thin_256" family, scaled
    lama-medium         LaMa eval "random_medium_256" family, scaled
    lama-thick          LaMa eval "random_thick_256" family, scaled

Masks are ``[H, W] bool`` with True = hole. Only numpy and cv2 are used.

Protocol notes and where they approximate the sources:

* ``center``: He et al. use 64², 128², 512² holes at 128, 256, 1024 px (1/4 of
  the area); non-square images get half of each side, centred (floor offsets).
* ``noise:P``: exact pixel count (banker's ``round`` of P/100·H·W), sampled
  without replacement, so the ratio is exact rather than Bernoulli(P).
* ``brush:LO-HI``: strokes after DeepFill v2's free-form generator at 256 px
  (4-12 vertices, turns of 2π/5 ± 2π/15 alternating in sign, widths 12-40 px,
  segment lengths ~ N(d/8, d/16) clipped to [0, d/4], d = image diagonal, round
  joints). Our own variant: the walk's heading is random rather than fixed and
  flipped, and strokes are added one at a time until the hole reaches a target
  count drawn uniformly in [LO%, HI%), so every mask lands in its bucket
  (He et al. do not publish their generator). Widths scale with sqrt(H·W)/256.
* ``lama-*``: the irregular-line and box generators with the published 256 px
  eval configs (``LAMA_FAMILIES``), one generator picked per mask with the
  configs' probabilities, masks over 50% area (``max_tamper_area``) resampled.
  Approximations: every pixel quantity (lengths, widths, box sizes, margins) is
  multiplied by sqrt(H·W)/256 with counts unchanged, whereas LaMa's own 512 px
  configs change counts and sizes differently; LaMa's crop/upscale pipeline and
  its global-RNG draws are not reproduced, so distributions match, not files.
  Measured at 256 px (50 seeds) the faithful configs give thin ~5-49% (mean
  ~29%), medium ~1-44% (mean ~23%), thick ~1-50% (mean ~28%): the low tail
  comes from box-only masks (~23% of medium/thick draws), as in LaMa.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

VALID_FORMS = (
    "center",
    "noise:P (0 < P < 100, e.g. noise:20)",
    "brush:LO-HI (0 < LO < HI <= 100, e.g. brush:10-20)",
    "lama-thin",
    "lama-medium",
    "lama-thick",
)

# LaMa's evaluation mask configs (advimman/lama, configs/data_gen/random_*_256.yaml),
# in pixels at 256 px. Each mask is drawn by ONE generator picked with probability
# proportional to its proba (irregular strokes, or boxes), as LaMa's mixed generator does.
LAMA_FAMILIES: dict[str, dict[str, dict[str, float]]] = {
    "lama-thin": {
        "irregular": dict(proba=1.0, min_times=4, max_times=50, max_width=10, max_angle=4, max_len=40),
    },
    "lama-medium": {
        "irregular": dict(proba=1.0, min_times=4, max_times=5, max_width=50, max_angle=4, max_len=100),
        "box": dict(proba=0.3, margin=0, bbox_min_size=10, bbox_max_size=50, min_times=1, max_times=5),
    },
    "lama-thick": {
        "irregular": dict(proba=1.0, min_times=1, max_times=5, max_width=100, max_angle=4, max_len=200),
        "box": dict(proba=0.3, margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=3),
    },
}
LAMA_MAX_TAMPER_AREA = 0.5  # LaMa's eval generation drops masks covering more than half the image
LAMA_REFERENCE_SIDE = 256

# Free-form brush strokes after DeepFill v2 (Yu et al. 2019), parameters at 256 px.
BRUSH_PARAMS: dict[str, float] = dict(
    min_vertices=4, max_vertices=12,
    mean_angle=2 * math.pi / 5, angle_range=2 * math.pi / 15,
    min_width=12, max_width=40,
    radius_per_diagonal=1 / 8,  # mean segment length = diagonal / 8 (resolution free)
    reference_side=256,
)
_ATTEMPTS_PER_WIDTH = 4  # overshooting strokes retried this often before shrinking
_WIDTH_HALVINGS = 6
_MAX_STROKES = 400


@dataclass(frozen=True)
class MaskKind:
    """A parsed mask protocol: `name` plus numeric `params` as sorted (key, value) pairs."""

    name: str
    params: tuple[tuple[str, float], ...] = ()

    def param(self, key: str) -> float:
        """Value of one parameter (KeyError if absent)."""
        return dict(self.params)[key]

    @property
    def spec(self) -> str:
        """Canonical spec string; ``parse_mask_kind(kind.spec) == kind``."""
        if self.name == "noise":
            return f"noise:{_fmt(self.param('percent'))}"
        if self.name == "brush":
            return f"brush:{_fmt(self.param('lo'))}-{_fmt(self.param('hi'))}"
        return self.name


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _bad(spec: object, why: str) -> ValueError:
    return ValueError(f"invalid mask spec {spec!r}: {why}; valid forms: " + ", ".join(VALID_FORMS))


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(spec, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise _bad(spec, f"{text!r} is not finite")
    return value


def parse_mask_kind(spec: str) -> MaskKind:
    """Parse a spec such as ``center``, ``noise:20``, ``brush:10-20`` or ``lama-thick``."""
    if not isinstance(spec, str):
        raise _bad(spec, "spec must be a string")
    text = spec.strip().lower()
    if text in ("center", "centre"):
        return MaskKind("center")
    if text in LAMA_FAMILIES:
        return MaskKind(text)
    name, sep, arg = text.partition(":")
    if name == "noise" and sep:
        p = _number(arg, spec)
        if not 0 < p < 100:
            raise _bad(spec, "noise percent must be in (0, 100)")
        return MaskKind("noise", (("percent", p),))
    if name == "brush" and sep:
        lo_text, dash, hi_text = arg.partition("-")
        if not dash:
            raise _bad(spec, "brush needs a range LO-HI")
        lo, hi = _number(lo_text, spec), _number(hi_text, spec)
        if not 0 < lo < hi <= 100:
            raise _bad(spec, "brush range needs 0 < LO < HI <= 100")
        return MaskKind("brush", (("hi", hi), ("lo", lo)))
    raise _bad(spec, "unknown mask kind")


def describe(kind: MaskKind) -> dict:
    """Manifest record: ``{"mask_kind": name, "spec": ..., "params": {...}}`` (JSON-ready)."""
    params: dict[str, object] = dict(kind.params)
    if kind.name == "center":
        params["side_fraction"] = 0.5
    elif kind.name == "noise":
        params["sampling"] = "exact count, without replacement"
    elif kind.name == "brush":
        params.update(BRUSH_PARAMS)
        params["scaling"] = "widths x sqrt(H*W)/256, lengths x diagonal"
    elif kind.name in LAMA_FAMILIES:
        params.update({g: dict(p) for g, p in LAMA_FAMILIES[kind.name].items()})
        params["max_tamper_area"] = LAMA_MAX_TAMPER_AREA
        params["reference_side"] = LAMA_REFERENCE_SIDE
        params["scaling"] = "pixel sizes x sqrt(H*W)/256"
    return {"mask_kind": kind.name, "spec": kind.spec, "params": params}


def mask_rng(kind: MaskKind, height: int, width: int, seed: int) -> np.random.Generator:
    """Generator derived from (seed, canonical spec, size) only, independent of call order."""
    digest = hashlib.sha256(f"facefill-mask|{int(seed)}|{kind.spec}|{height}x{width}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def generate_mask(kind: MaskKind, height: int, width: int, seed: int) -> np.ndarray:
    """`[H, W] bool` hole mask (True = hole), a pure function of (kind, size, seed)."""
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    if kind.name == "center":
        return center_mask(height, width)
    if kind.name not in ("noise", "brush") and kind.name not in LAMA_FAMILIES:
        raise _bad(kind.name, "unknown mask kind")
    rng = mask_rng(kind, height, width, seed)
    if kind.name == "noise":
        return _noise(rng, height, width, kind.param("percent"))
    if kind.name == "brush":
        return _brush(rng, height, width, kind.param("lo"), kind.param("hi"))
    return _lama(rng, height, width, LAMA_FAMILIES[kind.name])


def center_mask(height: int, width: int) -> np.ndarray:
    """Centred rectangle of half each side: 64² at 128², 128² at 256², 512² at 1024²."""
    mask = np.zeros((height, width), dtype=bool)
    h, w = height // 2, width // 2
    top, left = (height - h) // 2, (width - w) // 2
    mask[top:top + h, left:left + w] = True
    return mask


def noise_count(height: int, width: int, percent: float) -> int:
    """Number of hole pixels of a ``noise:P`` mask: round(P/100*H*W)."""
    return round(Fraction(str(percent)) * height * width / 100)


def _noise(rng: np.random.Generator, height: int, width: int, percent: float) -> np.ndarray:
    n = height * width
    flat = np.zeros(n, dtype=bool)
    flat[rng.permutation(n)[: noise_count(height, width, percent)]] = True
    return flat.reshape(height, width)


# ---------------------------------------------------------------- brush

def brush_count_range(height: int, width: int, lo: float, hi: float) -> tuple[int, int]:
    """Inclusive hole-pixel counts ``(min, max)`` with ratio in [lo%, hi%); ValueError if none."""
    n = height * width
    lo_count = math.ceil(Fraction(str(lo)) * n / 100)
    hi_max = math.ceil(Fraction(str(hi)) * n / 100) - 1
    if lo_count > hi_max:
        raise ValueError(f"brush:{_fmt(lo)}-{_fmt(hi)} has no achievable pixel count at {height}x{width}")
    return lo_count, hi_max


def _brush_stroke(rng: np.random.Generator, height: int, width: int, shrink: float) -> np.ndarray:
    """One DeepFill-v2-style stroke: a random walk of thick segments with round joints."""
    p = BRUSH_PARAMS
    scale = math.sqrt(height * width) / p["reference_side"]
    radius = math.hypot(height, width) * p["radius_per_diagonal"] * shrink
    n_vertex = int(rng.integers(p["min_vertices"], p["max_vertices"] + 1))
    thickness = max(1, int(round(rng.uniform(p["min_width"], p["max_width"]) * scale * shrink)))
    heading = rng.uniform(0, 2 * math.pi)
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    points = [(x, y)]
    for i in range(n_vertex):
        turn = rng.uniform(p["mean_angle"] - p["angle_range"], p["mean_angle"] + p["angle_range"])
        heading += turn if i % 2 else -turn  # alternate turns: a wiggly walk, not a circle
        length = float(np.clip(rng.normal(radius, radius / 2), 0, 2 * radius))
        x = float(np.clip(x + length * math.cos(heading), 0, width - 1))
        y = float(np.clip(y + length * math.sin(heading), 0, height - 1))
        points.append((x, y))
    stroke = np.zeros((height, width), dtype=np.uint8)
    pts = [(int(round(px)), int(round(py))) for px, py in points]
    for a, b in zip(pts, pts[1:]):
        cv2.line(stroke, a, b, 1, thickness, lineType=cv2.LINE_8)
    for c in pts:
        cv2.circle(stroke, c, thickness // 2, 1, -1)
    return stroke


def _grow(rng: np.random.Generator, mask: np.ndarray, needed: int) -> None:
    """Fallback: add exactly `needed` pixels bordering the hole (in place)."""
    kernel = np.ones((3, 3), np.uint8)
    while needed > 0:
        if mask.any():
            ring = np.flatnonzero((cv2.dilate(mask, kernel) > 0) & (mask == 0))
        else:
            ring = np.array([rng.integers(mask.size)])
        take = rng.choice(ring, size=min(needed, ring.size), replace=False)
        mask.flat[take] = 1
        needed -= take.size


def _brush(rng: np.random.Generator, height: int, width: int, lo: float, hi: float) -> np.ndarray:
    """Brush strokes until the hole count reaches a target drawn uniformly in [lo%, hi%).

    A stroke that would push the count past hi is redrawn, up to
    `_ATTEMPTS_PER_WIDTH` times per size, then width and length are halved
    (`_WIDTH_HALVINGS` times). If that still fails, pixels bordering the hole
    are added one ring at a time, so the result is always in range.
    """
    lo_count, hi_max = brush_count_range(height, width, lo, hi)
    target = int(rng.integers(lo_count, hi_max + 1))
    mask = np.zeros((height, width), dtype=np.uint8)
    count = 0
    for _ in range(_MAX_STROKES):
        if count >= target:
            break
        accepted = False
        for attempt in range(_ATTEMPTS_PER_WIDTH * (_WIDTH_HALVINGS + 1)):
            shrink = 0.5 ** (attempt // _ATTEMPTS_PER_WIDTH)
            candidate = cv2.bitwise_or(mask, _brush_stroke(rng, height, width, shrink))
            new_count = int(cv2.countNonZero(candidate))
            if new_count <= hi_max:
                mask, count, accepted = candidate, new_count, True
                break
        if not accepted:
            break
    if count < target:
        _grow(rng, mask, target - count)
    return mask.astype(bool)


# ---------------------------------------------------------------- LaMa

def _lama_irregular(rng: np.random.Generator, mask: np.ndarray, scale: float, cfg: dict[str, float]) -> None:
    """LaMa-style irregular lines: `times` polylines of 1-5 straight segments (in place)."""
    height, width = mask.shape
    for i in range(int(rng.integers(cfg["min_times"], cfg["max_times"] + 1))):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(cfg["max_angle"]))  # LaMa draws integer radians
            if i % 2 == 0:
                angle = 2 * math.pi - angle
            length = (10 + int(rng.integers(cfg["max_len"]))) * scale
            thickness = max(1, int(round((5 + int(rng.integers(cfg["max_width"]))) * scale)))
            nx = int(np.clip(x + length * math.sin(angle), 0, width))  # LaMa's sin/cos convention
            ny = int(np.clip(y + length * math.cos(angle), 0, height))
            cv2.line(mask, (x, y), (nx, ny), 1, thickness)
            x, y = nx, ny


def _lama_boxes(rng: np.random.Generator, mask: np.ndarray, scale: float, cfg: dict[str, float]) -> None:
    """LaMa-style axis-aligned boxes inside a margin (in place)."""
    height, width = mask.shape
    margin = int(round(cfg["margin"] * scale))
    lo_size = max(1, int(round(cfg["bbox_min_size"] * scale)))
    hi_size = max(lo_size + 1, int(round(cfg["bbox_max_size"] * scale)))
    for _ in range(int(rng.integers(cfg["min_times"], cfg["max_times"] + 1))):
        bw = min(int(rng.integers(lo_size, hi_size)), max(1, width - 2 * margin))
        bh = min(int(rng.integers(lo_size, hi_size)), max(1, height - 2 * margin))
        left = int(rng.integers(min(margin, width - bw), max(margin, width - margin - bw) + 1))
        top = int(rng.integers(min(margin, height - bh), max(margin, height - margin - bh) + 1))
        mask[top:top + bh, left:left + bw] = 1


def _lama(rng: np.random.Generator, height: int, width: int, family: dict[str, dict[str, float]]) -> np.ndarray:
    """One LaMa-family mask, resampled while empty or above `LAMA_MAX_TAMPER_AREA`."""
    scale = math.sqrt(height * width) / LAMA_REFERENCE_SIDE
    names = list(family)
    probas = np.array([family[g]["proba"] for g in names], dtype=float)
    probas /= probas.sum()
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(100):
        mask[:] = 0
        gen = names[int(rng.choice(len(names), p=probas))]
        (_lama_irregular if gen == "irregular" else _lama_boxes)(rng, mask, scale, family[gen])
        if 0 < mask.mean() <= LAMA_MAX_TAMPER_AREA:
            break
    return mask.astype(bool)
