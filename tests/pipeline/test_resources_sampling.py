"""Batch sizing from a sample of image headers: read without decoding, robust to bad files."""
from __future__ import annotations

import numpy as np

from pipeline.resources import plan_resources, sample_pixels
from stages.imageio import declared_pixels
from tests.helpers import save_png
from tests.hostile_files import bomb_png, write
from workers.base import MethodResources


def test_sample_reads_headers_only_and_skips_what_does_not_open(tmp_path):
    small = save_png(tmp_path / "small.png", np.zeros((30, 40, 3), np.uint8))
    big = save_png(tmp_path / "big.png", np.zeros((60, 50), np.uint8))
    assert declared_pixels(str(small)) == 1200 and declared_pixels(f"file://{big}") == 3000
    bomb = write(tmp_path / "bomb.png", bomb_png())  # header only: 10 G pixels, nothing allocated
    text = write(tmp_path / "text.png", b"not an image")
    assert declared_pixels(bomb) == 10**10 and declared_pixels(text) is None
    assert declared_pixels(str(tmp_path / "absent.png")) is None and declared_pixels("s3://b/k.png") is None
    assert sample_pixels([str(small), text, str(big)]) == 3000 and sample_pixels([text]) is None


def test_a_bomb_in_the_sample_only_keeps_the_methods_batch():
    plan = plan_resources(2, 0, MethodResources(batch_size=8), n_rows=5000, pixels_per_row=10**10)
    assert plan.batch_size == 8
