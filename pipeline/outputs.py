"""The write stage: encode each result (PNG by default) and write it atomically under OUT/images/.

Pixels stop here: the rows that go on to the driver carry only paths, metrics and timings.
"""
from __future__ import annotations

import errno
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from manifests.ids import output_stem
from stages.batch import Batch, batch_len, is_ok, to_column
from stages.imageio import OUTPUT_FORMATS, encode_image, resolve_format

PIXEL_COLUMNS = ("image", "hole", "gt", "generated", "result")
CONSUMED_COLUMNS = (*PIXEL_COLUMNS, "image_ext")  # dropped here: they never reach the results


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temp name in `path`'s folder to write to; fsynced and renamed onto `path` on success,
    removed on failure (e.g. a full disk), so a reader sees the whole file or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_interrupted_writes(folder: Path) -> int:
    """Delete the temp files of writes a killed run never finished (`atomic_target`'s names), so a
    resumed run leaves only whole files, and scratch folders by the same naming (a consolidation's
    spilled keys); only under the run's lock, when no writer can be alive."""
    removed = 0
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_target`)."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def output_uri(out: Path, output: str) -> str:
    """A results row's `output` as a readable location: paths are relative to OUT (so a run folder
    can move); absolute paths and URIs are kept."""
    return output if ("://" in output or Path(output).is_absolute()) else str(out / output)


def image_path(images_dir: Path, row_id: str, variant: int, fmt: str = "png") -> Path:
    """Where the result image of (id, variant) goes; ids are sanitised so they cannot escape."""
    return images_dir / f"{output_stem(row_id, variant)}{OUTPUT_FORMATS[fmt][0]}"


IMAGES_SUBDIR = "images"

# Write errors that mean the output storage itself is unusable: every later write would fail too,
# so the driver stops the run on the first one (pipeline/run.py) instead of turning the rest of the
# job into error rows. Other write errors stay per-row.
STORAGE_FAILURES = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                    errno.EROFS: "read-only file system"}


def storage_reason(exc: OSError) -> str:
    """Why a write failed, in the words STORAGE_FAILURES uses for unusable storage."""
    return STORAGE_FAILURES.get(exc.errno) or exc.strerror or str(exc)


def write_error(target: Path, exc: OSError) -> str:
    """The `error` of a row whose image could not be written; names the file and the cause."""
    return f"write {target}: {storage_reason(exc)}"


def storage_failure(error: str | None) -> str | None:
    """The storage failure (e.g. "no space left on device") a row's `error` reports, if any."""
    if not error or not error.startswith("write "):
        return None
    return next((reason for reason in STORAGE_FAILURES.values() if error.endswith(f": {reason}")), None)


def write_batch(batch: Batch, out_dir: str, output_format: str = "png") -> Batch:
    """Writes result images, adds `output` (path relative to OUT) and `t_write`, drops pixel columns.

    `output_format`: png | jpg | webp | same (the input file's format, PNG for others).

    Relative paths keep an output folder valid after it is moved or copied.
    """
    root = Path(out_dir)
    folder = root / IMAGES_SUBDIR
    n = batch_len(batch)
    statuses, errors = list(batch["status"]), list(batch["error"])
    paths, timings = [], []
    for i in range(n):
        start = time.perf_counter()
        path = None
        if is_ok(batch, i):
            suffix = str(batch["image_ext"][i]) if "image_ext" in batch else None
            fmt = resolve_format(output_format, suffix)
            target = image_path(folder, str(batch["id"][i]), int(batch["variant"][i]), fmt)
            try:
                write_atomic(target, encode_image(batch["result"][i], fmt))
                path = str(target.relative_to(root))
            except OSError as exc:
                statuses[i], errors[i] = "error", write_error(target, exc)
        paths.append(path)
        timings.append(time.perf_counter() - start)
    out = {k: v for k, v in batch.items() if k not in CONSUMED_COLUMNS}
    out.update(output=to_column(paths), t_write=to_column(timings),
               status=to_column(statuses), error=to_column(errors))
    return out
