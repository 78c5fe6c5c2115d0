"""Turn manifest ids into file names that cannot escape the output folder or collide."""
from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


def safe_name(row_id: str) -> str:
    """A file stem for `row_id`: unchanged when already safe, else cleaned plus a short hash.

    The hash keeps distinct ids distinct after cleaning ("a/b" and "a_b" map to different names),
    and no result contains a path separator or starts with a dot, so `../../x` stays inside OUT.
    """
    cleaned = _UNSAFE.sub("_", row_id).lstrip(".")[:_MAX_STEM]
    if cleaned == row_id and cleaned:
        return cleaned
    digest = hashlib.sha1(row_id.encode("utf-8")).hexdigest()[:10]
    return f"{cleaned}-{digest}" if cleaned else digest


def output_stem(row_id: str, variant: int) -> str:
    """File stem of one result image; variant 0 keeps the plain id."""
    stem = safe_name(row_id)
    return stem if variant == 0 else f"{stem}.v{variant}"
