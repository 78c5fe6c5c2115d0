"""Diverse completions by editing the inverted latent (paper §4.5, eq. 12: N = V + Coef·e).

Owns the direction sources (SeFa closed-form directions of the generator itself, or user ``.npy``
files such as InterFaceGAN boundaries), layer-range parsing, and :func:`make_variants`.

Variant scheme (K variants from k directions, strength s): variant 0 is the unedited inversion;
variant i >= 1 moves along direction ``(i-1) mod k`` with a sign that alternates from variant to
variant (+s, -s, +s, ...). When k is even the sign pattern is flipped on every second pass over the
directions, so every (direction, sign) pair is used once before any repeats; after all 2k pairs
the strength grows (2s, 3s, ...). Directions are used as given: SeFa's are unit vectors, so s is a
distance in W; user files are not renormalised (s scales them as eq. 12's Coef does).

Edited layers: all W+ layers by default, as eq. 12 edits the whole latent and as SeFa's
"all"-layer factorisation (the default here) assumes; a range such as ``"0-5"`` restricts both the
factorisation and the edit to the coarse layers (pose, shape), leaving colour and texture alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn


def parse_layers(spec: str, n_latent: int) -> list[int]:
    """``"all"``, ``"a-b"`` (inclusive) or ``"i,j,k"`` -> sorted W+ layer indices."""
    spec = spec.strip().lower()
    if spec in ("", "all"):
        return list(range(n_latent))
    out: set[int] = set()
    try:
        for part in spec.split(","):
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
    except ValueError as exc:
        raise ValueError(f"edit layers must be 'all', 'a-b' or 'i,j,...', got {spec!r}") from exc
    if not out or min(out) < 0 or max(out) >= n_latent:
        raise ValueError(f"edit layers {spec!r} must lie in [0, {n_latent - 1}]")
    return sorted(out)


def load_directions(paths: str | Sequence[str | Path], style_dim: int) -> Tensor:
    """Directions [k, style_dim] from one or more ``.npy`` files (comma-separated in a string).

    Each file holds one direction [D] (or [1, D]) or several [k, D].
    """
    if isinstance(paths, str):
        paths = [p.strip() for p in paths.split(",") if p.strip()]
    if not paths:
        raise ValueError("no direction files given")
    rows = []
    for p in paths:
        p = Path(p).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"direction file not found: {p}")
        arr = np.load(p, allow_pickle=False)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != style_dim or arr.shape[0] == 0:
            raise ValueError(f"{p}: directions must have shape [{style_dim}] or [k, {style_dim}] "
                             f"for this generator, got {list(arr.shape)}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{p}: directions contain NaN or infinity")
        rows.append(torch.from_numpy(arr.astype(np.float32)))
    return torch.cat(rows)


def resolve_directions(generator: nn.Module, source: str, k: int = 5,
                       layers: str = "all") -> Tensor:
    """``"sefa"`` -> top-k SeFa directions of ``layers``; otherwise ``.npy`` path(s)."""
    if source.strip().lower() == "sefa":
        from workers.nets.sefa import sefa_directions

        idx = parse_layers(layers, generator.n_latent)
        sefa_layers: str | list[int] = "all" if len(idx) == generator.n_latent else \
            [i for i in idx if i < len(generator.convs) + 1]
        if not sefa_layers:
            raise ValueError(f"edit layers {layers!r} contain no conv layer for SeFa")
        return sefa_directions(generator, layers=sefa_layers, k=k).float().cpu()
    return load_directions(source, generator.style_dim)


def variant_coefficients(n_variants: int, n_directions: int, strength: float
                         ) -> list[tuple[int, float]]:
    """(direction index, coef) for variants 1..K-1 following the module's scheme."""
    if n_variants < 1:
        raise ValueError(f"variants must be >= 1, got {n_variants}")
    if n_variants > 1 and n_directions < 1:
        raise ValueError("variants > 1 need at least one direction")
    out = []
    for j in range(n_variants - 1):
        k = n_directions
        flip = (j // k) % 2 if k % 2 == 0 else 0
        sign = 1.0 if (j + flip) % 2 == 0 else -1.0
        out.append((j % k, sign * strength * (1 + j // (2 * k))))
    return out


def make_variants(wplus: Tensor, directions: Tensor | None, n_variants: int, strength: float,
                  layers: Sequence[int] | None = None) -> tuple[Tensor, list[float]]:
    """K latents [K, n_latent, D] from one W+ [n_latent, D] (variant 0 unedited), and each coef."""
    if wplus.ndim != 2:
        raise ValueError(f"wplus must be [n_latent, D], got {tuple(wplus.shape)}")
    n_latent, dim = wplus.shape
    out = [wplus]
    coefs = [0.0]
    if n_variants > 1:
        if directions is None or directions.ndim != 2 or directions.shape[1] != dim:
            raise ValueError(f"directions must be [k, {dim}], got "
                             f"{None if directions is None else tuple(directions.shape)}")
        dirs = directions.to(wplus)
        sel = torch.zeros(n_latent, 1, dtype=wplus.dtype, device=wplus.device)
        sel[list(range(n_latent)) if layers is None else list(layers)] = 1
        for d, coef in variant_coefficients(n_variants, dirs.shape[0], strength):
            out.append(wplus + coef * sel * dirs[d])
            coefs.append(coef)
    return torch.stack(out), coefs
