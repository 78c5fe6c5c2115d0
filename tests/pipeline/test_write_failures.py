"""Output storage that refuses writes: an unwritable OUT is refused before any work, a disk that
fills up mid-run stops the run with a message naming the folder and the cause, leaves no truncated
image and no corrupt results part, and a rerun after making room finishes every id exactly once."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifests.io import write_manifest
from pipeline import results_store
from pipeline.cli import app
from pipeline.outputs import atomic_target, remove_interrupted_writes, storage_failure, write_batch, write_error
from pipeline.results_store import write_parquet_atomic
from stages.batch import to_column
from tests.helpers import save_png
from tests.pipeline.fault_checks import assert_complete_run, build_manifest


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mounts a tmpfs (`mount -t tmpfs -o OPTIONS`) at a fresh folder; needs root, else skips."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _tiny_manifest(tmp_path: Path) -> Path:
    image = save_png(tmp_path / "in/a.png", np.full((32, 32, 3), 120, np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    manifest = tmp_path / "m.parquet"
    write_manifest(pa.table({"id": ["a"], "image": [str(image)], "mask": [str(save_png(tmp_path / "in/m.png", mask))]}),
                   manifest)
    return manifest


def test_write_errors_name_the_file_and_flag_full_storage(tmp_path):
    full = write_error(tmp_path / "x.png", OSError(errno.ENOSPC, "No space left on device"))
    assert full == f"write {tmp_path / 'x.png'}: no space left on device"
    assert storage_failure(full) == "no space left on device"
    assert storage_failure(write_error(tmp_path / "x.png", OSError(errno.EROFS, "x"))) == "read-only file system"
    other = write_error(tmp_path / "x.png", OSError(errno.ENAMETOOLONG, "File name too long"))
    assert other.endswith(": File name too long") and storage_failure(other) is None
    assert storage_failure("load image: no space left on device") is None and storage_failure(None) is None


def test_write_stage_turns_a_full_disk_into_an_error_row(tmp_path, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pipeline.outputs.write_atomic", full)
    batch = {"id": to_column(["a"]), "variant": to_column([0]), "status": to_column(["ok"]),
             "error": to_column([None]), "result": to_column([np.zeros((4, 4, 3), np.uint8)])}
    out = write_batch(batch, str(tmp_path))
    assert list(out["status"]) == ["error"] and out["output"][0] is None
    assert storage_failure(out["error"][0]) == "no space left on device" and "a.png" in out["error"][0]


def test_a_failed_results_part_leaves_no_file(tmp_path, monkeypatch):
    def write_half(table, where):
        Path(where).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results_store.pq, "write_table", write_half)
    with pytest.raises(OSError):
        write_parquet_atomic(pa.table({"id": ["a"]}), tmp_path / "part-00001-00000.parquet")
    assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    manifest = _tiny_manifest(tmp_path)
    (tmp_path / "taken").write_text("a file where the output folder should be")
    for out in (tmp_path / "taken", tmp_path / "taken/out"):
        result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert f"output folder {out} is not writable" in result.output


def test_read_only_out_is_refused_before_any_work(tmp_path, mount_tmpfs):
    manifest = _tiny_manifest(tmp_path)
    out = mount_tmpfs("ro,size=1m") / "out"
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out)])
    assert result.exit_code == 2 and f"output folder {out} is not writable: Read-only file system" in result.output


@pytest.mark.slow
def test_disk_full_mid_run_stops_cleanly_then_resumes(tmp_path, bench_dev, ray_local, mount_tmpfs):
    disk = mount_tmpfs("size=400k")  # room for a few of the ~90 KB result PNGs
    manifest, _ = build_manifest(tmp_path, bench_dev, rows=12)
    out = disk / "out"
    args = ["run", "--manifest", str(manifest), "--out", str(out), "--batch-size", "2"]
    stopped = CliRunner().invoke(app, args)
    assert stopped.exit_code == 2, stopped.output
    assert f"cannot write to {out / 'images'}: no space left on device" in stopped.output
    assert "rerun the same command to resume" in stopped.output
    # Nothing half-written: no temp files, every image whole, results parts readable.
    images = list((out / "images").iterdir())
    assert 0 < len(images) < 12 and not [p for p in images if p.name.startswith(".")]
    for path in images:
        with Image.open(path) as image:
            image.load()
    parts = list((out / "results").iterdir())
    assert all(p.name.startswith("part-") for p in parts)
    if parts:
        kept = pq.read_table(out / "results")
        assert len(set(kept["id"].to_pylist())) == len(kept)
    # Room made: the same command finishes the job, each id exactly once.
    assert subprocess.run(["mount", "-o", "remount,size=16m", str(disk)]).returncode == 0
    resumed = CliRunner().invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert_complete_run(out, manifest)


def test_null_strings_that_ray_hands_as_nan_float32_stay_null(tmp_path):
    """Joining an all-ok block with one holding write errors, Ray Data gave the ok rows' `error` as
    NaN float32; the driver used to crash on it exactly when a disk filled up."""
    from manifests import schema
    from pipeline.config import RunConfig
    from pipeline.run import _result_table
    from pipeline.todo import ManifestExtras, Todo

    n = 2
    batch = {name: np.full(n, np.nan) for name in schema.RESULT_COLUMNS}
    batch.update(id=to_column(["a", "b"]), variant=np.zeros(n, np.int64), row=np.arange(n),
                 status=to_column(["ok", "error"]), bucket=to_column(["0.01-0.10"] * n),
                 error=to_column([np.float32("nan"), "write x.png: no space left on device"]),
                 warning=to_column([np.float32("nan")] * n), output=to_column(["images/a.png", None]))
    no_extras = ManifestExtras(Todo(spill=tmp_path / "spill", rows=2))
    table = _result_table(batch, RunConfig(manifest=tmp_path / "m", out=tmp_path), no_extras)
    assert table["error"].to_pylist() == [None, "write x.png: no space left on device"]
    assert table["warning"].to_pylist() == [None, None]


def test_a_killed_writes_temp_file_is_removed_and_whole_files_stay(tmp_path):
    """What a SIGKILL between writing and renaming leaves behind (atomic_target's temp file) goes;
    finished images and other dot files (the run lock) stay."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "done.png").write_bytes(b"whole")
    (tmp_path / ".lock").write_bytes(b"")
    killed = atomic_target(images / "cut.png")  # entered, never left: what a SIGKILL mid-write leaves
    killed.__enter__().write_bytes(b"half")
    assert remove_interrupted_writes(images) == 1
    assert [p.name for p in images.iterdir()] == ["done.png"]
    assert remove_interrupted_writes(tmp_path) == 0 and (tmp_path / ".lock").exists()
    del killed
