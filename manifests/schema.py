"""The Parquet contracts: manifest (input) and results (output) columns.

Everything that reads or writes a manifest or a results file names its columns from here, so the
contract lives in one place.
"""
from __future__ import annotations

import pyarrow as pa

# ---- manifest (input) -------------------------------------------------------------------------
ID = "id"
IMAGE = "image"
MASK = "mask"
GT = "gt"
REQUIRED_MANIFEST_COLUMNS: tuple[str, ...] = (ID, IMAGE, MASK)
OPTIONAL_MANIFEST_COLUMNS: tuple[str, ...] = (GT,)
MANIFEST_COLUMNS = REQUIRED_MANIFEST_COLUMNS + OPTIONAL_MANIFEST_COLUMNS
# Optional per-row int: grow the row's hole by this many pixels (disc) at the image's size. Written
# by `manifest build --dilate`; read by the load stage; passed through to the results like any extra.
MASK_DILATE = "mask_dilate"

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(IMAGE, pa.string(), nullable=False),
        pa.field(MASK, pa.string(), nullable=False),
        pa.field(GT, pa.string(), nullable=True),
    ]
)

# ---- results (output) -------------------------------------------------------------------------
VARIANT = "variant"
STATUS = "status"
ERROR = "error"
WARNING = "warning"
OUTPUT = "output"
MASK_RATIO = "mask_ratio"
BUCKET = "bucket"
METHOD = "method"
CONFIG_HASH = "config_hash"
ROW = "row"
STATUS_OK = "ok"
STATUS_ERROR = "error"

METRIC_COLUMNS: tuple[str, ...] = ("psnr", "ssim", "l1", "psnr_hole", "ms_ssim", "lpips")
TIMING_COLUMNS: tuple[str, ...] = ("t_load", "t_inpaint", "t_fuse", "t_score", "t_write")

RESULT_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(VARIANT, pa.int32(), nullable=False),
        pa.field(ROW, pa.int64(), nullable=False),
        pa.field(STATUS, pa.string(), nullable=False),
        pa.field(ERROR, pa.string()),
        pa.field(WARNING, pa.string()),
        pa.field(OUTPUT, pa.string()),
        pa.field(MASK_RATIO, pa.float64()),
        pa.field(BUCKET, pa.string()),
        *(pa.field(name, pa.float64()) for name in METRIC_COLUMNS),
        *(pa.field(name, pa.float64()) for name in TIMING_COLUMNS),
        pa.field(METHOD, pa.string(), nullable=False),
        pa.field(CONFIG_HASH, pa.string(), nullable=False),
    ]
)
RESULT_COLUMNS: tuple[str, ...] = tuple(RESULT_SCHEMA.names)
