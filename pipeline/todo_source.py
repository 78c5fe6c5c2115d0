"""The graph's input: a Ray Data source that reads blocks of the todo spill file lazily.

`ray.data.from_arrow` would put every input block in the object store before the first image is
loaded (and hold their references on the driver for the whole run): memory that grows with the
manifest. Read tasks run when the streaming executor wants more input, each decoding only its
block's row groups, so inputs stay bounded by the graph's backpressure, not the manifest's length.
A source covers one window of the spill (`pipeline.run` runs a long manifest window by window).
"""
from __future__ import annotations

import functools
from typing import Sequence

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from pipeline.todo import read_rows


def _read_block(spill: str, start: int, stop: int, columns: tuple[str, ...]) -> list[pa.Table]:
    return [read_rows(spill, start, stop, columns)]


class TodoSource(Datasource):
    """Blocks of `rows_per_block` consecutive spill rows from `rows.start` to `rows.stop` (the last
    one shorter), one read task each."""

    def __init__(self, spill: str, rows: range, rows_per_block: int, columns: Sequence[str]) -> None:
        super().__init__()
        self.spill, self.rows, self.rows_per_block, self.columns = spill, rows, rows_per_block, tuple(columns)

    def get_name(self) -> str:
        return "ManifestTodo"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def num_blocks(self) -> int:
        return -(-len(self.rows) // self.rows_per_block)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        tasks = []
        for start in range(self.rows.start, self.rows.stop, self.rows_per_block):
            stop = min(self.rows.stop, start + self.rows_per_block)
            metadata = BlockMetadata(num_rows=stop - start, size_bytes=None, exec_stats=None, input_files=None)
            tasks.append(ReadTask(functools.partial(_read_block, self.spill, start, stop, self.columns), metadata,
                                  per_task_row_limit=per_task_row_limit))
        return tasks
