"""The rows a run still has to do, streamed from the manifest into a spill file the graph reads.

Memory must not grow with the manifest: the driver reads the id column alone (duplicates and
finished ids need the whole manifest), then validates the other columns a chunk at a time and
writes the rows to do to `OUT/.todo.parquet` in row groups of a fixed size. Ray read tasks take
their blocks from that file (`pipeline.todo_source`), and the driver takes the manifest's extra
columns for its result rows from it a row group at a time (`ManifestExtras`). The file is a
snapshot of the work, so editing the manifest during a run changes nothing; it lives in OUT
because every node can already read OUT.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema
from manifests.io import iter_manifest, manifest_columns, read_manifest_column
from manifests.validate import RejectedRow, check_columns, check_ids, extra_columns, validate_rows
from pipeline.outputs import atomic_target

SPILL_NAME = ".todo.parquet"
GROUP_ROWS = 1024  # rows per spill row group: a read task decodes at most a group beyond its block
CHUNK_ROWS = 65536  # manifest rows validated at a time on the driver
SAMPLE_IMAGES = 8  # first image URIs kept to size batches (pipeline.resources.sample_pixels)


@dataclass(frozen=True)
class TodoOptions:
    """How `pipeline run` narrows and adjusts the manifest."""

    limit: int | None = None  # only the first N manifest rows
    dilate: int | None = None  # replaces every row's mask_dilate


@dataclass
class Todo:
    """What is left to do, and what the manifest held besides."""

    spill: Path
    rows: int = 0  # rows in the spill file, i.e. to do
    skipped: int = 0  # valid rows whose id an earlier run already finished
    rejected: list[RejectedRow] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the spill file's columns (none when nothing is to do)
    sample_images: list[str] = field(default_factory=list)
    group_first_rows: list[int] = field(default_factory=list)  # manifest row of each group's first row

    @property
    def extra_columns(self) -> list[str]:
        """Columns passed through to the results: the manifest's own extras, and `mask_dilate`
        when the run sets it (`--dilate`)."""
        return extra_columns(self.columns)


def prepare_todo(manifest: Path, spill: Path, finished: pa.Array, options: TodoOptions = TodoOptions()) -> Todo:
    """Validate `manifest` (relative paths relative to its folder) and write its valid rows whose
    id is not in `finished` to `spill`; raise ManifestError for whole-file problems."""
    check_columns(manifest_columns(manifest))
    ids = read_manifest_column(manifest, schema.ID, options.limit)
    id_check = check_ids(ids)
    done = (pc.is_in(pc.cast(ids, pa.string()), finished).to_numpy(zero_copy_only=False)
            if len(finished) else None)
    del ids
    todo = Todo(spill=spill)
    rejected = list(id_check.rejected)
    with atomic_target(spill) as tmp, _GroupWriter(tmp) as writer:
        start = 0
        for chunk in iter_manifest(manifest, CHUNK_ROWS, options.limit):
            stop = start + len(chunk)
            valid = validate_rows(chunk, start, id_check.bad[start:stop], base=manifest.parent)
            rejected += valid.rejected
            table = valid.table
            if done is not None:
                finished_here = pa.array(done[table[schema.ROW].to_numpy()])
                todo.skipped += pc.sum(finished_here).as_py() or 0
                table = table.filter(pc.invert(finished_here))
            if options.dilate is not None:
                table = _with_dilation(table, options.dilate)
            if len(todo.sample_images) < SAMPLE_IMAGES:
                todo.sample_images += table[schema.IMAGE].slice(0, SAMPLE_IMAGES).to_pylist()
                del todo.sample_images[SAMPLE_IMAGES:]
            writer.write(table)
            start = stop
    todo.rows, todo.columns, todo.group_first_rows = writer.rows, writer.columns, writer.group_first_rows
    todo.rejected = sorted(rejected, key=lambda r: r.row)
    return todo


def _with_dilation(table: pa.Table, pixels: int) -> pa.Table:
    """`run --dilate N` replaces every row's `mask_dilate` (the results record the value used)."""
    column = pa.array(np.full(len(table), pixels, np.int64))
    if schema.MASK_DILATE in table.column_names:
        return table.set_column(table.column_names.index(schema.MASK_DILATE), schema.MASK_DILATE, column)
    return table.append_column(schema.MASK_DILATE, column)


