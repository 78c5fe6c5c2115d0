"""Hostile input files for the tests: bombs, truncations, formats PIL opens in odd modes."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG of a few dozen bytes whose header declares `width`×`height` RGB pixels
    (10 G pixels, 30 GB decoded, by default)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)  # the first rows' worth; decoding would go on to 30 GB
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encoded(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save) -> bytes:
    """Bytes of `array` saved by PIL in `fmt` (mode converts first, e.g. CMYK)."""
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png16(array16: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (PIL cannot write one; OpenCV can)."""
    import cv2

    ok, data = cv2.imencode(".png", array16[..., ::-1].copy())
    assert ok
    return data.tobytes()


def exif_rotated_jpeg(array: np.ndarray, orientation: int = 6) -> bytes:
    """A JPEG stored as `array` whose EXIF says to rotate it on display (6: 90° clockwise)."""
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)
