"""The results folder: Parquet parts appended during a run, consolidated to one row per key at the end.

Exactly-once across interruptions: parts are written atomically (temp name, then rename); readers take
the newest row of each id; a finished run rewrites everything as one consolidated part that lists the
parts it supersedes in its metadata, and a later start deletes any superseded part a crash left
behind. So after any sequence of interrupted runs and one that finishes, each id appears once.
"""
from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema
from pipeline.outputs import atomic_target, remove_interrupted_writes

_PART = re.compile(r"^part-(\d{5})-(\d{5})\.parquet$")
_SUPERSEDES = b"facefill.supersedes"


def write_parquet_atomic(table: pa.Table, path: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write `table` to `path` atomically (see `pipeline.outputs.atomic_target`)."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_target(path) as tmp:
        pq.write_table(table, tmp)


KEYS = (schema.ID, schema.ROW, schema.VARIANT)
ORDER = [(schema.ROW, "ascending"), (schema.VARIANT, "ascending"), (schema.ID, "ascending")]
CONSOLIDATE_CHUNK_ROWS = 16384  # rows gathered and written at a time: bounds consolidation's memory
# Consolidation holds the keys (id, row, variant, part, index: ~40 B a row) of at most about this many
# results at once; beyond, it splits them by id hash into buckets on disk (`_ordered_keys`).
KEY_BUCKET_ROWS = 1 << 18
MERGE_READ_ROWS = 8192  # key rows spilled, and read from each sorted bucket, at a time
KEY_SCHEMA = pa.schema([pa.field(schema.ID, pa.string()), pa.field(schema.ROW, pa.int64()),
                        pa.field(schema.VARIANT, pa.int32())])


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """`table` with `target`'s columns in its order (missing ones null) and types."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
               for f in target]
    return pa.Table.from_arrays(columns, schema=target)


def _group_starts(metadata: pq.FileMetaData) -> np.ndarray:
    """The first row of each row group, and the row count at the end."""
    return np.cumsum([0, *(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups))])


@dataclass(frozen=True)
class ResultCounts:
    """How many result rows a consolidation wrote, and how many of them are ok."""

    rows_total: int = 0
    ok: int = 0

    @property
    def error(self) -> int:
        return self.rows_total - self.ok

    def __add__(self, other: ResultCounts) -> ResultCounts:
        return ResultCounts(self.rows_total + other.rows_total, self.ok + other.ok)


def _counts(table: pa.Table) -> ResultCounts:
    return ResultCounts(len(table), pc.sum(pc.equal(table[schema.STATUS], schema.STATUS_OK)).as_py() or 0)


def _with_position(keys: pa.Table, part: int, first_index: int) -> pa.Table:
    """`keys` with the part number and the row's index within that part, to gather it by later."""
    return (keys.append_column("_part", pa.array(np.full(len(keys), part, np.int32)))
            .append_column("_index", pa.array(np.arange(first_index, first_index + len(keys), dtype=np.int64))))


def _survivors(keys: pa.Table) -> pa.Table:
    """The rows of `keys` (with positions) from the newest part that has each id, sorted by ORDER."""
    if pc.count_distinct(keys[schema.ID]).as_py() < len(keys):  # an id in several parts
        newest = keys.select([schema.ID, "_part"]).group_by(schema.ID).aggregate([("_part", "max")])
        keys = keys.join(newest, keys=schema.ID)
        keys = keys.filter(pc.equal(keys["_part"], keys["_part_max"])).drop_columns(["_part_max"])
    return keys.take(pc.sort_indices(keys, sort_keys=ORDER))


def _row_groups(path: Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """A Parquet file a row group at a time. Not `iter_batches`: its reader held about the whole
    file in memory (16 readers of 4 MiB files +75 MiB, against +7 MiB a row group at a time)."""
    file = pq.ParquetFile(path)
    for group in range(file.num_row_groups):
        yield file.read_row_group(group, columns=columns, use_threads=False)


def _key_groups(part: Path) -> Iterator[pa.Table]:
    """A part's key columns in KEY_SCHEMA's order and types, a row group at a time."""
    for group in _row_groups(part, list(KEYS)):
        yield group.select(list(KEYS)).cast(KEY_SCHEMA)


def _part_keys(parts: list[Path]) -> Iterator[pa.Table]:
    """Every part's key columns with positions, a row group at a time."""
    for number, part in enumerate(parts):
        index = 0
        for keys in _key_groups(part):
            yield _with_position(keys, number, index)
            index += len(keys)


def _id_buckets(ids: pa.ChunkedArray, buckets: int) -> np.ndarray:
    """A bucket per id from a stable hash (crc32), so all rows of an id, from every part, meet in
    one bucket and can be deduplicated there (~8 ms per 65,536 ids)."""
    return np.fromiter((zlib.crc32(i.encode()) for i in ids.to_pylist()), np.uint32, len(ids)) % buckets


@contextmanager
def _spill_folder(folder: Path) -> Iterator[Path]:
    """A scratch folder beside the parts (`recover` removes one a crash left behind)."""
    spill = folder / f".keys.{os.getpid()}.tmp"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir()
    try:
        yield spill
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _ordered_keys(parts: list[Path], total: int, spill: Path) -> Iterator[pa.Table]:
    """The survivors' keys with positions (see `_survivors`), in ORDER, a table at a time.

    Up to KEY_BUCKET_ROWS results this is one table in memory. Beyond, the keys are split by id
    hash into buckets on disk, each bucket's survivors are sorted into their own file, and the
    files are merged: memory is bounded by a bucket, whatever the number of results."""
    buckets = max(1, -(-total // KEY_BUCKET_ROWS))
    if buckets == 1:
        yield _survivors(pa.concat_tables(list(_part_keys(parts))))
        return
    schema_ = KEY_SCHEMA.append(pa.field("_part", pa.int32())).append(pa.field("_index", pa.int64()))
    writers = [pq.ParquetWriter(spill / f"bucket-{b}.parquet", schema_) for b in range(buckets)]
    # Each bucket's keys are written MERGE_READ_ROWS at a time, since a writer keeps every row
    # group's metadata until it closes (a row group per part and bucket: +36 MiB at 4M results).
    held: list[list[pa.Table]] = [[] for _ in range(buckets)]
    try:
        for keys in _part_keys(parts):
            which = _id_buckets(keys[schema.ID], buckets)
            for b in np.unique(which):
                held[b].append(keys.filter(pa.array(which == b)))
                if sum(map(len, held[b])) >= MERGE_READ_ROWS:
                    writers[b].write_table(pa.concat_tables(held[b]))
                    held[b] = []
        for b, tables in enumerate(held):
            if tables:
                writers[b].write_table(pa.concat_tables(tables))
    finally:
        for writer in writers:
            writer.close()
    sorted_files = []
    for b in range(buckets):
        source = spill / f"bucket-{b}.parquet"
        sorted_files.append(spill / f"sorted-{b}.parquet")
        pq.write_table(_survivors(pq.read_table(source, use_threads=False)), sorted_files[-1],
                       row_group_size=MERGE_READ_ROWS)
        source.unlink()
    yield from _merge_sorted(sorted_files)


class _SortKeys:
    """A sorted key table as a sequence of (row, variant, id) tuples, for `bisect`."""

    def __init__(self, table: pa.Table) -> None:
        self.columns = [table[name] for name, _ in ORDER]

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, i: int) -> tuple:
        return tuple(column[i].as_py() for column in self.columns)


def _merge_sorted(files: list[Path]) -> Iterator[pa.Table]:
    """The rows of key files each sorted by ORDER, together in ORDER. Every buffer is kept at least
    half a row group full; each step takes from all of them what is no later than the smallest
    last key among the files not yet exhausted, so it emits at least that file's buffer."""
    sources = [_row_groups(f) for f in files]
    buffers: list[pa.Table | None] = [None] * len(files)
    open_ = set(range(len(files)))
    while True:
        for i in sorted(open_):
            while i in open_ and (buffers[i] is None or len(buffers[i]) < max(1, MERGE_READ_ROWS // 2)):
                group = next(sources[i], None)
                if group is None:
                    open_.discard(i)
                else:
                    buffers[i] = group if buffers[i] is None else pa.concat_tables([buffers[i], group])
        live = [i for i, held in enumerate(buffers) if held is not None and len(held)]
        if not live:
            return
        bounds = [_SortKeys(buffers[i])[len(buffers[i]) - 1] for i in live if i in open_]
        taken = []
        for i in live:
            n = bisect.bisect_right(_SortKeys(buffers[i]), min(bounds)) if bounds else len(buffers[i])
            taken.append(buffers[i].slice(0, n))
            buffers[i] = buffers[i].slice(n)
        merged = pa.concat_tables(taken)
        yield merged.take(pc.sort_indices(merged, sort_keys=ORDER))


def _rechunk(tables: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The same rows, `rows` at a time (the last chunk may be shorter)."""
    held: list[pa.Table] = []
    count = 0
    for table in tables:
        held.append(table)
        count += len(table)
        while count >= rows:
            whole = pa.concat_tables(held)
            yield whole.slice(0, rows)
            held, count = [whole.slice(rows)], count - rows
    if count:
        yield pa.concat_tables(held)


def _gather(parts: list[Path], group_starts: list[np.ndarray], part_of: np.ndarray, index_of: np.ndarray,
            target: pa.Schema) -> pa.Table:
    """The rows at (part_of, index_of), in that order, conformed to `target`; reads from each part
    only the row groups that hold them."""
    pieces, order = [], []
    for number in np.unique(part_of):
        where = np.flatnonzero(part_of == number)
        wanted = index_of[where]
        starts = group_starts[number]
        groups = np.unique(np.searchsorted(starts, wanted, side="right") - 1)
        rows = pq.ParquetFile(parts[number]).read_row_groups(groups.tolist(), use_threads=False)
        base = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])
        pieces.append(_conform(rows.take(pa.array(np.searchsorted(base, wanted))), target))
        order.append(where)
    return pa.concat_tables(pieces).take(pa.array(np.argsort(np.concatenate(order), kind="stable")))


def _in_order(part: Path) -> bool:
    """Whether a part's rows are already in ORDER (what a consolidation writes)."""
    previous = None
    for keys in _key_groups(part):
        if previous is not None:
            keys = pa.concat_tables([previous, keys])
        if not keys.equals(keys.take(pc.sort_indices(keys, sort_keys=ORDER))):
            return False
        previous = keys.slice(len(keys) - 1)
    return True


class ResultsStore:
    """Append-only Parquet parts under `OUT/results/`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq: int | None = None
        self._chunk = 0

    def parts(self) -> list[Path]:
        """Part files in write order."""
        return sorted(p for p in self.folder.iterdir() if _PART.match(p.name))

    def recover(self) -> None:
        """Finish what a crash interrupted: drop temp files and parts a consolidation superseded."""
        remove_interrupted_writes(self.folder)
        for part in self.parts():
            metadata = pq.read_schema(part).metadata or {}
            for name in json.loads(metadata.get(_SUPERSEDES, b"[]")):
                (self.folder / name).unlink(missing_ok=True)

    @staticmethod
    def _selection(key_tables: list[pa.Table]) -> pa.Table:
        """Which row of which part survives, in manifest order: `_part`, `_index` (within its part)
        for the rows of the newest part that has each id, sorted by (row, variant, id). Needs only
        the parts' key columns."""
        keys = [_with_position(table.select(list(KEYS)), number, 0) for number, table in enumerate(key_tables)]
        return _survivors(pa.concat_tables(keys, promote_options="permissive"))

    def read(self, columns: list[str] | None = None) -> pa.Table | None:
        """All rows (or only `columns`), keeping for each id only the rows of the newest part that
        has it, in manifest row order. Each part is read once."""
        parts = self.parts()
        if not parts:
            return None
        wanted = None if columns is None else list(dict.fromkeys([*columns, *KEYS]))
        tables = [pq.read_table(part, columns=wanted) for part in parts]
        selection = self._selection(tables)
        offsets = np.cumsum([0, *(len(t) for t in tables)])
        table = pa.concat_tables(tables, promote_options="permissive")
        del tables
        positions = offsets[selection["_part"].to_numpy()] + selection["_index"].to_numpy()
        table = table.take(pa.array(positions))
        return table if columns is None else table.select(list(dict.fromkeys(columns)))

    def _next_name(self) -> str:
        if self._seq is None:
            last = max((int(_PART.match(p.name).group(1)) for p in self.parts()), default=0)
            self._seq = last + 1
        name = f"part-{self._seq:05d}-{self._chunk:05d}.parquet"
        self._chunk += 1
        return name

    def append(self, table: pa.Table) -> Path:
        """Write one part atomically; returns its path."""
        path = self.folder / self._next_name()
        write_parquet_atomic(table, path)
        return path

    def consolidate(self) -> ResultCounts | None:
        """Rewrite all parts as one deduplicated part in manifest row order, then delete the old ones.

        Streams, in memory bounded whatever the number of results: the survivors' keys come in
        order from `_ordered_keys` (spilled to disk by id hash beyond KEY_BUCKET_ROWS results), and
        the rows are gathered and written CONSOLIDATE_CHUNK_ROWS at a time, reading from each part
        only the row groups a chunk needs. Returns the consolidated counts (for run.json)."""
        old = self.parts()
        if not old:
            return None
        # Row-group offsets only: a file is opened when a chunk needs it (hundreds of open readers
        # and their metadata cost more than the rows gathered at a time).
        group_starts = [_group_starts(pq.read_metadata(p)) for p in old]
        total = int(sum(starts[-1] for starts in group_starts))
        if len(old) == 1 and _in_order(old[0]):  # one part, already in order: nothing to rewrite
            return sum(map(_counts, _row_groups(old[0], [schema.STATUS])), ResultCounts())
        with _spill_folder(self.folder) as spill:
            chunks = _ordered_keys(old, total, spill)
            target = pa.unify_schemas([pq.read_schema(p) for p in old], promote_options="permissive")
            target = target.with_metadata({_SUPERSEDES: json.dumps([p.name for p in old]).encode()})
            self._seq, self._chunk = None, 0
            path = self.folder / self._next_name()
            counts = ResultCounts()
            with atomic_target(path) as tmp, pq.ParquetWriter(tmp, target) as writer:
                for keys in _rechunk(chunks, CONSOLIDATE_CHUNK_ROWS):
                    chunk = _gather(old, group_starts, keys["_part"].to_numpy(), keys["_index"].to_numpy(), target)
                    writer.write_table(chunk)
                    counts = counts + _counts(chunk)
        for part in old:
            part.unlink(missing_ok=True)
        self._seq = None
        return counts
