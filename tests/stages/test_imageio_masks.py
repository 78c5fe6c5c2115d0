import io

import numpy as np
import pytest
from PIL import Image

from stages.imageio import ImageError, decode_image, decode_mask_values, encode_png, read_bytes
from stages.masks import fit_to_image, hole_from_values, mask_ratio, require_hole


def _png(array, mode=None, **save):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG", **save)
    return buf.getvalue()


def test_rgb_round_trip_is_lossless(rng):
    image = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_png(image)), image)


def test_grayscale_rgba_and_16bit_become_rgb(rng):
    gray = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    out = decode_image(_png(gray, "L"))
    assert out.shape == (8, 9, 3) and np.array_equal(out[..., 1], gray)
    rgba = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    assert np.array_equal(decode_image(_png(rgba, "RGBA")), rgba[..., :3])
    deep = (gray.astype(np.uint16) * 257)
    buf = io.BytesIO()
    Image.fromarray(deep).save(buf, format="PNG")
    assert np.array_equal(decode_image(buf.getvalue())[..., 0], gray)


def test_exif_orientation_is_applied():
    image = np.zeros((4, 6, 3), np.uint8)
    image[0, 0] = 255
    pil = Image.fromarray(image)
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    pil.save(buf, format="PNG", exif=exif)
    out = decode_image(buf.getvalue())
    assert out.shape == (6, 4, 3)


@pytest.mark.parametrize("data,match", [(b"", "not a decodable"), (b"hello, not an image", "not a decodable")])
def test_garbage_is_a_clear_error(data, match):
    with pytest.raises(ImageError, match=match):
        decode_image(data, "x.png")


def test_truncated_png_is_a_clear_error(rng):
    data = _png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="x.png"):
        decode_image(data[: len(data) // 2], "x.png")


def test_decompression_bomb_is_refused_before_decoding():
    data = _png(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageError, match="exceeds"):
        decode_image(data, "big.png", max_pixels=5000)


def test_read_bytes_errors(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_bytes(str(tmp_path / "nope.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="0 bytes"):
        read_bytes(str(tmp_path / "empty.png"))


def test_mask_conventions():
    values = np.array([[0, 1], [255, 0]], np.uint8)
    assert hole_from_values(decode_mask_values(_png(values, "L"))).tolist() == [[False, True], [True, False]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1, 2] = 255
    assert hole_from_values(decode_mask_values(_png(rgb))).sum() == 1
    rgba = np.full((2, 2, 4), 255, np.uint8)
    rgba[..., 3] = [[0, 255], [0, 0]]  # white strokes on a transparent layer
    assert hole_from_values(decode_mask_values(_png(rgba, "RGBA"))).tolist() == [[False, True], [False, False]]
    assert hole_from_values(np.array([[100, 200]], np.uint8), threshold=127).tolist() == [[False, True]]


def test_fit_to_image_nearest_and_warns():
    hole = np.zeros((4, 4), bool)
    hole[:2, :2] = True
    same, warning = fit_to_image(hole, 4, 4)
    assert same is hole and warning is None
    big, warning = fit_to_image(hole, 8, 8)
    assert big.shape == (8, 8) and big[:4, :4].all() and not big[4:, :].any()
    assert "resized" in warning and mask_ratio(big) == 0.25


def test_empty_hole_is_an_error():
    with pytest.raises(ImageError, match="no hole"):
        require_hole(np.zeros((3, 3), bool), "mask m.png")
