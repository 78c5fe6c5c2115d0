"""Fusion: put generated pixels into the damaged image; known pixels always stay bit-identical.

`paste` copies the generated hole; `poisson` (Pérez et al. 2003) solves for hole pixels whose
gradients follow the generated image and whose edge matches the known pixels, so no seam shows.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from stages.batch import EMPTY_IMAGE, Batch, batch_len, has_pixels, is_ok, to_column

Fuser = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def paste_fuse(image: np.ndarray, generated: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`[H,W,3] uint8` image with the hole (`[H,W] bool`) taken from `generated`."""
    return np.where(hole[..., None], generated, image)


def _poisson() -> Fuser:
    # Imported when first used: the solver brings numba and llvmlite (+27 MiB unshared, +72 MiB
    # RSS per process), which every Ray task worker would otherwise carry on paste runs too.
    from stages.fusion.poisson import poisson_fuse
    return poisson_fuse


FUSERS: dict[str, Callable[[], Fuser]] = {"paste": lambda: paste_fuse, "poisson": _poisson}


def __getattr__(name: str) -> Any:
    """`stages.fusion.poisson_fuse`, the solver for one image, without importing it up front."""
    if name == "poisson_fuse":
        return _poisson()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fuse_batch(batch: Batch, fusion: str = "paste") -> Batch:
    """Adds `result` (`[H,W,3] uint8`) and `t_fuse`; drops the `generated` column it consumed."""
    fuser = FUSERS[fusion]()
    n = batch_len(batch)
    results, timings, statuses, errors = [], [], list(batch["status"]), list(batch["error"])
    for i in range(n):
        start = time.perf_counter()
        result = EMPTY_IMAGE
        if is_ok(batch, i):
            try:
                image, generated = batch["image"][i], batch["generated"][i]
                hole = np.asarray(batch["hole"][i]).astype(bool)
                if not has_pixels(generated) or generated.shape != image.shape:
                    raise ValueError(f"generated image shape {generated.shape} != input {image.shape}")
                result = fuser(image, generated, hole)
            except Exception as exc:
                statuses[i], errors[i] = "error", f"fuse ({fusion}): {type(exc).__name__}: {exc}"
        results.append(result)
        timings.append(time.perf_counter() - start)
    if fusion == "poisson":
        # Reused between the batch's images; not kept by an idle task worker (≤ 160 MiB a thread).
        from stages.fusion.poisson_work import release_work_arrays
        release_work_arrays()
    fused = {k: v for k, v in batch.items() if k != "generated"}
    fused.update(result=to_column(results), t_fuse=to_column(timings),
                  status=to_column(statuses), error=to_column(errors))
    return fused