class _GroupWriter:
    """Parquet rows in row groups of exactly GROUP_ROWS (the last one shorter), whatever the sizes
    of the tables written, so a reader finds row k in group k // GROUP_ROWS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.columns: list[str] = []
        self.group_first_rows: list[int] = []
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def __enter__(self) -> "_GroupWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self._write_groups(final=True)
            if self._writer is None:  # nothing to do: still a valid (empty) file
                pq.write_table(pa.table({schema.ROW: pa.array([], pa.int64())}), self.path)
        if self._writer is not None:
            self._writer.close()

    def write(self, table: pa.Table) -> None:
        if not len(table):
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
            self.columns = table.schema.names
        self._pending.append(table.cast(self._writer.schema))
        self._pending_rows += len(table)
        self._write_groups(final=False)

    def _write_groups(self, final: bool) -> None:
        if not self._pending_rows or (self._pending_rows < GROUP_ROWS and not final):
            return
        pending = pa.concat_tables(self._pending)
        whole = len(pending) if final else len(pending) // GROUP_ROWS * GROUP_ROWS
        groups = pending.slice(0, whole)
        self._writer.write_table(groups, row_group_size=GROUP_ROWS)
        self.group_first_rows += groups[schema.ROW].take(pa.array(range(0, whole, GROUP_ROWS))).to_pylist()
        self.rows += whole
        rest = pending.slice(whole)
        self._pending, self._pending_rows = ([rest] if len(rest) else []), len(rest)


def read_rows(spill: str, start: int, stop: int, columns: Sequence[str] | None = None) -> pa.Table:
    """Rows `start ... stop - 1` of a spill file, decoding only the row groups that hold them."""
    first, last = start // GROUP_ROWS, (stop - 1) // GROUP_ROWS
    table = pq.ParquetFile(spill).read_row_groups(range(first, last + 1), columns=columns)
    return table.slice(start - first * GROUP_ROWS, stop - start)


class ManifestExtras:
    """The manifest's extra columns for result rows, found by manifest row number in the spill file
    and read a row group at a time (results arrive roughly in manifest order, so a few cached groups
    serve almost every batch): the driver never holds the whole manifest."""

    CACHED_GROUPS = 16

    def __init__(self, todo: Todo) -> None:
        self.columns = todo.extra_columns
        self._spill = pq.ParquetFile(todo.spill) if self.columns and todo.rows else None
        self._group_first_rows = np.asarray(todo.group_first_rows, np.int64)
        self._groups: OrderedDict[int, pa.Table] = OrderedDict()

    def _group(self, index: int) -> pa.Table:
        if index not in self._groups:
            self._groups[index] = self._spill.read_row_group(index, columns=[schema.ROW, *self.columns])
            if len(self._groups) > self.CACHED_GROUPS:
                self._groups.popitem(last=False)
        self._groups.move_to_end(index)
        return self._groups[index]

    def take(self, rows: Sequence[int]) -> pa.Table:
        """The extra columns of these manifest rows (each must be in the spill), in this order."""
        if not self.columns:
            return pa.table({})
        rows = np.asarray(rows, np.int64)
        groups = np.searchsorted(self._group_first_rows, rows, side="right") - 1
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])  # runs of rows in one group
        pieces = []
        for begin, end in zip(starts, [*starts[1:], len(rows)]):
            group = self._group(int(groups[begin]))
            offsets = np.searchsorted(group[schema.ROW].to_numpy(), rows[begin:end])
            pieces.append(group.select(self.columns).take(pa.array(offsets)))
        return pa.concat_tables(pieces)
