"""The streamed todo list: chunked validation equals whole-table validation, exact row groups,
lazy block reads and the driver's extras lookup."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.io import write_manifest
from manifests.validate import validate_manifest
from pipeline import todo as todo_module
from pipeline.todo import ManifestExtras, TodoOptions, prepare_todo, read_rows
from pipeline.todo_source import TodoSource


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks and row groups small enough that a test manifest spans many of each."""
    monkeypatch.setattr(todo_module, "CHUNK_ROWS", 7)
    monkeypatch.setattr(todo_module, "GROUP_ROWS", 4)


def _manifest(tmp_path, n: int = 40):
    rng = np.random.default_rng(0)
    ids = [f"id{i}" for i in range(n)]
    images = [f"img/{i}.png" for i in range(n)]
    if n == 40:
        ids[9], ids[23], ids[31] = "id2", "", "id20"  # duplicates in later chunks, an empty id
        images[15] = ""
    table = pa.table({"id": ids, "image": images, "mask": [f"/abs/m{i}.png" for i in range(n)],
                      "age": pa.array([int(a) if a % 5 else None for a in rng.integers(1, 90, n)], pa.int64()),
                      "split": [("train", "test")[i % 2] for i in range(n)],
                      "mask_dilate": pa.array([-1 if i == 27 else i % 3 for i in range(n)], pa.int64())})
    path = tmp_path / "m.parquet"
    write_manifest(table, path)
    return path, table


def test_chunked_validation_equals_whole_table_validation(tmp_path, small_chunks):
    path, table = _manifest(tmp_path)
    todo = prepare_todo(path, tmp_path / "spill.parquet", pa.array([], pa.string()))
    whole = validate_manifest(table, base=tmp_path)
    spilled = pq.read_table(todo.spill)
    assert spilled.equals(whole.table.select(spilled.column_names))
    assert set(spilled.column_names) == set(whole.table.column_names)
    assert todo.rejected == whole.rejected
    assert [r.row for r in todo.rejected] == [9, 15, 23, 27, 31]
    assert "duplicate id 'id2' (first used on row 2)" in todo.rejected[0].error
    assert todo.rows == len(whole.table) == 35 and todo.extra_columns == ["age", "split", "mask_dilate"]
    groups = pq.ParquetFile(todo.spill).metadata
    sizes = [groups.row_group(g).num_rows for g in range(groups.num_row_groups)]
    assert sizes[:-1] == [4] * (len(sizes) - 1) and sum(sizes) == 35  # exact groups across chunk edges
    assert todo.group_first_rows == spilled["row"].to_pylist()[::4]
    assert todo.sample_images == spilled["image"].to_pylist()[:8]


def test_finished_limit_and_dilate_narrow_the_todo(tmp_path, small_chunks):
    path, _ = _manifest(tmp_path)
    todo = prepare_todo(path, tmp_path / "spill.parquet", pa.array(["id0", "id3", "id2", "nope"]),
                        TodoOptions(limit=20, dilate=5))
    spilled = pq.read_table(todo.spill)
    assert todo.skipped == 3  # id2's later duplicate (row 9) is a rejection, not a skip
    assert [r.row for r in todo.rejected] == [9, 15]  # rows past the limit are not looked at
    expected = [r for r in range(20) if r not in (0, 2, 3, 9, 15)]
    assert spilled["row"].to_pylist() == expected and todo.rows == len(expected)
    assert set(spilled["mask_dilate"].to_pylist()) == {5}


def test_dilate_reaches_the_results_even_when_the_manifest_has_no_such_column(tmp_path):
    path = tmp_path / "m.parquet"
    write_manifest(pa.table({"id": ["a", "b"], "image": ["/i.png"] * 2, "mask": ["/m.png"] * 2, "note": ["x", "y"]}), path)
    assert prepare_todo(path, tmp_path / "s.parquet", pa.array([], pa.string())).extra_columns == ["note"]
    todo = prepare_todo(path, tmp_path / "s.parquet", pa.array([], pa.string()), TodoOptions(dilate=3))
    assert todo.extra_columns == ["note", "mask_dilate"]
    assert ManifestExtras(todo).take([1, 0])["mask_dilate"].to_pylist() == [3, 3]


def test_nothing_to_do_leaves_an_empty_readable_spill(tmp_path, small_chunks):
    path, table = _manifest(tmp_path, n=6)
    todo = prepare_todo(path, tmp_path / "spill.parquet", table["id"].combine_chunks())
    assert todo.rows == 0 and todo.skipped == 6 and len(pq.read_table(todo.spill)) == 0


