"""`index.html` for one or more runs: bucket tables, metric-vs-hole-size plots, sample grid, definitions.

Owns the self-contained HTML view of `pipeline.report.Report`s, so a run (or a nightly comparison of
methods) can be looked at in a browser with nothing installed: CSS and SVG plots are inline, and the
sample thumbnails are PNGs under `folder/samples/`, referenced relatively so the folder can be copied
or served as is. Everything that comes from a manifest, results or run.json (ids, paths, method names,
config values) is passed through `html.escape`: manifests are user input.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from manifests import schema
from pipeline.report import DIGITS, METRICS, SET_METRICS, Report, format_interval
from pipeline.report_compare import (LOWER_IS_BETTER, bucket_names, compare, groups, metric_names,
                                     run_labels)
from pipeline.results_store import ResultsStore
from stages.imageio import decode_image, decode_mask_values, read_bytes

THUMB = 160  # longest side of a sample thumbnail, px
HOLE_GREY = np.array([225, 225, 225], dtype=np.uint8)  # how the hole is drawn on the masked input
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;
 padding:0 16px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
tr.all td{font-weight:600;background:#fafafa}.ci{color:#777;font-size:11px}
.plots{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;border:1px solid #eee;padding:8px}
figcaption{font-size:12px}.swatch{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;
 vertical-align:middle}
.grid th{text-align:center}
.grid td{vertical-align:top;text-align:center;white-space:normal;font-size:11px;max-width:180px;
 word-break:break-all}.grid img{display:block;margin:auto;image-rendering:auto}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}.muted{color:#777}
dl dt{font-family:monospace;font-weight:600}dl dd{margin:0 0 8px 16px}
.reg{color:#b00;font-weight:600}
"""


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# ---- tables -----------------------------------------------------------------------------------

