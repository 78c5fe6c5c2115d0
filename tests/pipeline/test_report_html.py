"""HTML report and run comparison on hand-built run folders (real faces and masks from bench-dev)."""
from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from manifests import schema
from pipeline.report import METRICS, build_report
from pipeline.report_compare import compare, exit_code, to_markdown_compare
from pipeline.report_html import render_html, write_html
from pipeline.results_store import ResultsStore
from tests.helpers import BENCH, save_png

EVIL_ID = "<script>alert(1)</script>"
EVIL_OPTION = 'a"b<c'
EVIL_METHOD = 'm"<svg onload=1>'
CHROMIUM = Path("/usr/bin/chromium")


def _inputs() -> list[tuple[Path, Path]]:
    """Six (face, mask) pairs: three masks from each of the two smallest-hole buckets present."""
    if not (BENCH / "faces" / "256").is_dir() or not (BENCH / "masks.csv").exists():
        pytest.skip("../shared/bench-dev faces/masks are not beside the repository")
    faces = sorted((BENCH / "faces" / "256").glob("*.png"))[:6]
    by_bucket: dict[str, list[str]] = {}
    with open(BENCH / "masks.csv") as handle:
        for row in csv.DictReader(handle):
            by_bucket.setdefault(row["bucket"], []).append(row["file"])
    masks = [BENCH / "masks" / name for b in ("0.01-0.10", "0.10-0.20") for name in by_bucket.get(b, [])[:3]]
    if len(faces) < 6 or len(masks) < 6:
        pytest.skip("bench-dev has too few faces or masks")
    return list(zip(faces, masks))


def _make_run(out: Path, method: str, options: dict, psnr_mean: float, manifest: Path) -> Path:
    """A run folder `build_report` accepts: images/, results/ parts, run.json pointing at `manifest`."""
    rows = pq.read_table(manifest).to_pylist()
    rng = np.random.default_rng(0)  # same noise for every run: equal psnr_mean → identical means
    results = []
    for index, row in enumerate(rows):
        gt = np.asarray(Image.open(row[schema.GT]).convert("RGB"))
        hole = np.asarray(Image.open(row[schema.MASK]).convert("L").resize(gt.shape[1::-1], Image.NEAREST)) > 0
        result = gt.copy()
        result[hole] = (result[hole] // 2 + 64) if psnr_mean < 25 else result[hole]
        rel = f"images/{index:04d}.png"
        save_png(out / rel, result)
        ratio = float(hole.mean())
        jitter = float(rng.normal(0, 0.3))
        results.append({
            schema.ID: row[schema.ID], schema.VARIANT: 0, schema.ROW: index, schema.STATUS: schema.STATUS_OK,
            schema.ERROR: None, schema.WARNING: None, schema.OUTPUT: rel, schema.MASK_RATIO: ratio,
            schema.BUCKET: "0.01-0.10" if index < 3 else "0.10-0.20",
            "psnr": psnr_mean + jitter, "ssim": 0.9 + jitter / 100, "l1": 0.02 - jitter / 1000,
            "psnr_hole": psnr_mean - 8 + jitter, "t_load": 0.01, "t_inpaint": 0.1, "t_fuse": 0.0,
            "t_score": 0.0, "t_write": 0.0, schema.METHOD: method, schema.CONFIG_HASH: "abc123"})
    results.append({**results[0], schema.ID: "broken", schema.ROW: len(rows), schema.STATUS: schema.STATUS_ERROR,
                    schema.ERROR: "decode failed", schema.OUTPUT: None, "psnr": None, "ssim": None, "l1": None,
                    "psnr_hole": None})
    ResultsStore(out / "results").append(pa.Table.from_pylist(results, schema=schema.RESULT_SCHEMA))
    run = {"config": {"manifest": str(manifest), "out": str(out), "method": method, "method_options": options,
                      "fusion": "paste"},
           "config_hash": "abc123", "versions": {"python": "3.11", "numpy": np.__version__}}
    (out / "run.json").write_text(json.dumps(run))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    pairs = _inputs()
    ids = [EVIL_ID] + [f"face-{i}" for i in range(1, len(pairs))]
    manifest = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist([{schema.ID: i, schema.IMAGE: str(f), schema.MASK: str(m),
                                          schema.GT: str(f)} for i, (f, m) in zip(ids, pairs)]), manifest)
    return {"a": _make_run(root / "run_a", "telea", {"prompt": EVIL_OPTION}, 30.0, manifest),
            "b": _make_run(root / "run_b", EVIL_METHOD, {}, 20.0, manifest),
            "c": _make_run(root / "run_c", "navier_stokes", {}, 30.0, manifest)}


