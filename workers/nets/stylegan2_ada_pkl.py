"""Safe importer for NVIDIA stylegan2-ada-pytorch snapshot pickles.

Owns :func:`load_ada_pickle`: a restricted :class:`pickle.Unpickler` that only admits the handful
of globals such a snapshot needs (tensor/parameter rebuilders, nested ``torch.save`` storages read
with ``weights_only=True``, OrderedDict, numpy scalars) and replaces the persistence reconstructor
by a plain holder of ``meta`` - so the embedded ``module_src`` is never executed. The ``G_ema``
network is then renamed to the rosinality layout used by :mod:`workers.nets.stylegan2`.
Arbitrary NVIDIA widths (``min(channel_base // res, channel_max)``) are supported through the
Generator's ``channels`` config; ``conv_clamp`` maps to the Generator's ``conv_clamp``.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_ada_pickle", "UnsafePickleError", "PersistentObject"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list."""


class PersistentObject:
    """Inert stand-in for a ``torch_utils.persistence`` object: keeps ``meta``, runs nothing."""

    def __init__(self, meta: Any):
        self.meta = meta

    @property
    def state(self) -> dict:
        st = self.meta.get("state") if isinstance(self.meta, dict) else None
        return st if isinstance(st, dict) else {}

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name", "?")) if isinstance(self.meta, dict) else "?"


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    return PersistentObject(meta)


def _load_from_bytes(b: bytes) -> Any:
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _numpy_scalar() -> Any:
    core = getattr(np, "_core", None)
    if core is not None:
        return core.multiarray.scalar
    return np.core.multiarray.scalar  # numpy < 2


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar(),
    ("numpy._core.multiarray", "scalar"): _numpy_scalar(),
    # Inert containers some protocols spell as globals (module __dict__ holds sets).
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load global {module}.{name} "
                                    "(not on the stylegan2-ada allow-list)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refusing persistent id {pid!r}")


def _flatten(obj: PersistentObject, prefix: str, out: dict[str, Tensor]) -> None:
    """Collect parameters/buffers of a persistent module tree under dotted names."""
    st = obj.state
    for group in ("_parameters", "_buffers"):
        for k, v in (st.get(group) or {}).items():
            if isinstance(v, Tensor):
                out[prefix + k] = v.detach().float()
    for k, sub in (st.get("_modules") or {}).items():
        if isinstance(sub, PersistentObject):
            _flatten(sub, f"{prefix}{k}.", out)


def _attr(obj: PersistentObject, name: str, default: Any = None) -> Any:
    """A module's init kwarg or attribute from its pickled state."""
    st = obj.state
    kwargs = st.get("_init_kwargs") or {}
    if name in kwargs:
        return kwargs[name]
    return st.get(name, default)


def _module(obj: PersistentObject, name: str) -> PersistentObject | None:
    sub = (obj.state.get("_modules") or {}).get(name)
    return sub if isinstance(sub, PersistentObject) else None