def _table(report: Report, metrics: list[str]) -> str:
    """Per-bucket table: counts, then mean and 95% interval of every metric."""
    head = "".join(f"<th>{_e(m)}{' ↓' if m in LOWER_IS_BETTER else ' ↑'}</th>" for m in metrics)
    rows = [f"<tr><th>bucket</th><th>rows</th><th>ok</th><th>error</th><th>scored</th>{head}</tr>"]
    for name, group in groups(report).items():
        cells = []
        for metric in metrics:
            s = group.get(metric) or {}
            digits = DIGITS.get(metric, 4)
            interval = ("" if s.get("low") is None else
                        f"<br><span class='ci'>[{_fmt(s['low'], digits)}, {_fmt(s['high'], digits)}]</span>")
            cells.append(f"<td>{_fmt(s.get('mean'), digits)}{interval}</td>")
        cls = " class='all'" if name == "all" else ""
        rows.append(f"<tr{cls}><td>{_e(name)}</td><td>{group['count']}</td><td>{group['ok']}</td>"
                    f"<td>{group['error']}</td><td>{group['scored']}</td>{''.join(cells)}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _fid_table(report: Report) -> str:
    if not report.fid:
        return f"<p class='muted'>{_e(report.fid_note)}</p>" if report.fid_note else ""
    rows = ["<tr><th>bucket</th><th>images</th><th>FID [95% CI]</th><th>KID ×1000 [95% CI]</th><th>note</th></tr>"]
    for name, entry in report.fid.items():
        if name == "no_ground_truth":
            continue
        fid = format_interval(entry.get("fid"), entry.get("fid_low"), entry.get("fid_high"), 2)
        kid = format_interval(entry.get("kid_mean"), entry.get("kid_low"), entry.get("kid_high"), 2, 1000)
        rows.append(f"<tr><td>{_e(name)}</td><td>{_e(entry.get('n'))}</td><td>{fid}</td>"
                    f"<td>{kid}</td><td>{_e(entry.get('warning') or '')}</td></tr>")
    return "<h3>FID / KID</h3><table>" + "".join(rows) + "</table>"


# ---- plots ------------------------------------------------------------------------------------

def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def plot_svg(metric: str, reports: list[Report], labels: list[str], buckets: list[str]) -> str:
    """Inline SVG: mean with 95% whiskers against bucket, one coloured line per run."""
    width, height, left, right, top, bottom = 540, 280, 64, 16, 24, 56
    series = [[(i, (r.buckets.get(b) or {}).get(metric) or {}) for i, b in enumerate(buckets)] for r in reports]
    values = [v for s in series for _, p in s for v in (p.get("mean"), p.get("low"), p.get("high"))
              if v is not None and math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1e-3)
    lo, hi = lo - pad, hi + pad
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(buckets), 1)

    def x(i: int, run: int) -> float:
        return left + step * (i + 0.5) + (run - (len(reports) - 1) / 2) * min(8.0, step / (len(reports) + 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='{_e(metric)} by bucket'>",
             f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='#fff' stroke='#ccc'/>"]
    digits = DIGITS.get(metric, 4)
    for t in _ticks(lo, hi):
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{y(t):.1f}' y2='{y(t):.1f}' stroke='#eee'/>"
                     f"<text x='{left - 6}' y='{y(t) + 4:.1f}' font-size='11' text-anchor='end'>"
                     f"{t:.{max(digits - 1, 0) if abs(t) >= 1 else digits}f}</text>")
    for i, name in enumerate(buckets):
        parts.append(f"<text x='{left + step * (i + 0.5):.1f}' y='{top + plot_h + 16}' font-size='11' "
                     f"text-anchor='middle'>{_e(name)}</text>")
    parts.append(f"<text x='{left + plot_w / 2}' y='{height - 10}' font-size='12' text-anchor='middle'>"
                 "mask-ratio bucket (share of hole pixels)</text>")
    arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
    parts.append(f"<text x='14' y='{top + plot_h / 2}' font-size='12' text-anchor='middle' "
                 f"transform='rotate(-90 14 {top + plot_h / 2})'>{_e(metric)} ({arrow})</text>")
    for run, (s, label) in enumerate(zip(series, labels)):
        color = COLORS[run % len(COLORS)]
        points = [(x(i, run), y(p["mean"]), p) for i, p in s if p.get("mean") is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
            parts.append(f"<polyline points='{path}' fill='none' stroke='{color}' stroke-width='1.5'/>")
        for px, py, p in points:
            tip = f"{label}: {p['mean']:.{digits}f}"
            if p.get("low") is not None:
                ya, yb = y(p["low"]), y(p["high"])
                parts.append(f"<line x1='{px:.1f}' x2='{px:.1f}' y1='{ya:.1f}' y2='{yb:.1f}' stroke='{color}'/>")
                parts += [f"<line x1='{px - 3:.1f}' x2='{px + 3:.1f}' y1='{v:.1f}' y2='{v:.1f}' stroke='{color}'/>"
                          for v in (ya, yb)]
                tip += f" [{p['low']:.{digits}f}, {p['high']:.{digits}f}] n={p.get('n')}"
            parts.append(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='3.5' fill='{color}'><title>{_e(tip)}</title>"
                         "</circle>")
    parts.append("</svg>")
    legend = "".join(f"<span class='swatch' style='background:{COLORS[i % len(COLORS)]}'></span>{_e(label)}"
                     for i, label in enumerate(labels))
    return f"<figure>{''.join(parts)}<figcaption><b>{_e(metric)}</b> {legend}</figcaption></figure>"


# ---- samples ----------------------------------------------------------------------------------

def _resolve(uri: str, base: Path | None) -> str:
    """A manifest path as given, or relative to the manifest's folder when that is where it exists."""
    if "://" in uri or Path(uri).is_absolute() or Path(uri).exists() or base is None:
        return uri
    return str(base / uri) if (base / uri).exists() else uri


def _thumb(image: np.ndarray, path: Path) -> None:
    """Save `[H,W,3] uint8` as a PNG no larger than THUMB on its longest side."""
    picture = Image.fromarray(image)
    picture.thumbnail((THUMB, THUMB), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def masked_input(image: np.ndarray, mask_values: np.ndarray) -> np.ndarray:
    """The input with its hole (mask > 0) painted light grey; the mask is resized nearest if needed."""
    hole = mask_values > 0
    if hole.shape != image.shape[:2]:
        resized = Image.fromarray(hole.astype(np.uint8) * 255).resize(image.shape[1::-1], Image.NEAREST)
        hole = np.asarray(resized) > 0
    shown = image.copy()
    shown[hole] = HOLE_GREY
    return shown


def _manifest_lookup(report: Report) -> tuple[dict[str, dict[str, Any]], Path | None]:
    """id → manifest row, from run.json's config.manifest (empty when it cannot be read)."""
    manifest = report.run.get("config", {}).get("manifest")
    if not manifest or not Path(manifest).exists():
        return {}, None
    rows = pq.read_table(manifest).to_pylist()
    return {str(r.get(schema.ID)): r for r in rows}, Path(manifest).parent


def _cell_image(kind: str, load: Any, path: Path, folder: Path) -> str:
    """`<td>` with a thumbnail made by `load()`, or the reason it could not be made."""
    try:
        image = load()
        if image is None:
            return f"<td class='muted'>no {kind}</td>"
        _thumb(image, path)
    except Exception as exc:  # a missing or broken file must not break the whole report
        return f"<td class='muted'>{_e(kind)} unavailable: {_e(exc)}</td>"
    rel = path.relative_to(folder).as_posix()
    return f"<td><img src='{_e(rel)}' alt='{_e(kind)}' loading='lazy'></td>"


def sample_grid(reports: list[Report], labels: list[str], folder: Path, per_bucket: int) -> str:
    """Per bucket of the first run, up to `per_bucket` ok rows: masked input | result(s) | ground truth.

    Other runs' results for the same id and variant are shown next to the first run's."""
    if not reports or per_bucket <= 0:
        return ""
    first = reports[0]
    tables = [ResultsStore(r.out / "results").read() for r in reports]
    if tables[0] is None:
        return ""
    outputs = [{(str(row[schema.ID]), row[schema.VARIANT]): row.get(schema.OUTPUT)
                for row in (t.to_pylist() if t is not None else [])} for t in tables]
    manifest, base = _manifest_lookup(first)
    picked: dict[str, list[dict[str, Any]]] = {}
    for row in tables[0].to_pylist():
        if row[schema.STATUS] == schema.STATUS_OK and row.get(schema.OUTPUT):
            bucket = picked.setdefault(row.get(schema.BUCKET) or "?", [])
            if len(bucket) < per_bucket:
                bucket.append(row)
    head = "".join(f"<th>result: {_e(label)}</th>" for label in labels)
    rows = [f"<tr><th>bucket / id</th><th>masked input</th>{head}<th>ground truth</th></tr>"]
    for b_index, bucket in enumerate(b for b in bucket_names([first]) if b in picked):
        for k, row in enumerate(picked[bucket]):
            key = (str(row[schema.ID]), row[schema.VARIANT])
            source = {**manifest.get(key[0], {}), **{c: row[c] for c in (schema.IMAGE, schema.MASK, schema.GT)
                                                      if row.get(c)}}
            stem = folder / "samples" / f"b{b_index}_s{k}"

            def load_masked(src: dict[str, Any] = source) -> np.ndarray | None:
                if not src.get(schema.IMAGE) or not src.get(schema.MASK):
                    return None
                image = decode_image(read_bytes(_resolve(str(src[schema.IMAGE]), base)))
                return masked_input(image, decode_mask_values(read_bytes(_resolve(str(src[schema.MASK]), base))))

            def load_gt(src: dict[str, Any] = source) -> np.ndarray | None:
                gt = src.get(schema.GT)
                return decode_image(read_bytes(_resolve(str(gt), base))) if gt else None

            cells = [f"<td>{_e(bucket)}<br>{_e(key[0])}"
                     f"{'' if not key[1] else f' (variant {_e(key[1])})'}</td>",
                     _cell_image("input", load_masked, stem.with_name(stem.name + "_input.png"), folder)]
            for r_index, report in enumerate(reports):
                out_rel = outputs[r_index].get(key)
                load = (lambda p=report.out / str(out_rel): decode_image(read_bytes(str(p)))) if out_rel else (
                    lambda: None)
                cells.append(_cell_image("result", load, stem.with_name(f"{stem.name}_r{r_index}.png"), folder))
            cells.append(_cell_image("ground truth", load_gt, stem.with_name(stem.name + "_gt.png"), folder))
            rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table class='grid'>" + "".join(rows) + "</table>"


# ---- page -------------------------------------------------------------------------------------

def _run_summary(report: Report, label: str, index: int) -> str:
    config = report.run.get("config", {})
    color = COLORS[index % len(COLORS)]
    return (f"<li><span class='swatch' style='background:{color}'></span><b>{_e(label)}</b> — folder "
            f"<code>{_e(report.out)}</code>, fusion <code>{_e(config.get('fusion', '?'))}</code>, config hash "
            f"<code>{_e(report.run.get('config_hash', '?'))}</code>, manifest "
            f"<code>{_e(config.get('manifest', '?'))}</code>, rows {report.overall.get('count', 0)} "
            f"(ok {report.overall.get('ok', 0)}, error {report.overall.get('error', 0)})</li>")


def render_html(reports: list[Report], folder: Path, samples_per_bucket: int = 3) -> str:
    """The page as a string; writes the sample thumbnails under `folder/samples/` as a side effect."""
    if not reports:
        raise ValueError("no reports to render")
    labels = run_labels(reports)
    metrics = metric_names(reports)
    buckets = [b for b in bucket_names(reports) if b != "all"]
    regressions = compare(reports) if len(reports) > 1 else []
    body = [f"<h1>facefill report</h1><p class='muted'>{len(reports)} run(s); cells are mean and 95% "
            "percentile-bootstrap interval of the mean; ↑ higher is better, ↓ lower is better.</p>",
            "<h2>Runs</h2><ul>" + "".join(_run_summary(r, lab, i) for i, (r, lab) in
                                          enumerate(zip(reports, labels))) + "</ul>"]
    if len(reports) > 1:
        items = "".join(f"<li class='reg'>{_e(r.describe())}</li>" for r in regressions)
        body.append(f"<h2>Regressions against {_e(labels[0])}</h2>"
                    + (f"<ul>{items}</ul>" if items else "<p>None (no worse run with a disjoint interval).</p>"))
    body.append("<h2>Metrics by hole size</h2><div class='plots'>"
                + "".join(plot_svg(m, reports, labels, buckets) for m in metrics) + "</div>")
    for report, label in zip(reports, labels):
        body.append(f"<h2>Per-bucket table: {_e(label)}</h2>" + _table(report, metrics) + _fid_table(report))
        if report.overall.get("no_ground_truth"):
            body.append(f"<p class='muted'>{report.overall['no_ground_truth']} ok row(s) have no ground truth: "
                        "counted, but no full-reference metrics.</p>")
    grid = sample_grid(reports, labels, folder, samples_per_bucket)
    if grid:
        body.append(f"<h2>Samples ({_e(labels[0])}, up to {samples_per_bucket} per bucket)</h2>"
                    "<p class='muted'>Hole drawn light grey on the input.</p>" + grid)
    body.append("<h2>Metric definitions</h2><dl>" + "".join(
        f"<dt>{_e(name)}</dt><dd>{_e(text)}</dd>" for name, text in {**METRICS, **SET_METRICS}.items()) + "</dl>")
    body.append("<h2>Run configs and versions (run.json)</h2>" + "".join(
        f"<details><summary>{_e(label)}</summary><pre>{_e(json.dumps(r.run, indent=2, default=str))}</pre>"
        "</details>" for r, label in zip(reports, labels)))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>facefill report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_html(reports: list[Report], folder: Path, samples_per_bucket: int = 3) -> Path:
    """Write `folder/index.html` (and `folder/samples/*.png`); return the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    page = render_html(reports, folder, samples_per_bucket)
    path = folder / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
