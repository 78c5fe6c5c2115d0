"""Diversity of a run with `--variants K`: mean LPIPS between the variants of one input (seed 001,
Table 2, "higher LPIPS is better"), per mask-ratio bucket with a bootstrap 95% interval.

Per input id with at least two ok variants, the LPIPS of every unordered pair of its variants is
averaged (K(K−1)/2 pairs); a bucket's value is the mean over its ids, and the interval resamples
ids (pairs of one input are not independent, so resampling pairs would make it too narrow). Computed
from the written result files after the run, like FID: it compares results with each other, not
with a ground truth, so no ground truth is needed.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from manifests import schema
from pipeline.outputs import output_uri
from pipeline.report import Report, bootstrap_interval
from pipeline.results_store import ResultsStore
from pipeline.scoring import ScoringError, resolve_scoring
from stages.imageio import decode_image, read_bytes

METRIC = "lpips_diversity"


def variant_outputs(out: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Output uris per id with at least two ok variants, and those ids per bucket (and "all")."""
    table = ResultsStore(out / "results").read(columns=[schema.ID, schema.STATUS, schema.OUTPUT, schema.BUCKET])
    if table is None:
        return {}, {}
    by_id: dict[str, list[str]] = defaultdict(list)
    bucket_of: dict[str, str] = {}
    for row in table.to_pylist():
        if row[schema.STATUS] == schema.STATUS_OK and row[schema.OUTPUT]:
            by_id[row[schema.ID]].append(output_uri(out, row[schema.OUTPUT]))
            bucket_of[row[schema.ID]] = row[schema.BUCKET] or "unknown"
    by_id = {row_id: uris for row_id, uris in by_id.items() if len(uris) >= 2}
    ids_by_bucket: dict[str, list[str]] = defaultdict(list)
    for row_id in by_id:
        ids_by_bucket["all"].append(row_id)
        ids_by_bucket[bucket_of[row_id]].append(row_id)
    return by_id, dict(ids_by_bucket)


def per_input_diversity(outputs_by_id: dict[str, list[str]], model: Any) -> dict[str, float]:
    """Mean pairwise LPIPS of each id's variant images."""
    from stages.perceptual import lpips_distances

    values: dict[str, float] = {}
    for row_id, uris in outputs_by_id.items():
        images = [decode_image(read_bytes(uri), uri) for uri in uris]
        pairs = list(combinations(range(len(images)), 2))
        distances = lpips_distances(model, [images[i] for i, _ in pairs], [images[j] for _, j in pairs])
        values[row_id] = float(np.mean(distances))
    return values


def add_diversity(report: Report, mode: bool | None, n_bootstrap: int = 1000, seed: int = 0) -> None:
    """Adds `lpips_diversity` summaries to the report's buckets and overall. `mode` None: when the
    run has variants and LPIPS weights are installed (else a note); True: required; False: skip."""
    from stages.perceptual import cached_lpips

    if mode is False:
        return
    by_id, ids_by_bucket = variant_outputs(report.out)
    if not by_id:
        if mode:
            report.notes.append(f"{METRIC}: the run has no input with two or more ok variants (`--variants K`)")
        return
    chosen = report.run.get("config", {}).get("lpips", "auto")
    try:
        scoring = resolve_scoring(chosen if chosen in ("alex", "vgg") else "auto")
    except ScoringError:
        scoring = resolve_scoring("auto")
    if scoring.config.lpips_net is None:
        if mode:
            raise ScoringError(f"{METRIC} needs LPIPS weights: {scoring.note}")
        report.notes.append(f"{METRIC} not computed: {scoring.note}")
        return
    model = cached_lpips(scoring.config.lpips_net, str(scoring.config.lpips_backbone))
    values = per_input_diversity(by_id, model)
    for name, ids in ids_by_bucket.items():
        group = report.overall if name == "all" else report.buckets.get(name)
        if group is None:
            continue
        summary = bootstrap_interval(np.asarray([values[i] for i in ids]), n_bootstrap, np.random.default_rng(seed))
        group[METRIC] = summary.__dict__
    report.notes.append(f"{METRIC}: LPIPS {scoring.config.lpips_net}, {len(values)} input(s), "
                        f"{sum(len(u) * (len(u) - 1) // 2 for u in by_id.values())} pair(s).")

