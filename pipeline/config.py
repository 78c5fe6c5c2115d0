"""RunConfig: everything that decides what a run computes, resolved once and recorded in run.json."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.imageio import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class RunConfig:
    """A resolved `pipeline run` invocation."""

    manifest: Path  # input manifest (Parquet)
    out: Path  # output folder: images/, results/, run.json
    method: str = "telea"  # registered method name
    method_options: dict[str, Any] = field(default_factory=dict)  # the method Config's fields
    fusion: str = "paste"  # paste | poisson
    mask_threshold: int = 0  # mask pixels above this are hole
    address: str | None = None  # Ray cluster address; None starts an embedded local Ray
    num_cpus: int | None = None  # CPUs for the embedded Ray (default: all)
    actors: int | None = None  # method actors (default: sized from the cluster's resources)
    batch_size: int | None = None  # rows per method call (default: the method's)
    limit: int | None = None  # process only the first N manifest rows (trying things out)
    # A results part is written every flush_seconds (a crash loses at most that much work), or
    # sooner at flush_rows (bounds the rows the driver buffers); fast methods thus write a part per
    # few seconds, not per batch: hundreds of tiny parts cost consolidation more than their rows.
    flush_rows: int = 8192
    flush_seconds: float = 5.0
    dilate: int | None = None  # grow every hole by N px; replaces the manifest's `mask_dilate` (None: keep it)
    output_format: str = "png"  # png | jpg | webp | same (the input's format); only png is lossless
    lpips: str = "auto"  # LPIPS trunk: alex | vgg | off | auto (alex when its weights are installed)
    # Inputs declaring more pixels are error rows (decompression bombs); not hashed: it changes
    # which rows fail, never the pixels of a row that succeeds.
    max_pixels: int = DEFAULT_MAX_PIXELS

    def compute_key(self) -> dict[str, Any]:
        """The settings that change pixels or metrics; resuming requires them unchanged."""
        key = {"method": self.method, "method_options": self.method_options,
               "fusion": self.fusion, "mask_threshold": self.mask_threshold}
        # Added only when set, so folders written before these options existed still resume.
        if self.dilate is not None:
            key["dilate"] = self.dilate
        if self.output_format != "png":
            key["output_format"] = self.output_format
        if self.lpips not in ("off", "auto"):  # a resolved run with LPIPS scores rows differently
            key["lpips"] = self.lpips
        return key

    def config_hash(self) -> str:
        """Short stable hash of `compute_key`, stored with every result row."""
        blob = json.dumps(self.compute_key(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form for run.json."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
