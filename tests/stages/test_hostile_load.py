"""The load stage against hostile files: each one a clear error naming the file, never a crash."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stages.batch import to_column
from stages.imageio import ImageError, decode_image, decode_mask_values
from stages.load import LoadConfig, load_batch, load_row
from tests.helpers import disk_mask, save_png
from tests.hostile_files import bomb_png, write


def test_bomb_header_is_refused_before_decoding():
    data = bomb_png()
    assert len(data) < 100 and Image.open(__import__("io").BytesIO(data)).size == (100_000, 100_000)
    with pytest.raises(ImageError, match=r"bomb.png: declared size 100000x100000 exceeds the "
                                         r"64,000,000-pixel limit \(a decompression bomb, or raise --max-pixels\)"):
        decode_image(data, "bomb.png")
    with pytest.raises(ImageError, match="declared size 100000x100000"):
        decode_mask_values(data, "bomb-mask.png")


def test_our_limit_replaces_pils_own():
    # 225 M pixels is over PIL's own decompression-bomb limit (~179 M): the message is still ours
    # and names the flag; PIL's would name neither.
    with pytest.raises(ImageError, match=r"exceeds the 100,000,000-pixel limit"):
        decode_image(bomb_png(15_000, 15_000), "big.png", max_pixels=100_000_000)


def test_max_pixels_comes_from_the_load_config(tmp_path):
    image = save_png(tmp_path / "face.png", np.full((64, 64, 3), 128, np.uint8))
    mask = save_png(tmp_path / "mask.png", disk_mask(64))
    assert load_row(str(image), str(mask), None, LoadConfig()).image.shape == (64, 64, 3)
    with pytest.raises(ImageError, match="declared size 64x64 exceeds the 4,000-pixel limit"):
        load_row(str(image), str(mask), None, LoadConfig(max_pixels=4000))


def test_all_hole_and_no_hole_masks_are_errors(tmp_path):
    image = save_png(tmp_path / "face.png", np.full((32, 32, 3), 128, np.uint8))
    full = save_png(tmp_path / "full.png", np.full((32, 32), 255, np.uint8))
    empty = save_png(tmp_path / "empty.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(ImageError, match=r"full.png: every pixel is hole \(no known pixels to inpaint from"):
        load_row(str(image), str(full), None, LoadConfig())
    with pytest.raises(ImageError, match="empty.png: mask has no hole pixels"):
        load_row(str(image), str(empty), None, LoadConfig())
    # Dilation that swallows the whole image is caught the same way.
    dot = np.zeros((32, 32), np.uint8)
    dot[16, 16] = 255
    with pytest.raises(ImageError, match="every pixel is hole"):
        load_row(str(image), str(save_png(tmp_path / "dot.png", dot)), None, LoadConfig(), dilate=40)


def test_load_batch_turns_each_hostile_file_into_its_own_error_row(tmp_path):
    good = save_png(tmp_path / "good.png", np.full((32, 32, 3), 90, np.uint8))
    mask = save_png(tmp_path / "mask.png", disk_mask(32))
    (tmp_path / "folder.png").mkdir()
    cases = {
        "good": (str(good), None),
        "bomb": (write(tmp_path / "bomb.png", bomb_png()), "declared size 100000x100000 exceeds"),
        "zero": (write(tmp_path / "zero.png", b""), "file is empty (0 bytes)"),
        "text": (write(tmp_path / "notes.png", b"these are my notes\n" * 20), "not a decodable image"),
        "truncated": (write(tmp_path / "cut.png", good.read_bytes()[:60]), "corrupt or truncated image"),
        "missing": (str(tmp_path / "nope.png"), "no such file"),
        "folder": (str(tmp_path / "folder.png"), "not a regular file"),
    }
    batch = {"id": to_column(list(cases)), "row": to_column(list(range(len(cases)))),
             "image": to_column([uri for uri, _ in cases.values()]),
             "mask": to_column([str(mask)] * len(cases)), "gt": to_column([None] * len(cases))}
    out = load_batch(batch)
    for i, (row_id, (uri, expected)) in enumerate(cases.items()):
        assert out["id"][i] == row_id
        if expected is None:
            assert out["status"][i] == "ok" and out["error"][i] is None
        else:
            assert out["status"][i] == "error" and out["error"][i].startswith(f"load: image {uri}: ")
            assert expected in out["error"][i], out["error"][i]
