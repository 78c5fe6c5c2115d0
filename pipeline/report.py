"""`pipeline report`: per mask-ratio bucket tables with bootstrap 95% intervals, as Markdown and JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from manifests import schema
from manifests.buckets import bucket_order
from pipeline.results_store import ResultsStore
from stages.metrics import PSNR_CAP_DB, SSIM_SIGMA, SSIM_WINDOW
from stages.metrics import MS_SSIM_MIN_SIDE, MS_SSIM_SIGMA, MS_SSIM_WINDOW

METRICS: dict[str, str] = {
    "psnr": f"PSNR (dB), all pixels and RGB channels, uint8 [0,255], capped at {PSNR_CAP_DB:g} dB",
    "ssim": f"SSIM, Gaussian window {SSIM_WINDOW} sigma {SSIM_SIGMA}, per RGB channel then averaged, "
            "data range 255, border half-window excluded (= scikit-image gaussian_weights=True)",
    "l1": "L1, mean absolute error over all pixels and channels, in [0,1] units (lower is better)",
    "psnr_hole": "PSNR (dB) over hole pixels only",
    "ms_ssim": f"MS-SSIM (equal to pytorch_msssim to 1e-6): 5 scales, Wang et al. 2003 weights, valid "
               f"Gaussian window {MS_SSIM_WINDOW} sigma {MS_SSIM_SIGMA}, data range 255, per RGB channel then "
               f"averaged; none for images under {MS_SSIM_MIN_SIDE} px",
    "lpips": "LPIPS v0.1 (lpips package heads), inputs RGB scaled to [-1,1] at the image's own resolution; "
             "AlexNet trunk unless the run chose `--lpips vgg` (run.json `lpips`); lower is better; "
             "none when the trunk's weights were not installed",
}


# Metrics computed over sets after the run (pipeline.fid, pipeline.diversity); shown with METRICS.
SET_METRICS: dict[str, str] = {
    "fid": "FID (torch-fidelity formulas, Inception-v3 pool3 2048-d features of the local "
           "weights-inception-2015-12-05 file, images resized to 299 by torch-fidelity): ok outputs vs the ground "
           "truths of the same rows, per bucket; 95% interval from 200 paired resamples of the images (20 for sets "
           "over 2048 images), bias-shifted to the full-set value; biased upward for small sets",
    "kid": "KID (torch-fidelity: cubic polynomial kernel, unbiased MMD², mean over subsets of min(1000, n) "
           "images); same features, pairing and interval as FID",
    "lpips_diversity": "LPIPS diversity (seed 001 Table 2): mean LPIPS over every pair of variants of one "
                       "input (runs with --variants), averaged over inputs; interval resamples inputs; higher = "
                       "more diverse",
}


class ReportError(RuntimeError):
    """No results to report on."""


@dataclass
class MetricSummary:
    """Mean and bootstrap 95% interval of one metric in one bucket."""

    n: int
    mean: float | None
    low: float | None
    high: float | None


@dataclass
class Report:
    """Everything `pipeline report` writes."""

    out: Path
    run: dict[str, Any]
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    overall: dict[str, Any] = field(default_factory=dict)
    fid: dict[str, dict[str, Any]] | None = None  # per bucket and "all", from pipeline.fid; None: not computed
    fid_note: str | None = None  # why FID is absent, or how it was computed
    notes: list[str] = field(default_factory=list)  # what later steps (e.g. diversity) add or say why not


def bootstrap_interval(values: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> MetricSummary:
    """Percentile bootstrap of the mean; one value has no interval."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return MetricSummary(0, None, None, None)
    mean = float(values.mean())
    if values.size == 1 or n_bootstrap <= 0:
        return MetricSummary(int(values.size), mean, None, None)
    means = values[rng.integers(0, values.size, size=(n_bootstrap, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return MetricSummary(int(values.size), mean, float(low), float(high))


def _group(rows: dict[str, np.ndarray], mask: np.ndarray, n_bootstrap: int, seed: int) -> dict[str, Any]:
    statuses = rows[schema.STATUS][mask]
    ok = statuses == schema.STATUS_OK
    rng = np.random.default_rng(seed)
    group: dict[str, Any] = {"count": int(mask.sum()), "ok": int(ok.sum()), "error": int((~ok).sum())}
    scored = ok & np.isfinite(rows["psnr"][mask])
    group["scored"] = int(scored.sum())
    group["no_ground_truth"] = int((ok & ~np.isfinite(rows["psnr"][mask])).sum())
    for metric in METRICS:
        group[metric] = MetricSummary(**bootstrap_interval(rows[metric][mask][ok], n_bootstrap, rng).__dict__).__dict__
    return group


def add_fid(report: Report, mode: bool | None, device: str = "auto") -> None:
    """FID/KID per bucket: `mode` True requires the Inception weights (missing → the error that
    names the fix), None computes them when the weights are present, False skips."""
    from workers.weights_files import find_weight

    from pipeline.fid import INCEPTION_WEIGHTS, FidConfig, bucket_fid_kid

    if mode is False:
        return
    if mode is None and find_weight(INCEPTION_WEIGHTS) is None:
        report.fid_note = (f"FID/KID not computed: {INCEPTION_WEIGHTS} is not installed "
                           f"(`pipeline weights fetch {INCEPTION_WEIGHTS}`, then `pipeline report --fid`).")
        return
    report.fid = bucket_fid_kid(report.out, FidConfig(device=device))
    for name, entry in report.fid.items():  # as summaries too, so plots and --compare treat them like metrics
        group = report.overall if name == "all" else report.buckets.get(name)
        if group is None or entry.get("fid") is None:
            continue
        group["fid"] = {"n": entry["n"], "mean": entry["fid"], "low": entry.get("fid_low"), "high": entry.get("fid_high")}
        group["kid"] = {"n": entry["n"], "mean": entry["kid_mean"], "low": entry.get("kid_low"),
                        "high": entry.get("kid_high")}


def build_report(out: Path, n_bootstrap: int = 1000, seed: int = 0) -> Report:
    """Read OUT/results and summarise per bucket (ascending hole size) and overall."""
    if not (out / "results").is_dir():
        raise ReportError(f"{out}: no results/ folder (run `pipeline run --out {out}` first)")
    table = ResultsStore(out / "results").read()
    if table is None or len(table) == 0:
        raise ReportError(f"{out}/results holds no rows")
    rows = {name: table[name].to_numpy(zero_copy_only=False) for name in (schema.STATUS, schema.BUCKET)}
    for metric in METRICS:  # a metric column older runs lack reads as all missing
        values = table[metric].to_pylist() if metric in table.column_names else [None] * len(table)
        rows[metric] = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    buckets = np.asarray(["(failed to load)" if b is None else b for b in rows[schema.BUCKET]], dtype=object)
    run_json = out / "run.json"
    report = Report(out=out, run=json.loads(run_json.read_text()) if run_json.exists() else {})
    for name in sorted(set(buckets), key=bucket_order):
        report.buckets[name] = _group(rows, buckets == name, n_bootstrap, seed)
    report.overall = _group(rows, np.ones(len(buckets), dtype=bool), n_bootstrap, seed)
    return report


def summary_cell(summary: dict[str, Any] | None, digits: int) -> str:
    """`mean [low, high]` of a summary; `–` when absent."""
    if not summary:
        return "–"
    return format_interval(summary.get("mean"), summary.get("low"), summary.get("high"), digits)


DIGITS = {"psnr": 2, "ssim": 4, "l1": 4, "psnr_hole": 2, "ms_ssim": 4, "lpips": 4, "fid": 2, "kid": 4,
          "lpips_diversity": 4}


def format_interval(mean: float | None, low: float | None, high: float | None, digits: int, scale: float = 1) -> str:
    if mean is None:
        return "–"
    if low is None or high is None:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


def to_markdown(report: Report) -> str:
    """The report as Markdown: one row per bucket, mean [95% CI] per metric."""
    config = report.run.get("config", {})
    lines = [f"# facefill report: {report.out}", "",
             f"method `{config.get('method', '?')}`, fusion `{config.get('fusion', '?')}`, "
             f"config hash `{report.run.get('config_hash', '?')}`, manifest `{config.get('manifest', '?')}`", "",
             "| bucket | rows | ok | error | scored | " + " | ".join(METRICS) + " |",
             "|---|---:|---:|---:|---:|" + "---|" * len(METRICS)]
    for name, group in [*report.buckets.items(), ("all", report.overall)]:
        cells = [summary_cell(group[m], DIGITS[m]) for m in METRICS]
        label = f"**{name}**" if name == "all" else name
        lines.append(f"| {label} | {group['count']} | {group['ok']} | {group['error']} | "
                     f"{group['scored']} | " + " | ".join(cells) + " |")
    if report.fid is not None:
        lines += ["", "## FID / KID (torch-fidelity, Inception-v3 pool3 2048-d, outputs vs ground truths of the "
                  "same bucket)", "", "| bucket | images | FID [95% CI] | KID ×1000 [95% CI] | note |",
                  "|---|---:|---:|---:|---|"]
        for name, entry in report.fid.items():
            if name == "no_ground_truth":
                continue
            fid = format_interval(entry["fid"], entry.get("fid_low"), entry.get("fid_high"), 2)
            kid = format_interval(entry["kid_mean"], entry.get("kid_low"), entry.get("kid_high"), 2, 1000)
            lines.append(f"| {name} | {entry['n']} | {fid} | {kid} | {entry.get('warning') or ''} |")
    if report.fid_note:
        lines += ["", report.fid_note]
    extra = [key for key, value in report.overall.items() if isinstance(value, dict) and "mean" in value
             and key not in METRICS and key not in ("fid", "kid")]
    if extra:  # summaries added after the run (e.g. lpips_diversity), with their intervals
        lines += ["", "## Other metrics", "", "| bucket | " + " | ".join(extra) + " |", "|---|" + "---|" * len(extra)]
        for name, group in [*report.buckets.items(), ("all", report.overall)]:
            lines.append(f"| {name} | " + " | ".join(summary_cell(group.get(k), DIGITS.get(k, 4)) for k in extra) + " |")
    lines += [f"\n{note}" for note in report.notes]
    if report.overall["no_ground_truth"]:
        lines += ["", f"{report.overall['no_ground_truth']} ok row(s) have no ground truth: they are "
                  "counted but get no full-reference metrics (not zeros)."]
    lines += ["", "Cells: mean [95% percentile-bootstrap interval of the mean]. Metrics on uint8 RGB:"]
    lines += [f"- `{name}`: {text}" for name, text in {**METRICS, **SET_METRICS}.items()]
    return "\n".join(lines) + "\n"


def write_report(report: Report, folder: Path) -> str:
    """Write report.md and report.json into `folder`; return the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(report)
    (folder / "report.md").write_text(markdown)
    payload = {"out": str(report.out), "run": report.run, "metric_definitions": {**METRICS, **SET_METRICS},
               "buckets": report.buckets, "overall": report.overall, "fid": report.fid,
               "fid_note": report.fid_note, "notes": report.notes}
    (folder / "report.json").write_text(json.dumps(payload, indent=2, default=str))
    return markdown
