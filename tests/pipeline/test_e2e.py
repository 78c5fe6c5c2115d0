"""End-to-end: the CLI on real dev faces and NVIDIA masks through a local Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifests.io import write_manifest
from pipeline.cli import app
from stages.masks import fit_to_image
from tests.helpers import REPO, save_png, save_random_torchvision

pytestmark = pytest.mark.slow
PIPELINE = [sys.executable, "-m", "pipeline.cli"]


def _cli(*args: str, env_extra: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([*PIPELINE, *args], capture_output=True, text=True, cwd=REPO, env=env, **kw)


def _results(out: Path) -> pa.Table:
    return pq.read_table(out / "results")


def test_demo_flow_build_run_report(tmp_path, bench_dev):
    manifest, out = tmp_path / "m.parquet", tmp_path / "out"
    built = _cli("manifest", "build", "--images", str(bench_dev / "faces/256"), "--masks", str(bench_dev / "masks"),
                 "--pair", "random", "--seed", "0", "--out", str(manifest))
    assert built.returncode == 0, built.stderr
    checked = _cli("manifest", "check", str(manifest))
    assert checked.returncode == 0 and "0.01-0.10" in checked.stdout and "95 with ground truth" in checked.stdout
    save_random_torchvision(tmp_path / "home" / "weights", "alexnet")  # LPIPS plumbing, not ImageNet values
    ran = _cli("run", "--manifest", str(manifest), "--out", str(out), "--method", "telea", "--limit", "24",
               "--num-cpus", "2", "--lpips", "alex", env_extra={"FACEFILL_HOME": str(tmp_path / "home")})
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "done: 24 ok, 0 error" in ran.stdout and "images/s" in ran.stdout and "progress:" in ran.stderr
    results = _results(out)
    assert len(results) == 24 and set(results["status"].to_pylist()) == {"ok"}
    assert results["id"].to_pylist() == sorted(results["id"].to_pylist(), key=results["id"].to_pylist().index)
    rows = pq.read_table(manifest).slice(0, 24).to_pylist()
    for row, res in zip(rows, results.to_pylist()):
        assert res["id"] == row["id"] and 10 < res["psnr"] < 60 and 0 < res["ssim"] <= 1
        assert 0 < res["ms_ssim"] < 1 and res["lpips"] > 0
        output = np.asarray(Image.open(out / res["output"]))
        face = np.asarray(Image.open(row["image"]).convert("RGB"))
        mask, _ = fit_to_image(np.asarray(Image.open(row["mask"])) > 0, 256, 256)
        assert np.array_equal(output[~mask], face[~mask]), "known pixels must be bit-identical"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["results"] == {"rows_total": 24, "ok": 24, "error": 0}
    assert run_json["versions"]["ray"] and run_json["config"]["method"] == "telea"
    assert run_json["config"]["lpips"] == "alex"
    assert run_json["embedded_ray"] == {"num_cpus": 2, "num_gpus": 0, "object_store_bytes": 75 * 1024 ** 2,
                                        "worker_soft_limit": 7}  # 1 actor + 3 half-CPU tasks + Ray Data's 3
    # (a 48 MiB budget and its eighth are less than Ray's minimum store)
    reported = _cli("report", str(out))
    assert reported.returncode == 0, reported.stderr
    md = (out / "report" / "report.md").read_text()
    assert "| **all** | 24 | 24 | 0 | 24 |" in md and "psnr_hole" in md and "lpips" in md and "ms_ssim" in md
    report = json.loads((out / "report" / "report.json").read_text())
    assert sum(b["count"] for b in report["buckets"].values()) == 24
    assert report["overall"]["psnr"]["low"] < report["overall"]["psnr"]["mean"] < report["overall"]["psnr"]["high"]


def test_bad_rows_become_error_rows_and_good_rows_land(tmp_path, bench_dev, ray_local):
    faces = sorted((bench_dev / "faces/256").glob("*.png"))[:4]
    mask = sorted((bench_dev / "masks").glob("*.png"))[300]
    (tmp_path / "corrupt.png").write_bytes(faces[0].read_bytes()[:400])
    empty = save_png(tmp_path / "empty.png", np.zeros((256, 256), np.uint8))
    small_gt = save_png(tmp_path / "small.png", np.zeros((64, 64, 3), np.uint8))
    rows = [
        {"id": "good0", "image": str(faces[0]), "mask": str(mask), "gt": str(faces[0]), "split": "a"},
        {"id": "corrupt", "image": str(tmp_path / "corrupt.png"), "mask": str(mask), "gt": None, "split": "b"},
        {"id": "missing", "image": str(tmp_path / "nope.png"), "mask": str(mask), "gt": None, "split": "c"},
        {"id": "nohole", "image": str(faces[1]), "mask": str(empty), "gt": None, "split": "d"},
        {"id": "gtsize", "image": str(faces[2]), "mask": str(mask), "gt": str(small_gt), "split": "e"},
        {"id": "good0", "image": str(faces[3]), "mask": str(mask), "gt": None, "split": "dup"},
        {"id": "../../escape", "image": str(faces[3]), "mask": str(mask), "gt": None, "split": "f"},
    ]
    manifest = tmp_path / "m.parquet"
    write_manifest(pa.Table.from_pylist(rows), manifest)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = _results(out)
    by_id = {r["id"]: r for r in table.to_pylist()}
    assert sorted(by_id) == sorted(["good0", "corrupt", "missing", "nohole", "gtsize", "../../escape"])
    assert by_id["good0"]["status"] == "ok" and by_id["good0"]["split"] == "a"
    assert by_id["../../escape"]["status"] == "ok" and by_id["../../escape"]["psnr"] is None
    assert (out / by_id["../../escape"]["output"]).resolve().parent == (out / "images").resolve()
    assert "corrupt or truncated" in by_id["corrupt"]["error"] or "not a decodable" in by_id["corrupt"]["error"]
    assert "no such file" in by_id["missing"]["error"] and "no hole" in by_id["nohole"]["error"]
    assert "differs from image" in by_id["gtsize"]["error"]
    assert all(by_id[i]["row"] == n for n, i in [(1, "corrupt"), (2, "missing"), (3, "nohole")])
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    assert rejected == [{"row": 5, "id": "good0", "error": "duplicate id 'good0' (first used on row 0); row skipped"}]
    assert "duplicate id" in result.output and "1 rejected" in result.output
    assert sorted(p.name for p in (out / "images").iterdir() if not p.name.startswith(".")) == sorted(
        [Path(by_id["good0"]["output"]).name, Path(by_id["../../escape"]["output"]).name])

    # Rerun: finished rows are skipped, failed ones retried, every id still exactly once.
    again = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out)])
    assert again.exit_code == 0 and "2 already finished" in again.output
    table = _results(out)
    assert sorted(table["id"].to_pylist()) == sorted(by_id) and len(list((out / "results").iterdir())) == 1
    # A different configuration is refused instead of mixing results.
    other = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out), "--method", "ns"])
    assert other.exit_code == 2 and "different configuration" in other.output


def test_killed_run_resumes_exactly_once(tmp_path, bench_dev):
    manifest, out = tmp_path / "m.parquet", tmp_path / "out"
    assert _cli("manifest", "build", "--images", str(bench_dev / "faces/512"), "--masks", str(bench_dev / "masks"),
                "--pair", "random", "--seed", "1", "--out", str(manifest)).returncode == 0
    n_rows = pq.read_metadata(manifest).num_rows
    args = ["run", "--manifest", str(manifest), "--out", str(out), "--method", "ns", "--num-cpus", "2",
            "--batch-size", "4"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*PIPELINE, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    results = out / "results"
    while time.time() < deadline and not (results.is_dir() and any(results.glob("part-*.parquet"))):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its embedded Ray, mid-run
    proc.wait()
    # Whether the kill also cut an image write short is chance; one such write is planted for sure.
    (out / "images" / ".planted.png.12345.tmp").write_bytes(b"half an image")
    partial = pq.read_table(results)
    assert 0 < len(set(partial["id"].to_pylist())) < n_rows, "the kill must land mid-run"
    resumed = _cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming:" in resumed.stderr
    final = pq.read_table(results)
    ids = final["id"].to_pylist()
    assert len(ids) == len(set(ids)) == n_rows and set(final["status"].to_pylist()) == {"ok"}
    images = [p for p in (out / "images").iterdir()]
    assert len(images) == n_rows and not [p for p in images if p.name.startswith(".")]
    for path in images:  # every image complete (decodes fully)
        Image.open(path).load()


def test_bench_runs_methods_and_writes_the_comparison(tmp_path, bench_dev, ray_local):
    faces = sorted((bench_dev / "faces/256").glob("*.png"))[:6]
    masks = sorted((bench_dev / "masks").glob("*.png"))[::250][:6]
    manifest = tmp_path / "m.parquet"
    write_manifest(pa.table({"id": [f.stem for f in faces], "image": [str(f) for f in faces],
                             "mask": [str(m) for m in masks], "gt": [str(f) for f in faces]}), manifest)
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "--manifest", str(manifest), "--methods", "telea,ns", "--out",
                                      str(out), "--method-opt", "ns:radius=5", "--no-fid"])
    assert result.exit_code in (0, 1), result.output  # 1 only if ns regressed against telea
    assert len(_results(out / "telea")) == 6 and len(_results(out / "ns")) == 6
    assert json.loads((out / "ns" / "run.json").read_text())["config"]["method_options"] == {"radius": "5"}
    assert {"index.html", "compare.md"} <= {p.name for p in (out / "telea" / "report").iterdir()}
    bad = CliRunner().invoke(app, ["bench", "--manifest", str(manifest), "--methods", "telea", "--out", str(out),
                                   "--method-opt", "x:radius=1"])
    assert bad.exit_code == 2 and "METHOD:KEY=VALUE" in bad.output
