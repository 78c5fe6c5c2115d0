"""Reading and writing manifest files, with errors that say what is wrong with the file."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (not Parquet, missing columns, ...)."""


def read_manifest(path: str | Path) -> pa.Table:
    """Read a manifest Parquet file; raise ManifestError naming the file when it is not one."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest {path}: no such file")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"manifest {path}: not a readable Parquet file ({exc})") from exc


def write_manifest(table: pa.Table, path: str | Path) -> None:
    """Write atomically so a crash never leaves a half-written manifest behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
