"""Inputs as clean-up jobs get them (JPEG with EXIF rotation, 16-bit RGB PNG, CMYK JPEG), outputs in
the requested format, dilated masks."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from stages.imageio import decode_image, decode_mask_values, encode_image, resolve_format
from stages.load import LoadConfig, load_row
from stages.masks import dilate_hole
from tests.helpers import save_png


def _gradient(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), np.full_like(xx, 90)], 2).astype(np.uint8)


def test_jpeg_exif_orientation_is_applied():
    rgb = _gradient(40, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90° clockwise
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=98, exif=exif)
    out = decode_image(buf.getvalue())
    assert out.shape == (60, 40, 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 3


def test_16bit_rgb_png_is_scaled_not_truncated():
    rgb16 = np.zeros((3, 4, 3), np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 1] = 400  # 400 / 257 = 1.56 -> 2 (PIL alone would give 400 >> 8 = 1)
    rgb16[..., 2] = np.arange(4) * 20000
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert ok and data.tobytes()[24] == 16
    out = decode_image(data.tobytes())
    expected = np.round(rgb16 * (255 / 65535)).astype(np.uint8)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    rgba16 = np.dstack([rgb16, np.full((3, 4), 65535, np.uint16)])
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgba16, cv2.COLOR_RGBA2BGRA))
    assert np.array_equal(decode_image(data.tobytes()), expected)
    # A 16-bit mask with faint strokes stays a hole (v >> 8 would make it 0 here).
    assert decode_mask_values(data.tobytes())[0, 1] == 255


def test_16bit_png_with_exif_orientation_is_rotated():
    rgb16 = (np.arange(2 * 3 * 3).reshape(2, 3, 3) * 3000).astype(np.uint16)
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    # Re-save through PIL's PNG writer is 8-bit only, so add an eXIf chunk by hand.
    exif = Image.Exif()
    exif[0x0112] = 3  # 180°
    payload = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif\x00\x00") else exif.tobytes()
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    raw = data.tobytes()
    with_exif = raw[:33] + chunk + raw[33:]  # right after IHDR
    out = decode_image(with_exif)
    expected = np.round(rgb16 * (255 / 65535)).astype(np.uint8)[::-1, ::-1]
    assert np.array_equal(out, expected)


def test_cmyk_jpeg_becomes_rgb():
    rgb = _gradient(32, 48)
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG", quality=98)
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "CMYK"
    out = decode_image(buf.getvalue())
    assert out.shape == (32, 48, 3) and np.abs(out.astype(int) - rgb.astype(int)).mean() < 4


@pytest.mark.parametrize("fmt, pil_format", [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP")])
def test_encode_image_formats(fmt, pil_format):
    rgb = _gradient(30, 50)
    data = encode_image(rgb, fmt)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == pil_format and decoded.size == (50, 30)
        err = np.abs(np.asarray(decoded.convert("RGB")).astype(int) - rgb.astype(int))
    assert (err.max() == 0) if fmt == "png" else (err.mean() < 3)


def test_resolve_format_same_uses_the_input_suffix():
    assert resolve_format("same", ".JPEG") == "jpg" and resolve_format("same", ".webp") == "webp"
    assert resolve_format("same", ".tif") == "png" and resolve_format("jpg", ".png") == "jpg"
    with pytest.raises(ValueError, match="png, jpg, webp, same"):
        resolve_format("gif")


def test_dilation_is_a_disc_applied_at_the_image_size(tmp_path):
    dot = np.zeros((21, 21), bool)
    dot[10, 10] = True
    grown = dilate_hole(dot, 3)
    yy, xx = np.mgrid[:21, :21]
    assert grown.sum() > 9 and not grown[7, 7] and grown[7, 10] and grown[10, 13]
    assert np.array_equal(grown, ((yy - 10) ** 2 + (xx - 10) ** 2 <= 9 + 1e-9) | grown) and grown.sum() < 49
    assert np.array_equal(dilate_hole(dot, 0), dot)
    # One small mask for a larger image: resized (nearest, warned), then grown by N image pixels.
    image = save_png(tmp_path / "i.png", _gradient(40, 80))
    mask = np.zeros((20, 40), np.uint8)
    mask[10, 20] = 255
    mask_path = save_png(tmp_path / "m.png", mask)
    plain = load_row(str(image), str(mask_path), None, LoadConfig())
    grown_row = load_row(str(image), str(mask_path), None, LoadConfig(), dilate=2)
    assert plain.hole.sum() == 4 and "resized" in grown_row.warning
    assert grown_row.hole.sum() > plain.hole.sum() and grown_row.hole[20:22, 38:42].all()
    assert not grown_row.image[grown_row.hole.astype(bool)].any(), "the grown hole is zeroed too"
