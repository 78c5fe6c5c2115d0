"""Variant diversity (seed 001 Table 2): mean pairwise LPIPS between the variants of one input."""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifests import schema
from pipeline.cli import app
from pipeline.diversity import METRIC, add_diversity
from pipeline.report import build_report
from pipeline.results_store import ResultsStore
from stages.perceptual import cached_lpips, lpips_distances
from tests.helpers import save_png, save_random_torchvision


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return save_random_torchvision(tmp_path / "home" / "weights", "alexnet")


def _run_with_variants(out: Path, faces: list[Path]) -> dict[str, list[np.ndarray]]:
    """ids a (3 different variants) and b (2 identical variants) in one bucket, c (one variant) in
    another, plus a failed variant of a that must be ignored."""
    rng = np.random.default_rng(0)
    face = np.asarray(Image.open(faces[0]).convert("RGB"))
    variants = {"a": [np.clip(face.astype(int) + rng.integers(-60, 60, face.shape), 0, 255).astype(np.uint8)
                      for _ in range(3)], "b": [face, face.copy()], "c": [face]}
    rows = []
    for row, (row_id, images) in enumerate(variants.items()):
        for v, image in enumerate(images):
            save_png(out / "images" / f"{row_id}.v{v}.png", image)
            rows.append({"id": row_id, "variant": v, "row": row, "status": "ok", "output": f"images/{row_id}.v{v}.png",
                         "bucket": "0.10-0.20" if row_id != "c" else "0.20-0.30", "method": "m", "config_hash": "h"})
    rows.append({"id": "a", "variant": 3, "row": 0, "status": "error", "error": "boom", "output": None,
                 "bucket": "0.10-0.20", "method": "m", "config_hash": "h"})
    ResultsStore(out / "results").append(pa.Table.from_pylist(rows, schema=schema.RESULT_SCHEMA))
    (out / "run.json").write_text(json.dumps({"config": {"method": "m", "lpips": "alex"}}))
    return variants


def test_diversity_is_the_mean_pairwise_lpips_per_input(tmp_path, weights, faces256):
    out = tmp_path / "out"
    variants = _run_with_variants(out, faces256)
    report = build_report(out, n_bootstrap=200)
    add_diversity(report, None, n_bootstrap=200)
    model = cached_lpips("alex", str(weights))
    pairs = list(combinations(variants["a"], 2))
    expected_a = float(np.mean(lpips_distances(model, [p for p, _ in pairs], [q for _, q in pairs])))
    bucket = report.buckets["0.10-0.20"][METRIC]
    assert bucket["n"] == 2 and bucket["mean"] == pytest.approx(expected_a / 2, rel=1e-5)  # b's variants: 0
    assert bucket["low"] <= bucket["mean"] <= bucket["high"]
    assert METRIC not in report.buckets["0.20-0.30"]  # c has a single variant
    assert report.overall[METRIC]["n"] == 2 and "4 pair(s)" in report.notes[0]


def test_diversity_reaches_the_report_files_and_is_skipped_without_variants(tmp_path, weights, faces256):
    out = tmp_path / "out"
    _run_with_variants(out, faces256)
    result = CliRunner().invoke(app, ["report", str(out), "--no-fid", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert "## Other metrics" in result.output and METRIC in result.output
    saved = json.loads((out / "report" / "report.json").read_text())
    assert saved["overall"][METRIC]["mean"] > 0
    required = CliRunner().invoke(app, ["report", str(out), "--no-fid", "--diversity", "--bootstrap", "10"],
                                  env={"FACEFILL_HOME": str(tmp_path / "nothing"), "TORCH_HOME": str(tmp_path / "t")})
    assert required.exit_code != 0 and "alexnet-owt-7be5be79.pth" in required.output
