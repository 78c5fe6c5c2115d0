import math

import pytest

from manifests.buckets import BUCKETS, bucket_of, bucket_order
from manifests.ids import output_stem, safe_name


@pytest.mark.parametrize("ratio,expected", [
    (0.0, "<0.01"), (0.0099, "<0.01"), (0.01, "0.01-0.10"), (0.0999, "0.01-0.10"), (0.10, "0.10-0.20"),
    (0.35, "0.30-0.40"), (0.5999, "0.50-0.60"), (0.60, ">0.60"), (1.0, ">0.60"),
])
def test_bucket_edges_are_half_open(ratio, expected):
    assert bucket_of(ratio) == expected


def test_bucket_order_ascending():
    assert sorted(reversed(BUCKETS), key=bucket_order) == list(BUCKETS)
    assert bucket_order("nonsense") == len(BUCKETS)


def test_nan_ratio_rejected():
    with pytest.raises(ValueError):
        bucket_of(math.nan)


def test_matches_shared_mask_index(bench_dev):
    import csv
    rows = list(csv.DictReader(open(bench_dev / "masks.csv")))
    assert all(bucket_of(float(r["hole_ratio"])) == r["bucket"] for r in rows)


@pytest.mark.parametrize("row_id", ["../../x", "/etc/passwd", "a/b", "..", ".hidden", "", "sp ace", "é"])
def test_safe_name_never_escapes(row_id):
    name = safe_name(row_id)
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")


def test_safe_name_keeps_clean_ids_and_separates_clashes():
    assert safe_name("face_001.v2-x") == "face_001.v2-x"
    assert safe_name("a/b") != safe_name("a_b")
    assert output_stem("x", 0) == "x" and output_stem("x", 2) == "x.v2"
