"""Decode images and masks from bytes into the arrays stages work on, and encode results.

Every image becomes `[H,W,3] uint8 RGB` whatever the file holds (grayscale, RGBA, 16-bit, CMYK,
palette, EXIF rotation), so methods and metrics see one format. Problems raise `ImageError` with a
message a user can act on.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000  # guards against decompression bombs (declared size, before decoding)
# The one limit is `max_pixels` (LoadConfig / `run --max-pixels`), checked on the declared size
# before any pixel is decoded. PIL's own check would refuse above ~179 M pixels whatever the user
# asked for, with a message that names neither the file nor the flag.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """An input file that cannot be used as an image or mask."""


def read_bytes(uri: str, name: str | None = None) -> bytes:
    """Bytes of a local path or any URI pyarrow's filesystems understand (s3://, gs://, ...).

    `name` starts error messages (e.g. "mask /x/m.png"); the URI by default.
    """
    name = name or uri
    if "://" in uri and not uri.startswith("file://"):
        from pyarrow import fs

        try:
            filesystem, path = fs.FileSystem.from_uri(uri)
            with filesystem.open_input_stream(path) as stream:
                data = stream.read()
        except (OSError, ValueError) as exc:  # pyarrow's errors subclass these
            raise ImageError(f"{name}: cannot read ({exc})") from exc
    else:
        path = Path(uri.removeprefix("file://"))
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if not path.is_file():
            raise ImageError(f"{name}: not a regular file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    return data


def declared_pixels(uri: str) -> int | None:
    """Width × height from a local image's header (nothing decoded); None when it cannot be read."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    try:
        with Image.open(uri.removeprefix("file://")) as image:
            return image.size[0] * image.size[1]
    except (OSError, ValueError, SyntaxError):
        return None


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"{name}: declared size {width}x{height} exceeds the {max_pixels:,}-pixel limit "
                "(a decompression bomb, or raise --max-pixels)"
            )
        image.load()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:  # PIL's message names only a BytesIO object
        raise ImageError(f"{name}: not a decodable image (no known image format; it starts with "
                         f"{data[:12]!r})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc})") from exc
    deep = _deep_color_png(data, name)
    if deep is not None:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
        image = deep.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else deep
        return image
    return ImageOps.exif_transpose(image)


_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _deep_color_png(data: bytes, name: str) -> Image.Image | None:
    """A 16-bit RGB / RGBA / gray+alpha PNG decoded by OpenCV and scaled to 8 bits, else None.

    PIL opens these as 8-bit modes by dropping the low byte (v >> 8); we scale instead
    (round(v * 255 / 65535)), as `_to_8bit` does for 16-bit grayscale.
    """
    # IHDR is always the first chunk: bit depth at byte 24, colour type at byte 25.
    if len(data) < 26 or not data.startswith(_PNG_SIGNATURE) or data[24] != 16 or data[25] not in (2, 4, 6):
        return None
    import cv2

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16:
        raise ImageError(f"{name}: corrupt 16-bit PNG (OpenCV could not decode it)")
    scaled = np.round(array.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if scaled.ndim == 2:
        return Image.fromarray(scaled, "L")
    if scaled.shape[2] == 2:
        return Image.fromarray(scaled, "LA")
    if scaled.shape[2] == 3:
        return Image.fromarray(cv2.cvtColor(scaled, cv2.COLOR_BGR2RGB), "RGB")
    return Image.fromarray(cv2.cvtColor(scaled, cv2.COLOR_BGRA2RGBA), "RGBA")


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer modes scaled to 8 bits (PIL's convert would clip instead)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image).astype(np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(np.round(array * 255.0 / peak), 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        array = np.asarray(image)
        return Image.fromarray(np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8), "L")
    return image


def decode_image(data: bytes, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`[H,W,3] uint8` RGB; alpha is dropped, EXIF orientation applied."""
    image = _to_8bit(_open(data, name, max_pixels))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def decode_mask_values(data: bytes, name: str = "mask", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`[H,W] uint8` mask intensity: L as is, RGB by max channel, RGBA also zero where transparent.

    Both common conventions work: opaque white-on-black masks, and white strokes on a transparent
    layer (an alpha mask).
    """
    image = _to_8bit(_open(data, name, max_pixels))
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if image.mode in ("LA", "PA", "P", "RGBA", "La"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return np.where(rgba[..., 3] > 0, rgba[..., :3].max(axis=2), 0).astype(np.uint8)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return rgb.max(axis=2)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an `[H,W,3] uint8` image (lossless, so known pixels survive bit for bit)."""
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# Output formats of `pipeline run --format`: name -> (file suffix, PIL format, save options).
OUTPUT_FORMATS: dict[str, tuple[str, str, dict]] = {
    "png": (".png", "PNG", {"compress_level": 1}),
    "jpg": (".jpg", "JPEG", {"quality": 95}),
    "webp": (".webp", "WEBP", {"quality": 95}),
}
FORMAT_CHOICES = (*OUTPUT_FORMATS, "same")
_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp"}


def resolve_format(requested: str, input_suffix: str | None = None) -> str:
    """`png|jpg|webp`, or for `same` the input file's format (PNG for any other input format)."""
    if requested == "same":
        return _SUFFIX_FORMATS.get((input_suffix or "").lower(), "png")
    if requested not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {', '.join(FORMAT_CHOICES)}, not '{requested}'")
    return requested


def encode_image(image: np.ndarray, fmt: str = "png") -> bytes:
    """Bytes of an `[H,W,3] uint8` image in `fmt` (png | jpg | webp); only PNG is lossless."""
    if fmt == "png":
        return encode_png(image)
    _, pil_format, options = OUTPUT_FORMATS[fmt]
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format=pil_format, **options)
    return buffer.getvalue()
