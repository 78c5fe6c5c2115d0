"""Manifest validation: whole-file problems raise, per-row problems become rejected rows.

A bad row never stops a job: it is reported with its row number and the reason, and the good rows
go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from manifests import schema
from manifests.io import ManifestError


@dataclass(frozen=True)
class RejectedRow:
    """A manifest row that cannot be processed, and why."""

    row: int  # 0-based row number in the manifest file
    id: str | None  # the row's id, if it has one
    error: str  # what is wrong, for the user


@dataclass(frozen=True)
class ValidatedManifest:
    """The usable rows (with a `row` column added) and the rejected ones."""

    table: pa.Table
    rejected: list[RejectedRow]

    @property
    def extra_columns(self) -> list[str]:
        return extra_columns(self.table.column_names)


def extra_columns(names: list[str]) -> list[str]:
    """Manifest columns we do not interpret; they are passed through to the results."""
    known = set(schema.MANIFEST_COLUMNS) | {schema.ROW}
    return [name for name in names if name not in known]


def _as_strings(table: pa.Table, name: str) -> pa.ChunkedArray:
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        try:
            column = pc.cast(column, pa.string())
        except pa.ArrowInvalid as exc:
            raise ManifestError(f"column '{name}' must hold strings, has {column.type}") from exc
    return column


def _resolve(uri: str | None, base: Path | None) -> str | None:
    """Relative local paths are taken relative to the manifest's folder, so manifests can travel
    with their data; absolute paths and URIs (s3://...) are kept."""
    if not uri or base is None or "://" in uri or Path(uri).is_absolute():
        return uri
    return str((base / uri).resolve())


def _resolved(column: pa.ChunkedArray, base: Path | None) -> pa.ChunkedArray:
    """`_resolve` over a column; only the relative paths go through Python, a chunk at a time."""
    if base is None:
        return column
    chunks = []
    for chunk in column.chunks:
        relative = pc.and_(pc.invert(pc.starts_with(chunk, "/")), pc.invert(pc.match_substring(chunk, "://")))
        relative = pc.and_(relative, pc.greater(pc.utf8_length(chunk), 0))
        if not pc.any(relative).as_py():
            chunks.append(chunk)
            continue
        values = chunk.to_pylist()  # one chunk of Python strings at a time
        flags = relative.to_pylist()
        chunks.append(pa.array([_resolve(v, base) if f else v for v, f in zip(values, flags)], pa.string()))
    return pa.chunked_array(chunks, pa.string())


def _dilations(table: pa.Table) -> pa.ChunkedArray | None:
    """The optional `mask_dilate` column as int64 (missing values: 0), or None without the column."""
    if schema.MASK_DILATE not in table.column_names:
        return None
    column = table.column(schema.MASK_DILATE)
    try:
        column = pc.cast(column, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ManifestError(f"column '{schema.MASK_DILATE}' must hold whole pixel counts, has {column.type}") from exc
    return pc.fill_null(column, 0)


def _empty(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.fill_null(pc.equal(pc.utf8_length(column), 0), True)


def check_columns(names: list[str]) -> None:
    """Whole-manifest column problems (a missing required column, the reserved `row`) raise."""
    missing = [c for c in schema.REQUIRED_MANIFEST_COLUMNS if c not in names]
    if missing:
        raise ManifestError(
            f"manifest is missing required column(s) {', '.join(missing)}; "
            f"it has {', '.join(names) or 'no columns'} "
            f"(required: {', '.join(schema.REQUIRED_MANIFEST_COLUMNS)})"
        )
    if schema.ROW in names:
        raise ManifestError(f"column '{schema.ROW}' is reserved for the row number; rename it")


@dataclass(frozen=True)
class IdCheck:
    """The verdict on every row's id, from the manifest's id column alone: duplicates are the one
    problem that needs the whole manifest, so the other columns can then be checked a chunk at a time."""

    bad: np.ndarray  # bool per manifest row: empty id, or an id an earlier row already used
    rejected: list[RejectedRow]  # those rows, in row order, with the reason


def check_ids(id_column: pa.ChunkedArray | pa.Array) -> IdCheck:
    """Empty ids and repeated ids (the first row of an id wins) of a whole manifest.

    By a stable sort of the ids, not a hash aggregation: equal ids end up adjacent with the first
    row first, and the sort needs a few bytes per row where Arrow's group-by left the driver ~50 MiB
    larger for 200,000 ids (its hash tables' memory stays with the allocator)."""
    ids = _as_strings(pa.table({schema.ID: id_column}), schema.ID)
    n = len(ids)
    no_id = _empty(ids).to_numpy(zero_copy_only=False)
    order = pc.sort_indices(ids).to_numpy()  # stable: equal ids keep their row order
    ordered = ids.take(pa.array(order))
    same_as_previous = pc.fill_null(pc.equal(ordered.slice(1), ordered.slice(0, max(0, n - 1))), False)
    repeat = np.concatenate([[False], same_as_previous.to_numpy(zero_copy_only=False)]) if n else np.zeros(0, bool)
    duplicate = np.zeros(n, bool)
    duplicate[order] = repeat
    duplicate &= ~no_id
    # The first row of each id's run in sorted order, for the duplicates' messages.
    run_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(n))) if n else np.zeros(0, np.int64)
    first_row_of = np.empty(n, np.int64)
    first_row_of[order] = order[run_start]
    bad = no_id | duplicate
    bad_rows = np.flatnonzero(bad)
    rejected = [RejectedRow(row=row, id=row_id or None,
                            error=(f"duplicate id '{row_id}' (first used on row {first_row_of[row]}); row skipped"
                                   if row_id else "empty id"))
                for row, row_id in zip(bad_rows.tolist(), ids.take(pa.array(bad_rows)).to_pylist())]
    return IdCheck(bad=bad, rejected=rejected)


def validate_rows(table: pa.Table, first_row: int, id_bad: np.ndarray, base: Path | None = None) -> ValidatedManifest:
    """Check and normalise the manifest rows `first_row ...` in `table` (a chunk of the manifest);
    `id_bad` is `IdCheck.bad` for these rows. Rows with a bad id are dropped here (`IdCheck` holds
    their rejections); empty paths and negative dilations are rejected with their row number.

    The caller has checked the manifest's columns (`check_columns`). Columnar (Arrow compute):
    only rejected rows and relative paths are visited in Python.
    """
    n = len(table)
    ids = _as_strings(table, schema.ID)
    images, masks = _as_strings(table, schema.IMAGE), _as_strings(table, schema.MASK)
    gts = _as_strings(table, schema.GT) if schema.GT in table.column_names else pa.chunked_array(
        [pa.nulls(n, pa.string())])
    dilates = _dilations(table)
    rows = pa.array(np.arange(first_row, first_row + n, dtype=np.int64))

    problems = [_empty(images), _empty(masks)]
    if dilates is not None:
        problems.append(pc.less(dilates, 0))
    row_bad = problems[0]
    for flag in problems[1:]:
        row_bad = pc.or_(row_bad, flag)
    row_bad = row_bad.to_numpy(zero_copy_only=False) & ~id_bad
    rejected: list[RejectedRow] = []
    bad_rows = np.flatnonzero(row_bad)
    if len(bad_rows):
        picked = pa.array(bad_rows)
        for index, row_id, image, mask, dilate in zip(
                bad_rows.tolist(), ids.take(picked).to_pylist(), images.take(picked).to_pylist(),
                masks.take(picked).to_pylist(),
                dilates.take(picked).to_pylist() if dilates is not None else [0] * len(bad_rows)):
            if not image:
                problem = "empty 'image' path"
            elif not mask:
                problem = "empty 'mask' path"
            else:
                problem = f"negative '{schema.MASK_DILATE}' ({dilate})"
            rejected.append(RejectedRow(row=first_row + index, id=row_id, error=problem))

    keep = pa.array(~(row_bad | id_bad))
    kept = table.filter(keep)
    columns = {schema.ID: ids.filter(keep), schema.IMAGE: _resolved(images.filter(keep), base),
               schema.MASK: _resolved(masks.filter(keep), base)}
    gt_kept = _resolved(gts.filter(keep), base)
    gt_kept = pc.if_else(_empty(gt_kept), pa.scalar(None, pa.string()), gt_kept)
    for name, values in columns.items():
        kept = kept.set_column(kept.column_names.index(name), name, values)
    if schema.GT in kept.column_names:
        kept = kept.set_column(kept.column_names.index(schema.GT), schema.GT, gt_kept)
    else:
        kept = kept.append_column(schema.GT, gt_kept)
    if dilates is not None:
        kept = kept.set_column(kept.column_names.index(schema.MASK_DILATE), schema.MASK_DILATE, dilates.filter(keep))
    kept = kept.append_column(schema.ROW, rows.filter(keep))
    return ValidatedManifest(table=kept, rejected=rejected)


def validate_manifest(table: pa.Table, base: Path | None = None) -> ValidatedManifest:
    """Check columns, then rows: empty fields and duplicate ids are rejected, first id wins.

    `base`: folder that relative paths are relative to (the manifest file's folder). For a whole
    table in memory; `pipeline run` streams the same checks over the file (`check_ids` on the id
    column, then `validate_rows` a chunk at a time).
    """
    check_columns(table.column_names)
    ids = check_ids(table.column(schema.ID))
    validated = validate_rows(table, 0, ids.bad, base)
    return ValidatedManifest(validated.table, sorted(ids.rejected + validated.rejected, key=lambda r: r.row))
