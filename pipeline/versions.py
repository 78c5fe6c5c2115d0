"""The versions run.json records, found without importing torch: importing it costs a process
about 240 MiB of private memory for the rest of its life, and the driver has no other use for it."""
from __future__ import annotations

import importlib.util
import platform
from importlib.metadata import version
from pathlib import Path


def package_versions() -> dict[str, str]:
    """facefill's and its main dependencies' versions, for run.json."""
    import cv2
    import numpy as np
    import pyarrow as pa
    import ray

    return {"facefill": version("facefill"), "python": platform.python_version(), "ray": ray.__version__,
            "torch": torch_version(), "numpy": np.__version__, "pyarrow": pa.__version__,
            "opencv": cv2.__version__}


def torch_version() -> str:
    """torch.__version__ with its build tag (2.14.1+cu130; the package metadata says 2.14.1), read
    from torch/version.py, which imports nothing, as a module of its own."""
    try:
        spec = importlib.util.find_spec("torch")  # a top-level package is found, not imported
        path = Path(spec.origin).with_name("version.py")
        file_spec = importlib.util.spec_from_file_location("_facefill_torch_version", path)
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
        return str(module.__version__)
    except (AttributeError, ImportError, OSError, TypeError):  # an unusual install: its metadata
        return version("torch")
