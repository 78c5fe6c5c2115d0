"""ResultsStore.read at scale: newest part per id (variants included), manifest row order."""
from __future__ import annotations

import pyarrow as pa

from manifests import schema
from pipeline.results_store import ResultsStore


def _part(rows: list[tuple[str, int, int, str]]) -> pa.Table:
    """(id, variant, row, status) tuples as a results table."""
    data = {f.name: [None] * len(rows) for f in schema.RESULT_SCHEMA}
    data.update(id=[r[0] for r in rows], variant=[r[1] for r in rows], row=[r[2] for r in rows],
                status=[r[3] for r in rows], method=["m"] * len(rows), config_hash=["h"] * len(rows))
    return pa.Table.from_pydict(data, schema=schema.RESULT_SCHEMA)


def test_newest_part_keeps_all_its_variants_and_drops_older_ones(tmp_path):
    store = ResultsStore(tmp_path / "results")
    store.append(_part([("c", 0, 2, "ok"), ("a", 0, 0, "error"), ("a", 1, 0, "error")]))
    store.append(_part([("b", 1, 1, "ok"), ("b", 0, 1, "ok"), ("a", 0, 0, "ok"), ("a", 1, 0, "ok")]))
    store.append(_part([("c", 0, 2, "error")]))
    table = store.read()
    assert list(zip(table["id"].to_pylist(), table["variant"].to_pylist(), table["status"].to_pylist())) == [
        ("a", 0, "ok"), ("a", 1, "ok"), ("b", 0, "ok"), ("b", 1, "ok"), ("c", 0, "error")]


def test_unique_ids_take_the_fast_path_in_row_order(tmp_path):
    store = ResultsStore(tmp_path / "results")
    for start in (40, 0, 20):  # parts arrive out of manifest order
        store.append(_part([(f"id{r:03d}", 0, r, "ok") for r in range(start + 19, start - 1, -1)]))
    table = store.read()
    assert table["row"].to_pylist() == list(range(60)) and len(set(table["id"].to_pylist())) == 60
    assert store.consolidate().equals(table.select(["id", "row", "variant", "status"])) and len(store.parts()) == 1
    assert store.read().equals(table)


def test_consolidation_streams_in_chunks_across_parts_and_schemas(tmp_path, monkeypatch):
    """Chunks smaller than the parts, a big earlier consolidated part with several row groups, parts
    of an older schema (no `lpips` column) and repeated ids: the same rows as `read`, in order."""
    import pyarrow.parquet as pq

    import pipeline.results_store as results_store

    monkeypatch.setattr(results_store, "CONSOLIDATE_CHUNK_ROWS", 7)
    store = ResultsStore(tmp_path / "results")
    first = _part([(f"id{r:03d}", 0, r, "error") for r in range(50)])
    pq.write_table(first.drop_columns(["lpips"]), store.folder / "part-00001-00000.parquet", row_group_size=8)
    store = ResultsStore(store.folder)
    store.append(_part([(f"id{r:03d}", 0, r, "ok") for r in range(45, 10, -3)]))
    store.append(_part([(f"id{r:03d}", v, r, "ok") for r in (60, 55) for v in (0, 1)]))
    expected = store.read()
    summary = store.consolidate()
    assert len(store.parts()) == 1 and pq.ParquetFile(store.parts()[0]).metadata.num_rows == len(expected)
    assert store.read().equals(expected)
    assert summary.equals(expected.select(["id", "row", "variant", "status"]))
    statuses = dict(zip(expected["id"].to_pylist(), expected["status"].to_pylist()))
    assert statuses["id012"] == "ok" and statuses["id013"] == "error" and len(expected) == 54
