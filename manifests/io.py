"""Reading and writing manifest files, with errors that say what is wrong with the file."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (not Parquet, missing columns, ...)."""


def read_manifest(path: str | Path) -> pa.Table:
    """Read a manifest Parquet file; raise ManifestError naming the file when it is not one."""
    path = Path(path)
    with _readable(path):
        return pq.read_table(path)


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    if not path.exists():
        raise ManifestError(f"manifest {path}: no such file")
    try:
        yield
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"manifest {path}: not a readable Parquet file ({exc})") from exc


def manifest_columns(path: str | Path) -> list[str]:
    """The manifest's column names, from its footer."""
    path = Path(path)
    with _readable(path):
        return pq.ParquetFile(path).schema_arrow.names


def read_manifest_column(path: str | Path, name: str, limit: int | None = None) -> pa.ChunkedArray:
    """One column of the first `limit` rows (all without a limit), without reading the others."""
    path = Path(path)
    with _readable(path):
        column = pq.read_table(path, columns=[name])[name]
    return column if limit is None else column.slice(0, limit)


def iter_manifest(path: str | Path, chunk_rows: int, limit: int | None = None) -> Iterator[pa.Table]:
    """The manifest's first `limit` rows (all without a limit) as tables of at most `chunk_rows`
    rows, in order, so a long manifest is never in memory at once."""
    path = Path(path)
    remaining = limit
    with _readable(path):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            if remaining is not None:
                if remaining <= 0:
                    return
                batch = batch.slice(0, remaining)
                remaining -= len(batch)
            yield pa.Table.from_batches([batch])


def write_manifest(table: pa.Table, path: str | Path) -> None:
    """Write atomically so a crash never leaves a half-written manifest behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
