"""The results folder: Parquet parts appended during a run, consolidated to one row per key at the end.

Exactly-once across interruptions: parts are written atomically (temp name, then rename); readers take
the newest row of each id; a finished run rewrites everything as one consolidated part that lists the
parts it supersedes in its metadata, and a later start deletes any superseded part a crash left
behind. So after any sequence of interrupted runs and one that finishes, each id appears once.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema

_PART = re.compile(r"^part-(\d{5})-(\d{5})\.parquet$")
_SUPERSEDES = b"facefill.supersedes"


def write_parquet_atomic(table: pa.Table, path: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write to a temp name in the same folder and rename, so readers never see half a file (a
    failed write, e.g. on a full disk, removes its temp file and leaves `path` as it was)."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        for tmp in self.folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for part in self.parts():
            metadata = pq.read_schema(part).metadata or {}
            for name in json.loads(metadata.get(_SUPERSEDES, b"[]")):
                (self.folder / name).unlink(missing_ok=True)

    def read(self) -> pa.Table | None:
        """All rows, keeping for each id only the rows of the newest part that has it."""
        parts = self.parts()
        if not parts:
            return None
        tables = [pq.read_table(part) for part in parts]
        sizes = [len(t) for t in tables]
        table = pa.concat_tables(tables, promote_options="permissive")
        del tables
        keep = None
        if pc.count_distinct(table[schema.ID]).as_py() < len(table):  # an id in several parts
            # Only the keys take part in the join (it copies what it joins, in its own order).
            keys = pa.table({schema.ID: table[schema.ID],
                             "_part": pa.array(np.repeat(np.arange(len(parts), dtype=np.int32), sizes)),
                             "_index": pa.array(np.arange(len(table), dtype=np.int64))})
            newest = keys.group_by(schema.ID).aggregate([("_part", "max")])
            keys = keys.join(newest, keys=schema.ID)
            keep = keys.filter(pc.equal(keys["_part"], keys["_part_max"]))["_index"]
        order = [(schema.ROW, "ascending"), (schema.VARIANT, "ascending"), (schema.ID, "ascending")]
        selected = table if keep is None else table.select([schema.ROW, schema.VARIANT, schema.ID]).take(keep)
        rank = pc.sort_indices(selected, sort_keys=order)
        return table.take(rank if keep is None else pc.take(keep, rank))

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
        """Rewrite all parts as one deduplicated part in manifest row order, then delete the old ones."""
        old = self.parts()
        table = self.read()  # deduplicated, in manifest row order
        if table is None:
            return None
        keys = [schema.ROW, schema.VARIANT, schema.ID]
        if len(old) == 1 and pq.read_table(old[0], columns=keys).equals(table.select(keys)):
            return table  # already one part in order: nothing to rewrite
        self._seq, self._chunk = None, 0
        path = self.folder / self._next_name()
        write_parquet_atomic(table, path, {_SUPERSEDES: json.dumps([p.name for p in old]).encode()})
        for part in old:
            part.unlink(missing_ok=True)
        self._seq = None
        return table
