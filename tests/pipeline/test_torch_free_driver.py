"""A classical method's run never imports torch: it costs a process about 240 MiB of private memory
(the driver and the method actor each), and only stylegan-inv's actors use it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import local_ray
from pipeline.versions import torch_version
from tests.helpers import REPO

DRIVER_AND_ACTOR_PATH = """
import sys
from pipeline.local_ray import local_resources
from pipeline.versions import package_versions
from workers.registry import build_config, get_method
from workers.runner import MethodRunner
import pipeline.run, pipeline.graph
local_resources(None)
versions = package_versions()
MethodRunner("telea", build_config(get_method("telea"), {}))
print(versions["torch"], "torch" in sys.modules)
"""


def test_the_driver_and_a_classical_actor_leave_torch_unimported():
    done = subprocess.run([sys.executable, "-c", DRIVER_AND_ACTOR_PATH], cwd=REPO, capture_output=True,
                          text=True, check=True)
    version, imported = done.stdout.split()
    assert imported == "False"
    import torch
    assert version == torch.__version__


def test_torch_version_keeps_the_build_tag():
    import torch
    assert torch_version() == torch.__version__


@pytest.mark.parametrize("visible, expected", [(None, 4), ("", 0), ("0,2", 2), ("NoDevFiles", 0), ("0,1,2,3,4,5", 4)])
def test_local_gpus_counts_like_ray(monkeypatch, visible, expected):
    from ray._private.accelerators.nvidia_gpu import NvidiaGPUAcceleratorManager
    monkeypatch.setattr(NvidiaGPUAcceleratorManager, "get_current_node_num_accelerators", staticmethod(lambda: 4))
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert local_ray.local_gpus() == expected