def _convert(g: PersistentObject, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    src: dict[str, Tensor] = {}
    _flatten(g, "", src)
    err = f"{path}: unsupported stylegan2-ada G_ema ({g.class_name})"
    if int(_attr(g, "c_dim", 0) or 0) != 0:
        raise ValueError(f"{err}: conditional generators (c_dim > 0) are not supported")
    if int(_attr(g, "img_channels", 3) or 3) != 3:
        raise ValueError(f"{err}: only 3-channel images are supported")
    if "synthesis.b4.const" not in src:
        raise ValueError(f"{err}: no synthesis.b4.const (not a StyleGAN2 synthesis network)")
    syn = _module(g, "synthesis")
    syn_kwargs = dict(_attr(g, "synthesis_kwargs", {}) or {})
    arch = syn_kwargs.get("architecture", "skip")
    if arch != "skip":
        raise ValueError(f"{err}: architecture {arch!r} (only 'skip' is supported)")
    z_dim, w_dim = int(_attr(g, "z_dim", 512)), int(_attr(g, "w_dim", 512))
    if z_dim != w_dim:
        raise ValueError(f"{err}: z_dim {z_dim} != w_dim {w_dim}")

    sd: dict[str, Tensor] = {}
    fcs = sorted(int(m.group(1)) for k in src if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    if not fcs or fcs != list(range(len(fcs))):
        raise ValueError(f"{err}: mapping.fc* layers missing or not contiguous")
    for i in fcs:
        sd[f"style.{i + 1}.weight"] = src[f"mapping.fc{i}.weight"]
        sd[f"style.{i + 1}.bias"] = src[f"mapping.fc{i}.bias"]
    mapping = _module(g, "mapping")
    fc0 = _module(mapping, "fc0") if mapping else None
    lr_mlp = _attr(fc0, "bias_gain", None) if fc0 else None
    if lr_mlp is None:
        lr_mlp = dict(_attr(g, "mapping_kwargs", {}) or {}).get("lr_multiplier", 0.01)
    if "mapping.w_avg" in src:
        sd["latent_avg"] = src["mapping.w_avg"].reshape(-1)

    def layer(a: str, r: str, noise_idx: int) -> None:
        w = src[f"{a}.weight"]
        sd[f"{r}.conv.weight"] = w.unsqueeze(0)
        sd[f"{r}.conv.modulation.weight"] = src[f"{a}.affine.weight"]
        sd[f"{r}.conv.modulation.bias"] = src[f"{a}.affine.bias"]
        sd[f"{r}.activate.bias"] = src[f"{a}.bias"]
        res = _res_of(a)
        if f"{a}.noise_strength" in src:
            sd[f"{r}.noise.weight"] = src[f"{a}.noise_strength"].reshape(1)
            sd[f"noises.noise_{noise_idx}"] = src[f"{a}.noise_const"].reshape(1, 1, res, res)
        else:  # use_noise=False: zero strength is the exact equivalent
            sd[f"{r}.noise.weight"] = torch.zeros(1)
            sd[f"noises.noise_{noise_idx}"] = torch.zeros(1, 1, res, res)

    def torgb(a: str, r: str) -> None:
        # ADA scales styles by 1/sqrt(C); rosinality scales the weight by 1/sqrt(C*1*1): same map.
        sd[f"{r}.conv.weight"] = src[f"{a}.weight"].unsqueeze(0)
        sd[f"{r}.conv.modulation.weight"] = src[f"{a}.affine.weight"]
        sd[f"{r}.conv.modulation.bias"] = src[f"{a}.affine.bias"]
        sd[f"{r}.bias"] = src[f"{a}.bias"].reshape(1, 3, 1, 1)

    resolutions = sorted({int(m.group(1)) for k in src
                          if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    size = int(_attr(g, "img_resolution", resolutions[-1]))
    if resolutions != [2 ** i for i in range(2, len(resolutions) + 2)] or resolutions[-1] != size:
        raise ValueError(f"{err}: unexpected block resolutions {resolutions}")
    try:
        sd["input.input"] = src["synthesis.b4.const"].unsqueeze(0)
        layer("synthesis.b4.conv1", "conv1", 0)
        torgb("synthesis.b4.torgb", "to_rgb1")
        for k, res in enumerate(resolutions[1:]):
            layer(f"synthesis.b{res}.conv0", f"convs.{2 * k}", 2 * k + 1)
            layer(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}", 2 * k + 2)
            torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}")
    except KeyError as exc:
        raise ValueError(f"{err}: missing tensor {exc}") from None

    channels = {4: int(src["synthesis.b4.const"].shape[0])}
    channels.update({res: int(src[f"synthesis.b{res}.conv1.weight"].shape[0])
                     for res in resolutions[1:]})
    cbase, cmax = syn_kwargs.get("channel_base"), syn_kwargs.get("channel_max")
    if cbase is not None and cmax is not None:
        for res, ch in channels.items():
            if ch != min(int(cbase) // res, int(cmax)):
                raise ValueError(f"{err}: width {ch} at resolution {res} disagrees with "
                                 f"min(channel_base // res, channel_max) = "
                                 f"{min(int(cbase) // res, int(cmax))}")
    filt = src.get("synthesis.b8.conv0.resample_filter")
    default = torch.tensor([1.0, 3, 3, 1])
    default = torch.outer(default, default) / 64
    if filt is not None and (filt.shape != default.shape or not torch.allclose(filt, default)):
        raise ValueError(f"{err}: only the [1,3,3,1] resample filter is supported")
    conv_clamp = syn_kwargs.get("conv_clamp", _attr(_module(syn, "b4") or g, "conv_clamp"))
    config = {"size": size, "style_dim": w_dim, "n_mlp": len(fcs), "lr_mlp": float(lr_mlp),
              "channels": channels, "conv_clamp": None if conv_clamp is None else float(conv_clamp),
              "blur_kernel": [1, 3, 3, 1], "channel_base": cbase, "channel_max": cmax,
              "source": "stylegan2-ada-pkl"}
    if 64 in channels and channels[64] % 256 == 0:
        config["channel_multiplier"] = channels[64] // 256
    return sd, config


def _res_of(prefix: str) -> int:
    return int(re.match(r"synthesis\.b(\d+)\.", prefix).group(1))  # type: ignore[union-attr]


def load_ada_pickle(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read ``G_ema`` from a stylegan2-ada snapshot without executing it.

    Returns (state dict in rosinality names plus ``latent_avg`` from ``mapping.w_avg``, config
    dict for :class:`workers.nets.stylegan2.Generator`). Raises ValueError naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f).load()
    except UnsafePickleError as exc:
        raise ValueError(f"{path}: unsafe pickle: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - corrupt/foreign pickles
        raise ValueError(f"{path}: not a readable stylegan2-ada pickle: {exc}") from exc
    if isinstance(data, dict) and "G_ema" in data:
        g = data["G_ema"]
    elif isinstance(data, PersistentObject):
        g = data
    else:
        keys = sorted(map(str, data))[:10] if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: pickle has no 'G_ema' network (found {keys})")
    if not isinstance(g, PersistentObject):
        raise ValueError(f"{path}: 'G_ema' is not a persistent network object")
    return _convert(g, path)
