"""LPIPS per image (the ``lpips`` package) on uint8 RGB images.

Owns building LPIPS from local files only: the ``lpips`` package ships its learned linear heads,
but would fetch the ImageNet trunk (AlexNet or VGG16) from the internet through torchvision. Here the
trunk is built random (``pnet_rand=True``, no download) and then loaded from the torchvision file
found in the weights folder, so nothing is ever downloaded and a missing file is an error that
names it. Models are cached per process, so a Ray worker that scores many batches builds one once.
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import torch

from stages.metrics import LPIPS_BACKBONE_FILES, LPIPS_NETS



def load_torchvision_state(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision state dict, memory-mapped where the file allows (VGG16's classifier is 500 MB
    that LPIPS never uses)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) serialisation cannot be mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a torchvision state dict, got {type(state).__name__}")
    return state


def features_state(state: dict[str, torch.Tensor], keys: list[str], what: str) -> dict[str, torch.Tensor]:
    """``features.<key>`` tensors of a torchvision state dict (the classifier is never needed);
    ValueError naming the first missing key when it is not that network's file."""
    missing = [k for k in keys if f"features.{k}" not in state]
    if missing:
        raise ValueError(f"{what} state dict lacks features.{missing[0]} (and "
                         f"{len(missing) - 1} more); is it a torchvision ImageNet file?")
    return {k: state[f"features.{k}"] for k in keys}


def build_lpips(net: str, backbone_state: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """``lpips.LPIPS(net)`` with the package's learned heads and the trunk loaded from
    ``backbone_state`` (a torchvision ``alexnet``/``vgg16`` state dict; None keeps it random, for
    tests only). Raises ValueError when the state dict is not the trunk's."""
    import lpips

    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS net must be one of {', '.join(LPIPS_NETS)}, not {net!r}")
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if backbone_state is not None:
        own = model.net.state_dict()  # "sliceK.<index in torchvision's features>.<param>"
        by_feature_key = {key.split(".", 1)[1]: key for key in own}
        trunk = features_state(backbone_state, list(by_feature_key),
                               f"{net} LPIPS trunk ({LPIPS_BACKBONE_FILES[net]})")
        model.net.load_state_dict({by_feature_key[k]: value for k, value in trunk.items()})
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=4)
def cached_lpips(net: str, backbone_path: str) -> torch.nn.Module:
    """The LPIPS model for (net, trunk file), built once per process."""
    return build_lpips(net, load_torchvision_state(Path(backbone_path)))


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """`[H,W,3] uint8` images of one shape → `[B,3,H,W]` float32 in [0, 255]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


@torch.no_grad()
def lpips_distances(model: torch.nn.Module, outputs: list[np.ndarray], gts: list[np.ndarray],
                    batch_size: int = 8) -> list[float]:
    """LPIPS between pairs of `[H,W,3] uint8` images at their own resolution (inputs scaled to
    [-1, 1] as the package expects); pairs of one shape are batched together."""
    distances = [float("nan")] * len(outputs)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(outputs):
        by_shape.setdefault(image.shape, []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            a = _to_tensor([outputs[i] for i in chunk]) / 127.5 - 1
            b = _to_tensor([gts[i] for i in chunk]) / 127.5 - 1
            values = model(a, b).flatten().tolist()
            for i, value in zip(chunk, values):
                distances[i] = float(value)
    return distances
