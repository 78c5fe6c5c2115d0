"""ResultsStore at scale: newest part per id (variants included), manifest row order, and a consolidation
that spills its keys into buckets by id hash beyond KEY_BUCKET_ROWS results."""
from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from manifests import schema
from pipeline.results_store import ResultCounts, ResultsStore


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
    assert store.consolidate() == ResultCounts(rows_total=60, ok=60) and len(store.parts()) == 1
    assert store.read().equals(table)
    consolidated = store.parts()[0].stat().st_mtime_ns, store.parts()[0].name
    assert store.consolidate() == ResultCounts(rows_total=60, ok=60)  # one part in order: kept as it is
    assert (store.parts()[0].stat().st_mtime_ns, store.parts()[0].name) == consolidated


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
    assert summary == ResultCounts(rows_total=54, ok=expected["status"].to_pylist().count("ok"))
    statuses = dict(zip(expected["id"].to_pylist(), expected["status"].to_pylist()))
    assert statuses["id012"] == "ok" and statuses["id013"] == "error" and len(expected) == 54


def _bucketed(monkeypatch, bucket_rows: int, read_rows: int) -> None:
    """Make consolidation spill its keys into buckets of `bucket_rows` and read `read_rows` at a time,
    as it does for millions of results."""
    import pipeline.results_store as results_store

    monkeypatch.setattr(results_store, "KEY_BUCKET_ROWS", bucket_rows)
    monkeypatch.setattr(results_store, "MERGE_READ_ROWS", read_rows)
    monkeypatch.setattr(results_store, "CONSOLIDATE_CHUNK_ROWS", 6)


def test_bucketed_consolidation_keeps_the_newest_part_of_every_id_in_row_order(tmp_path, monkeypatch):
    """Keys spilled into buckets by id hash and merged back: the same rows as the in-memory `read`,
    including an id whose manifest row moved between runs and the variants of the newest part only."""
    _bucketed(monkeypatch, bucket_rows=5, read_rows=3)
    store = ResultsStore(tmp_path / "results")
    store.append(_part([(f"id{r:02d}", 0, r, "error") for r in range(30)] + [("id05", 1, 5, "error")]))
    store.append(_part([(f"id{r:02d}", 0, r, "ok") for r in range(29, 0, -4)]))
    store.append(_part([("id07", 0, 40, "ok"), ("moved", 0, 3, "error")]))  # id07 now at row 40
    store.append(_part([("moved", 0, 35, "ok"), ("id05", 0, 5, "ok")]))  # id05 without its variant 1
    expected = store.read()
    counts = store.consolidate()
    assert len(store.parts()) == 1 and store.read().equals(expected)
    assert not [p for p in store.folder.iterdir() if p.name.startswith(".")]  # the spill folder is gone
    rows = list(zip(expected["id"].to_pylist(), expected["row"].to_pylist(), expected["variant"].to_pylist()))
    assert rows == sorted(rows, key=lambda r: (r[1], r[2], r[0])) and len(rows) == len(set(rows)) == 31
    assert ("id07", 40, 0) in rows and ("id07", 7, 0) not in rows and ("moved", 35, 0) in rows
    assert ("id05", 5, 1) not in rows
    assert counts == ResultCounts(rows_total=31, ok=expected["status"].to_pylist().count("ok"))


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(st.lists(st.tuples(st.integers(0, 25), st.integers(0, 2), st.sampled_from(["ok", "error"])),
                               min_size=1, max_size=20), min_size=1, max_size=5),
       bucket_rows=st.integers(1, 12), read_rows=st.integers(1, 7))
def test_bucketed_consolidation_matches_the_in_memory_selection(tmp_path_factory, parts, bucket_rows, read_rows):
    """Any parts (ids repeated within and across parts, several variants): consolidating through
    buckets of any size leaves exactly what the in-memory selection reads."""
    import pipeline.results_store as results_store

    store = ResultsStore(tmp_path_factory.mktemp("results"))
    for rows in parts:  # id i always at manifest row 2 i, so one id never has two rows in a part
        store.append(_part([(f"id{i}", variant, 2 * i, status) for i, variant, status in rows]))
    expected = store.read()
    names = ("KEY_BUCKET_ROWS", "MERGE_READ_ROWS", "CONSOLIDATE_CHUNK_ROWS")
    saved = {name: getattr(results_store, name) for name in names}
    for name, value in zip(names, (bucket_rows, read_rows, 4)):
        setattr(results_store, name, value)
    try:
        counts = store.consolidate()
    finally:
        for name, value in saved.items():
            setattr(results_store, name, value)
    assert store.read().equals(expected) and len(store.parts()) == 1
    assert counts.rows_total == len(expected) and counts.ok == expected["status"].to_pylist().count("ok")


def test_recover_removes_the_keys_a_killed_consolidation_spilled(tmp_path):
    store = ResultsStore(tmp_path / "results")
    store.append(_part([("a", 0, 0, "ok")]))
    spill = store.folder / ".keys.12345.tmp"
    spill.mkdir()
    (spill / "bucket-0.parquet").write_bytes(b"half")
    store.recover()
    assert not spill.exists() and [p.name for p in store.parts()] == ["part-00001-00000.parquet"]
