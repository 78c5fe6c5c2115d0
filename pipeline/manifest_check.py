"""`pipeline manifest check`: validate every row and count rows per mask-ratio bucket."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from manifests import schema
from manifests.buckets import BUCKETS, bucket_of
from manifests.io import read_manifest
from manifests.validate import validate_manifest
from stages.imageio import ImageError, decode_mask_values, read_bytes
from stages.masks import hole_from_values, mask_ratio, require_hole


@dataclass
class CheckReport:
    """Outcome of checking one manifest."""

    path: Path
    rows: int = 0
    with_gt: int = 0
    buckets: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # "row N (id X): what is wrong"


def _check_row(row: int, row_id: str, mask: str, image: str, gt: str | None,
               threshold: int) -> tuple[str | None, str | None]:
    """(bucket, problem) of one row; reads the mask, checks the other files exist."""
    try:
        for label, uri in (("image", image), ("gt", gt)):
            if uri and "://" not in uri and not Path(uri).exists():
                raise ImageError(f"{label} {uri}: no such file")
        hole = hole_from_values(decode_mask_values(read_bytes(mask), f"mask {mask}"), threshold)
        require_hole(hole, f"mask {mask}")
        return bucket_of(mask_ratio(hole)), None
    except (ImageError, OSError) as exc:
        return None, f"row {row} (id {row_id!r}): {exc}"


def check_manifest(path: Path, mask_threshold: int = 0, workers: int = 8) -> CheckReport:
    """Validate columns and rows, decode every mask (threads: it is I/O bound)."""
    validated = validate_manifest(read_manifest(path), base=Path(path).resolve().parent)
    report = CheckReport(path=path, rows=len(validated.table) + len(validated.rejected))
    report.problems += [f"row {r.row} (id {r.id!r}): {r.error}" for r in validated.rejected]
    table = validated.table
    gts = table[schema.GT].to_pylist()
    report.with_gt = sum(1 for g in gts if g)
    jobs = zip(table[schema.ROW].to_pylist(), table[schema.ID].to_pylist(), table[schema.MASK].to_pylist(),
               table[schema.IMAGE].to_pylist(), gts)
    with ThreadPoolExecutor(workers) as pool:
        for bucket, problem in pool.map(lambda job: _check_row(*job, mask_threshold), jobs):
            if problem:
                report.problems.append(problem)
            else:
                report.buckets[bucket] += 1
    return report


def format_check(report: CheckReport) -> str:
    """Human-readable summary: counts per bucket, then every problem."""
    lines = [f"{report.path}: {report.rows} rows, {report.with_gt} with ground truth, "
             f"{len(report.problems)} problem(s)", "", "| bucket | rows |", "|---|---:|"]
    lines += [f"| {b} | {report.buckets[b]} |" for b in BUCKETS if report.buckets[b]]
    lines.append(f"| total usable | {sum(report.buckets.values())} |")
    if report.problems:
        lines += ["", "problems:"] + [f"  {p}" for p in report.problems]
    return "\n".join(lines)
