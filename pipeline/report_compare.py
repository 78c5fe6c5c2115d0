"""Compare several runs' reports bucket by bucket and flag regressions against a baseline run.

Owns the regression rule, so nightly jobs and the HTML report agree on what "worse" means: a run
regresses on (bucket, metric) when it is worse than the baseline in the metric's direction AND the two
95% bootstrap intervals do not overlap. A bucket where either side has no interval (fewer than two
scored rows) is never flagged: there is no evidence either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manifests.buckets import bucket_order
from pipeline.report import DIGITS, METRICS, Report, summary_cell

# Metrics where a smaller value is better; every other metric is higher-is-better.
LOWER_IS_BETTER: frozenset[str] = frozenset({"l1", "fid", "kid", "kid_mean", "lpips"})
ALL = "all"


@dataclass(frozen=True)
class Regression:
    """One run worse than the baseline on one bucket and metric, intervals disjoint."""

    bucket: str
    metric: str
    run_index: int
    run_label: str
    baseline_label: str
    baseline_mean: float
    baseline_low: float
    baseline_high: float
    run_mean: float
    run_low: float
    run_high: float

    @property
    def delta(self) -> float:
        """Run mean minus baseline mean (sign as measured, not as 'better')."""
        return self.run_mean - self.baseline_mean

    def describe(self) -> str:
        """One human line, e.g. for a Markdown list or a job log."""
        digits = DIGITS.get(self.metric, 4)
        return (f"{self.run_label}: `{self.metric}` in bucket {self.bucket} is "
                f"{self.run_mean:.{digits}f} [{self.run_low:.{digits}f}, {self.run_high:.{digits}f}] vs baseline "
                f"{self.baseline_label} {self.baseline_mean:.{digits}f} "
                f"[{self.baseline_low:.{digits}f}, {self.baseline_high:.{digits}f}] "
                f"(Δ {self.delta:+.{digits}f}, {'lower' if self.metric in LOWER_IS_BETTER else 'higher'} is better)")


def run_label(report: Report) -> str:
    """`method (folder)`: how a run is named in tables, legends and regressions."""
    method = report.run.get("config", {}).get("method", "?")
    return f"{method} ({report.out.name})"


def run_labels(reports: list[Report]) -> list[str]:
    """Labels for all runs, made unique with `#index` where two runs would read the same."""
    labels = [run_label(r) for r in reports]
    return [f"{label} #{i}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def metric_names(reports: list[Report]) -> list[str]:
    """Metrics to compare: METRICS first, then any other summary (e.g. lpips) present in every run."""
    names = list(METRICS)
    for report in reports:
        for key, value in report.overall.items():
            if isinstance(value, dict) and "mean" in value and key not in names:
                names.append(key)
    return names


def groups(report: Report) -> dict[str, dict[str, Any]]:
    """The report's buckets in order, then `all`."""
    return {**report.buckets, ALL: report.overall}


def bucket_names(reports: list[Report]) -> list[str]:
    """Union of the runs' buckets, ascending hole size, then `all`."""
    names = {name for r in reports for name in r.buckets}
    return [*sorted(names, key=bucket_order), ALL]


def is_regression(metric: str, base: dict[str, Any], run: dict[str, Any]) -> bool:
    """True when `run` is worse than `base` and their 95% intervals are disjoint."""
    if any(side.get(k) is None for side in (base, run) for k in ("mean", "low", "high")):
        return False
    if metric in LOWER_IS_BETTER:
        return run["mean"] > base["mean"] and run["low"] > base["high"]
    return run["mean"] < base["mean"] and run["high"] < base["low"]


def compare(reports: list[Report], baseline_index: int = 0) -> list[Regression]:
    """Every (bucket, metric, run) where a run regresses against `reports[baseline_index]`."""
    if not 0 <= baseline_index < len(reports):
        raise IndexError(f"baseline_index {baseline_index} out of range for {len(reports)} report(s)")
    labels = run_labels(reports)
    base_groups = groups(reports[baseline_index])
    found: list[Regression] = []
    for bucket in bucket_names(reports):
        base_group = base_groups.get(bucket)
        if base_group is None:
            continue
        for metric in metric_names(reports):
            base = base_group.get(metric)
            for index, report in enumerate(reports):
                run = groups(report).get(bucket, {}).get(metric)
                if index == baseline_index or not isinstance(base, dict) or not isinstance(run, dict):
                    continue
                if is_regression(metric, base, run):
                    found.append(Regression(bucket, metric, index, labels[index], labels[baseline_index],
                                            base["mean"], base["low"], base["high"],
                                            run["mean"], run["low"], run["high"]))
    return found


def _md(text: str) -> str:
    """Keep a label from breaking a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown_compare(reports: list[Report], regressions: list[Regression], baseline_index: int = 0) -> str:
    """Side-by-side table (bucket rows, one column group per run) and the list of regressions.

    Regressed cells carry a trailing ▼."""
    labels = run_labels(reports)
    metrics = metric_names(reports)
    flagged = {(r.run_index, r.bucket, r.metric) for r in regressions}
    lines = ["# facefill comparison", "", f"Baseline: {_md(labels[baseline_index])}", ""]
    lines += [f"- run {i}: {_md(label)}, folder `{_md(str(r.out))}`, config hash "
              f"`{_md(str(r.run.get('config_hash', '?')))}`" for i, (label, r) in enumerate(zip(labels, reports))]
    header = ["bucket"] + [f"{_md(label)}: {m}" for label in labels for m in metrics]
    lines += ["", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for bucket in bucket_names(reports):
        cells = [f"**{bucket}**" if bucket == ALL else bucket]
        for index, report in enumerate(reports):
            group = groups(report).get(bucket, {})
            for metric in metrics:
                cell = summary_cell(group.get(metric), DIGITS.get(metric, 4))
                cells.append(cell + (" ▼" if (index, bucket, metric) in flagged else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Cells: mean [95% percentile-bootstrap interval]. ▼: regression, i.e. worse than the baseline "
              "with disjoint intervals.", "", "## Regressions", ""]
    lines += [f"- {_md(r.describe())}" for r in regressions] or ["None."]
    return "\n".join(lines) + "\n"


def exit_code(regressions: list[Regression]) -> int:
    """Process exit status for nightly jobs: 1 when anything regressed, else 0."""
    return 1 if regressions else 0
