"""The results folder: Parquet parts appended during a run, consolidated to one row per key at the end.

Exactly-once across interruptions: parts are written atomically (temp name, then rename); readers take
the newest row of each id; a finished run rewrites everything as one consolidated part that lists the
parts it supersedes in its metadata, and a later start deletes any superseded part a crash left
behind. So after any sequence of interrupted runs and one that finishes, each id appears once.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

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


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """`table` with `target`'s columns in its order (missing ones null) and types."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
               for f in target]
    return pa.Table.from_arrays(columns, schema=target)


def _group_starts(metadata: pq.FileMetaData) -> np.ndarray:
    """The first row of each row group, and the row count at the end."""
    return np.cumsum([0, *(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups))])


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
        the parts' key columns, so it is small however large the results."""
        keys = [table.select(list(KEYS)).append_column("_part", pa.array(np.full(len(table), number, np.int32)))
                .append_column("_index", pa.array(np.arange(len(table), dtype=np.int64)))
                for number, table in enumerate(key_tables)]
        table = pa.concat_tables(keys, promote_options="permissive")
        if pc.count_distinct(table[schema.ID]).as_py() < len(table):  # an id in several parts
            newest = table.select([schema.ID, "_part"]).group_by(schema.ID).aggregate([("_part", "max")])
            table = table.join(newest, keys=schema.ID)
            table = table.filter(pc.equal(table["_part"], table["_part_max"])).drop_columns(["_part_max"])
        return table.take(pc.sort_indices(table, sort_keys=ORDER))

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

    def consolidate(self) -> pa.Table | None:
        """Rewrite all parts as one deduplicated part in manifest row order, then delete the old ones.

        Streams: only the key columns are held for the whole results (`_selection`); the rows are
        gathered and written CONSOLIDATE_CHUNK_ROWS at a time, reading from each part only the row
        groups a chunk needs. Returns the consolidated keys and statuses (for run.json's counts)."""
        old = self.parts()
        if not old:
            return None
        selection = self._selection([pq.read_table(p, columns=list(KEYS), use_threads=False) for p in old])
        summary_columns = [*KEYS, schema.STATUS]
        if len(old) == 1 and np.array_equal(selection["_index"].to_numpy(), np.arange(len(selection))):
            return pq.read_table(old[0], columns=summary_columns)  # already one part in order
        target = pa.unify_schemas([pq.read_schema(p) for p in old], promote_options="permissive")
        target = target.with_metadata({_SUPERSEDES: json.dumps([p.name for p in old]).encode()})
        # Row-group offsets only: a file is opened when a chunk needs it (hundreds of open readers
        # and their metadata cost more than the rows gathered at a time).
        group_starts = [_group_starts(pq.read_metadata(p)) for p in old]
        self._seq, self._chunk = None, 0
        path = self.folder / self._next_name()
        summaries = []
        with atomic_target(path) as tmp, pq.ParquetWriter(tmp, target) as writer:
            part_of, index_of = selection["_part"].to_numpy(), selection["_index"].to_numpy()
            for start in range(0, len(selection), CONSOLIDATE_CHUNK_ROWS):
                part, index = part_of[start:start + CONSOLIDATE_CHUNK_ROWS], index_of[start:start + CONSOLIDATE_CHUNK_ROWS]
                pieces, order = [], []
                for number in np.unique(part):
                    where = np.flatnonzero(part == number)
                    wanted = index[where]
                    starts = group_starts[number]
                    groups = np.unique(np.searchsorted(starts, wanted, side="right") - 1)
                    rows = pq.ParquetFile(old[number]).read_row_groups(groups.tolist(), use_threads=False)
                    base = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])
                    pieces.append(_conform(rows.take(pa.array(np.searchsorted(base, wanted))), target))
                    order.append(where)
                chunk = pa.concat_tables(pieces).take(pa.array(np.argsort(np.concatenate(order), kind="stable")))
                writer.write_table(chunk)
                summaries.append(chunk.select(summary_columns))
        for part in old:
            part.unlink(missing_ok=True)
        self._seq = None
        return pa.concat_tables(summaries)