def test_read_rows_and_source_blocks_cover_the_spill_once(tmp_path, small_chunks):
    path, _ = _manifest(tmp_path)
    todo = prepare_todo(path, tmp_path / "spill.parquet", pa.array([], pa.string()))
    every = pq.read_table(todo.spill)
    for start, stop in [(0, 1), (3, 5), (4, 8), (2, 35), (34, 35)]:
        assert read_rows(str(todo.spill), start, stop).equals(every.slice(start, stop - start))
    source = TodoSource(str(todo.spill), range(todo.rows), 6, ["id", "row", "image"])
    tasks = source.get_read_tasks(parallelism=1)
    assert len(tasks) == source.num_blocks() == 6 and [t.metadata.num_rows for t in tasks] == [6] * 5 + [5]
    blocks = pa.concat_tables([block for task in tasks for block in task()])
    assert blocks.equals(every.select(["id", "row", "image"]))
    window = TodoSource(str(todo.spill), range(10, 23), 6, ["id", "row"])  # one window of a long run
    tasks = window.get_read_tasks(parallelism=1)
    assert window.num_blocks() == len(tasks) == 3 and [t.metadata.num_rows for t in tasks] == [6, 6, 1]
    assert pa.concat_tables([b for task in tasks for b in task()]).equals(every.slice(10, 13).select(["id", "row"]))


def test_extras_lookup_reads_groups_on_demand_in_any_order(tmp_path, small_chunks, monkeypatch):
    path, table = _manifest(tmp_path)
    todo = prepare_todo(path, tmp_path / "spill.parquet", pa.array([], pa.string()))
    monkeypatch.setattr(ManifestExtras, "CACHED_GROUPS", 2)  # evictions happen
    extras = ManifestExtras(todo)
    rows = pq.read_table(todo.spill)["row"].to_numpy()
    order = np.random.default_rng(1).permutation(np.repeat(rows, 2))  # variants repeat a row
    picked = extras.take(order)
    assert picked["age"].to_pylist() == [table["age"][int(r)].as_py() for r in order]
    assert picked["split"].to_pylist() == [table["split"][int(r)].as_py() for r in order]
    assert picked.schema.field("age").type == pa.int64()
    assert len(extras._groups) <= 2


@pytest.mark.slow
def test_run_carries_extra_columns_through_a_resumed_run_in_windows(tmp_path, bench_dev, monkeypatch):
    """Through Ray: extras reach the results with their types, a limited run then the full one
    finish each id once, window after window, and the spill file is gone afterwards."""
    from typer.testing import CliRunner

    from pipeline import graph, resources
    from pipeline.cli import app
    from tests.pipeline.fault_checks import assert_complete_run, build_manifest

    monkeypatch.setattr(resources, "WINDOW_BLOCKS", 1)  # with 3-row batches and blocks: 3-row windows
    windows: list[range] = []

    def recording_build_graph(*args, rows: range, **kwargs):
        windows.append(rows)
        return build_graph(*args, rows=rows, **kwargs)

    build_graph = graph.build_graph
    monkeypatch.setattr(graph, "build_graph", recording_build_graph)
    manifest, out = build_manifest(tmp_path, bench_dev, rows=10)
    table = pq.read_table(manifest)
    ages = pa.array([None if i % 4 == 0 else 20 + i for i in range(10)], pa.int64())
    write_manifest(table.append_column("age", ages).append_column("split", pa.array(["a", "b"] * 5)), manifest)
    for extra in (["--limit", "4"], []):
        windows.clear()
        ran = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(out), "--method", "telea",
                                       "--fusion", "paste", "--num-cpus", "2", "--lpips", "off", "--batch-size", "3",
                                       *extra])
        assert ran.exit_code == 0, ran.output
        assert not (out / todo_module.SPILL_NAME).exists()
    assert "resuming: 4 id(s) already finished" in ran.output
    assert windows == [range(0, 3), range(3, 6)] and "in 2 windows of 3 rows" in ran.output  # the 6 rows left
    results = assert_complete_run(out, manifest).sort_by("row")
    assert results["age"].type == pa.int64() and results["age"].to_pylist() == ages.to_pylist()
    assert results["split"].to_pylist() == ["a", "b"] * 5


def test_graph_caps_blocks_in_flight(tmp_path, small_chunks, ray_local):
    from pipeline.graph import build_graph
    from pipeline.local_ray import size_local_ray
    from pipeline.resources import plan_resources
    from stages.load import LoadConfig
    from workers.base import MethodResources

    path, _ = _manifest(tmp_path)
    todo = prepare_todo(path, tmp_path / "spill.parquet", pa.array([], pa.string()))
    plan = plan_resources(2, 0, MethodResources(batch_size=4), todo.rows, batch_size=4, pixels_per_row=64)
    ds = build_graph(todo, plan, "telea", None, "paste", LoadConfig(), str(tmp_path / "out"))
    assert ds.context.execution_options.resource_limits.object_store_memory == plan.inflight_bytes
    # Ray Data takes the lesser of the budget and its share of the store; in an embedded Ray sized
    # for faces (128 MiB in a 144 MiB store) that share must not cut the budget, as its default half would.
    faces = plan_resources(2, 0, MethodResources(batch_size=8), 5000, pixels_per_row=256 * 256)
    store = size_local_ray(faces, 2, 0, memory_bytes=24 * 1024 ** 3).object_store_bytes
    face_ds = build_graph(todo, faces, "telea", None, "paste", LoadConfig(), str(tmp_path / "out"))
    assert face_ds.context.override_object_store_memory_limit_fraction * store >= faces.inflight_bytes
