"""Manifest validation: whole-file problems raise, per-row problems become rejected rows.

A bad row never stops a job: it is reported with its row number and the reason, and the good rows
go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
        """Manifest columns we do not interpret; they are passed through to the results."""
        known = set(schema.MANIFEST_COLUMNS) | {schema.ROW}
        return [name for name in self.table.column_names if name not in known]


def _as_strings(table: pa.Table, name: str) -> list[str | None]:
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        try:
            column = pc.cast(column, pa.string())
        except pa.ArrowInvalid as exc:
            raise ManifestError(f"column '{name}' must hold strings, has {column.type}") from exc
    return column.to_pylist()


def _resolve(uri: str | None, base: Path | None) -> str | None:
    """Relative local paths are taken relative to the manifest's folder, so manifests can travel
    with their data; absolute paths and URIs (s3://...) are kept."""
    if not uri or base is None or "://" in uri or Path(uri).is_absolute():
        return uri
    return str((base / uri).resolve())


def _dilations(table: pa.Table) -> list[int] | None:
    """The optional `mask_dilate` column as ints (missing values: 0), or None without the column."""
    if schema.MASK_DILATE not in table.column_names:
        return None
    column = table.column(schema.MASK_DILATE)
    try:
        column = pc.cast(column, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ManifestError(f"column '{schema.MASK_DILATE}' must hold whole pixel counts, has {column.type}") from exc
    return [0 if v is None else int(v) for v in column.to_pylist()]


def validate_manifest(table: pa.Table, base: Path | None = None) -> ValidatedManifest:
    """Check columns, then rows: empty fields and duplicate ids are rejected, first id wins.

    `base`: folder that relative paths are relative to (the manifest file's folder).
    """
    missing = [c for c in schema.REQUIRED_MANIFEST_COLUMNS if c not in table.column_names]
    if missing:
        raise ManifestError(
            f"manifest is missing required column(s) {', '.join(missing)}; "
            f"it has {', '.join(table.column_names) or 'no columns'} "
            f"(required: {', '.join(schema.REQUIRED_MANIFEST_COLUMNS)})"
        )
    if schema.ROW in table.column_names:
        raise ManifestError(f"column '{schema.ROW}' is reserved for the row number; rename it")
    ids = _as_strings(table, schema.ID)
    images = [_resolve(u, base) for u in _as_strings(table, schema.IMAGE)]
    masks = [_resolve(u, base) for u in _as_strings(table, schema.MASK)]
    gts = ([_resolve(u, base) for u in _as_strings(table, schema.GT)] if schema.GT in table.column_names
           else [None] * len(ids))
    dilates = _dilations(table)

    seen: dict[str, int] = {}
    keep: list[int] = []
    rejected: list[RejectedRow] = []
    for row, (row_id, image, mask) in enumerate(zip(ids, images, masks)):
        problem = None
        if not row_id:
            problem = "empty id"
        elif row_id in seen:
            problem = f"duplicate id '{row_id}' (first used on row {seen[row_id]}); row skipped"
        elif not image:
            problem = "empty 'image' path"
        elif not mask:
            problem = "empty 'mask' path"
        elif dilates is not None and dilates[row] < 0:
            problem = f"negative '{schema.MASK_DILATE}' ({dilates[row]})"
        if problem:
            rejected.append(RejectedRow(row=row, id=row_id or None, error=problem))
            continue
        seen[row_id] = row
        keep.append(row)

    kept = table.take(pa.array(keep, pa.int64()))
    for name, values in ((schema.ID, ids), (schema.IMAGE, images), (schema.MASK, masks)):
        kept = kept.set_column(
            kept.column_names.index(name), name, pa.array([values[i] for i in keep], pa.string())
        )
    gt_values = pa.array([gts[i] or None for i in keep], pa.string())
    if schema.GT in kept.column_names:
        kept = kept.set_column(kept.column_names.index(schema.GT), schema.GT, gt_values)
    else:
        kept = kept.append_column(schema.GT, gt_values)
    if dilates is not None:
        kept = kept.set_column(kept.column_names.index(schema.MASK_DILATE), schema.MASK_DILATE,
                               pa.array([dilates[i] for i in keep], pa.int64()))
    kept = kept.append_column(schema.ROW, pa.array(keep, pa.int64()))
    return ValidatedManifest(table=kept, rejected=rejected)