@pytest.fixture(scope="module")
def page(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    reports = [build_report(runs[k], n_bootstrap=200) for k in ("a", "b", "c")]
    path = write_html(reports, tmp_path_factory.mktemp("html"), samples_per_bucket=2)
    return path, path.read_text()


def test_index_has_tables_plots_definitions(page: tuple[Path, str]) -> None:
    path, text = page
    assert path.name == "index.html" and path.exists()
    assert text.count("<svg") == len(METRICS)
    for metric, definition in METRICS.items():
        assert f"{metric} (" in text  # axis label per plot
        assert html.escape(definition) in text
    assert text.count("Per-bucket table") == 3 and "0.10-0.20" in text
    assert "run_a" in text and "telea" in text and "navier_stokes" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained


def test_sample_grid_images_exist_and_are_referenced(page: tuple[Path, str]) -> None:
    path, text = page
    sources = re.findall(r"<img src='([^']+)'", text)
    # 2 buckets × 2 samples × (input + 3 results + gt)
    assert len(sources) == 2 * 2 * 5
    for src in sources:
        assert src.startswith("samples/") and (path.parent / src).is_file()
        with Image.open(path.parent / src) as image:
            assert max(image.size) <= 160
    masked = np.asarray(Image.open(path.parent / sources[0]).convert("RGB"))
    assert (np.abs(masked.astype(int) - 225).max(axis=2) <= 2).any()  # the hole is drawn grey


def test_everything_from_inputs_is_escaped(page: tuple[Path, str]) -> None:
    _, text = page
    assert EVIL_ID not in text and "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert EVIL_OPTION not in text and "b<c" not in text
    assert "a\\&quot;b&lt;c" in text  # the JSON-dumped option value, escaped
    assert EVIL_METHOD not in text and "<svg onload" not in text
    assert "m&quot;&lt;svg onload=1&gt;" in text


def test_compare_flags_clear_regression_not_tie(runs: dict[str, Path]) -> None:
    reports = [build_report(runs[k], n_bootstrap=200) for k in ("a", "b", "c")]
    regressions = compare(reports)
    assert regressions and {r.run_index for r in regressions} == {1}
    flagged = {(r.bucket, r.metric) for r in regressions}
    assert ("all", "psnr") in flagged and ("0.01-0.10", "psnr") in flagged and ("all", "psnr_hole") in flagged
    assert all(r.run_mean < r.baseline_mean for r in regressions if r.metric == "psnr")
    assert exit_code(regressions) == 1
    assert exit_code(compare([reports[0], reports[2]])) == 0  # identical numbers: a tie
    assert compare([reports[1], reports[0]]) == []  # better than the baseline is no regression
    markdown = to_markdown_compare(reports, regressions)
    assert "## Regressions" in markdown and "▼" in markdown and markdown.count("\n| ") >= 4
    assert "None." in to_markdown_compare([reports[0], reports[2]], [])


def test_lower_is_better_direction(runs: dict[str, Path]) -> None:
    a = build_report(runs["a"], n_bootstrap=200)
    worse = build_report(runs["a"], n_bootstrap=200)
    for group in [*worse.buckets.values(), worse.overall]:
        group["l1"] = {k: (v + 1 if isinstance(v, float) else v) for k, v in group["l1"].items()}
        group["psnr"] = {k: (v + 5 if isinstance(v, float) else v) for k, v in group["psnr"].items()}
    flagged = {(r.bucket, r.metric) for r in compare([a, worse])}
    assert ("all", "l1") in flagged and not any(m == "psnr" for _, m in flagged)


def test_renders_in_headless_chromium(page: tuple[Path, str], tmp_path: Path) -> None:
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed")
    path, _ = page
    shot = tmp_path / "shot.png"
    command = [str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")), "--headless", "--no-sandbox",
               "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
               f"--screenshot={shot}", "--window-size=1280,2000", path.resolve().as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 20_000
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280) and pixels.std() > 10  # not a blank page


def test_fid_table_is_rendered_and_escaped(runs: dict[str, Path], tmp_path: Path) -> None:
    report = build_report(runs["a"], n_bootstrap=50)
    report.fid = {"all": {"n": 6, "fid": 12.345, "fid_low": 11.0, "fid_high": 13.5, "kid_mean": 0.01,
                          "kid_std": 0.002, "kid_low": 0.008, "kid_high": 0.012, "warning": "<few>"},
                  "no_ground_truth": {"n": 0}}
    text = render_html([report], tmp_path, samples_per_bucket=0)
    assert "FID / KID" in text and "12.35 [11.00, 13.50]" in text and "10.00 [8.00, 12.00]" in text
    assert "&lt;few&gt;" in text and "<few>" not in text and "<img" not in text


def test_report_cli_html_and_compare_exit_codes(runs: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    base = runs["a"]
    same = CliRunner().invoke(app, ["report", str(base), "--compare", str(runs["c"]), "--html", "--no-fid",
                                    "--bootstrap", "200"])
    assert same.exit_code == 0, same.output
    assert {"report.md", "report.json", "index.html", "compare.md"} <= {p.name for p in (base / "report").iterdir()}
    worse = CliRunner().invoke(app, ["report", str(base), "--compare", str(runs["b"]), "--no-fid",
                                     "--bootstrap", "200"])
    assert worse.exit_code == 1 and "## Regressions" in worse.output and "psnr" in worse.output
