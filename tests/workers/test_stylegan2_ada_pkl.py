"""Tests for the NVIDIA stylegan2-ada .pkl importer.

Pickles are built here the way stylegan2-ada-pytorch writes them (persistent objects reducing to
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, EasyDict kwargs, plainly pickled
tensors) through fake ``torch_utils``/``dnnlib`` modules, and the imported generator is compared
with an independent plain-torch forward written from the ADA formulas.
"""

from __future__ import annotations

import math
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workers.nets.stylegan2 import load_generator
from workers.nets.stylegan2_ada_pkl import load_ada_pickle

MARKER_NAME = "module_src_was_executed"


@pytest.fixture()
def fake_ada_modules(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Register stand-ins for torch_utils.persistence and dnnlib.util so pickle can write them."""
    tu, tup = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    dn, dnu = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # never called by the importer
        raise AssertionError("the real reconstructor must not run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    tup._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    dnu.EasyDict = EasyDict
    tu.persistence, dn.util = tup, dnu
    for name, mod in [("torch_utils", tu), ("torch_utils.persistence", tup), ("dnnlib", dn),
                      ("dnnlib.util", dnu)]:
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict)


class _Persistent:
    """Pickles exactly like a stylegan2-ada persistent module."""

    def __init__(self, fake: types.SimpleNamespace, meta: dict):
        self.fake, self.meta = fake, meta

    def __reduce__(self):
        return self.fake.reconstruct, (self.meta,)


def _module(fake, tmp: Path, class_name: str, params=None, buffers=None, modules=None,
            init_kwargs=None, **attrs) -> _Persistent:
    state = {"training": False,
             "_parameters": OrderedDict((k, torch.nn.Parameter(v)) for k, v in (params or {}).items()),
             "_buffers": OrderedDict(buffers or {}), "_non_persistent_buffers_set": set(),
             "_modules": OrderedDict(modules or {}), "_forward_hooks": OrderedDict(),
             "_init_args": (), "_init_kwargs": fake.EasyDict(init_kwargs or {}), **attrs}
    src = f"import pathlib\npathlib.Path({str(tmp / MARKER_NAME)!r}).write_text('x')\n"
    return _Persistent(fake, {"type": "class", "version": 4, "module_src": src,
                              "class_name": f"training.networks.{class_name}", "state": state})


def _random_ada_params(res: int, widths: dict[int, int], w_dim: int, n_fc: int, lr: float,
                       seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under ADA names, stored with ADA's conventions (fc weight = randn / lr)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    p: dict[str, torch.Tensor] = {}
    for i in range(n_fc):
        p[f"mapping.fc{i}.weight"], p[f"mapping.fc{i}.bias"] = r(w_dim, w_dim) / lr, r(w_dim)
    p["mapping.w_avg"] = r(w_dim) * 0.3
    f = torch.tensor([1.0, 3, 3, 1])
    filt = torch.outer(f, f) / 64
    res_list = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
    for rr in res_list:
        b, out_ch = f"synthesis.b{rr}.", widths[rr]
        p[b + "resample_filter"] = filt
        if rr == 4:
            p[b + "const"] = r(out_ch, 4, 4)
        names = ["conv1"] if rr == 4 else ["conv0", "conv1"]
        for name in names:
            in_ch = widths[rr // 2] if name == "conv0" else out_ch
            L = b + name + "."
            p[L + "weight"], p[L + "bias"] = r(out_ch, in_ch, 3, 3), r(out_ch) * 0.2
            p[L + "affine.weight"], p[L + "affine.bias"] = r(in_ch, w_dim), 1 + 0.1 * r(in_ch)
            p[L + "noise_strength"], p[L + "noise_const"] = r(()) * 0.3, r(rr, rr)
            if name == "conv0":
                p[L + "resample_filter"] = filt
        T = b + "torgb."
        p[T + "weight"], p[T + "bias"] = r(3, out_ch, 1, 1), r(3) * 0.1
        p[T + "affine.weight"], p[T + "affine.bias"] = r(out_ch, w_dim), 1 + 0.1 * r(out_ch)
    return p


def _write_ada_pickle(fake, tmp: Path, p: dict, res: int, w_dim: int, n_fc: int, lr: float,
                      cbase: int, cmax: int, conv_clamp: float | None) -> Path:
    """Assemble the persistent module tree around the tensors and pickle a snapshot dict."""
    def fc(prefix: str, lr_mul: float) -> _Persistent:
        in_f = p[prefix + "weight"].shape[1]
        return _module(fake, tmp, "FullyConnectedLayer",
                       {"weight": p[prefix + "weight"], "bias": p[prefix + "bias"]},
                       weight_gain=np.float64(lr_mul / np.sqrt(in_f)), bias_gain=lr_mul,
                       activation="lrelu" if lr_mul != 1 else "linear")

    def layer(prefix: str, up: int) -> _Persistent:
        bufs = {"noise_const": p[prefix + "noise_const"]}
        if up == 2:
            bufs["resample_filter"] = p[prefix + "resample_filter"]
        return _module(fake, tmp, "SynthesisLayer",
                       {k: p[prefix + k] for k in ("weight", "noise_strength", "bias")}, bufs,
                       {"affine": fc(prefix + "affine.", 1.0)}, up=up, conv_clamp=conv_clamp,
                       act_gain=np.float32(np.sqrt(2)))

    def torgb(prefix: str) -> _Persistent:
        return _module(fake, tmp, "ToRGBLayer", {k: p[prefix + k] for k in ("weight", "bias")},
                       modules={"affine": fc(prefix + "affine.", 1.0)}, conv_clamp=conv_clamp)

    blocks = {}
    for rr in [2 ** i for i in range(2, int(math.log2(res)) + 1)]:
        b = f"synthesis.b{rr}."
        mods = {"conv1": layer(b + "conv1.", 1)} if rr == 4 else {
            "conv0": layer(b + "conv0.", 2), "conv1": layer(b + "conv1.", 1)}
        mods["torgb"] = torgb(b + "torgb.")
        params = {"const": p[b + "const"]} if rr == 4 else {}
        blocks[f"b{rr}"] = _module(fake, tmp, "SynthesisBlock", params,
                                   {"resample_filter": p[b + "resample_filter"]}, mods,
                                   resolution=rr, architecture="skip")
    syn_kwargs = fake.EasyDict(channel_base=cbase, channel_max=cmax, num_fp16_res=4,
                               conv_clamp=conv_clamp)
    mapping = _module(fake, tmp, "MappingNetwork", buffers={"w_avg": p["mapping.w_avg"]},
                      modules={f"fc{i}": fc(f"mapping.fc{i}.", lr) for i in range(n_fc)},
                      init_kwargs={"z_dim": w_dim, "c_dim": 0, "w_dim": w_dim, "num_ws": 0})
    synthesis = _module(fake, tmp, "SynthesisNetwork", modules=blocks,
                        init_kwargs={"w_dim": w_dim, "img_resolution": res, **syn_kwargs})
    g_ema = _module(fake, tmp, "Generator", modules={"synthesis": synthesis, "mapping": mapping},
                    init_kwargs=dict(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=res,
                                     img_channels=3,
                                     mapping_kwargs=fake.EasyDict(num_layers=n_fc,
                                                                  lr_multiplier=lr),
                                     synthesis_kwargs=syn_kwargs))
    path = tmp / "network-snapshot.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"training_set_kwargs": fake.EasyDict(resolution=res), "G": g_ema,
                     "D": None, "G_ema": g_ema, "augment_pipe": None}, fh)
    return path


# ---------------------------------------------------------------- independent ADA forward
def _fc(x, w, b, lr, lrelu):
    x = x @ (w * (lr / math.sqrt(w.shape[1]))).T + b * lr
    return F.leaky_relu(x, 0.2) * math.sqrt(2) if lrelu else x


def _fir(x, f, pad, up=1, gain=1.0):
    """upfirdn2d from its definition: zero-insert, pad, true convolution with f * gain."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = (f.flip([0, 1]) * gain)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def _modconv(x, weight, styles, demod, up, f):
    """Per-sample ADA modulated conv; the transposed conv is done as dilate + pad + flipped conv."""
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, 1, 1)
        if demod:
            w = w * (w.square().sum(dim=[1, 2, 3]) + 1e-8).rsqrt().reshape(-1, 1, 1, 1)
        xi = x[i:i + 1]
        if up == 2:
            k = w.shape[-1]
            d = xi.new_zeros(1, xi.shape[1], 2 * xi.shape[2] - 1, 2 * xi.shape[3] - 1)
            d[:, :, ::2, ::2] = xi
            y = F.conv2d(F.pad(d, [k - 1] * 4), w.flip([2, 3]))  # == conv_transpose2d stride 2
            y = _fir(y, f, (1, 1), gain=4.0)
        else:
            y = F.conv2d(xi, w, padding=w.shape[-1] // 2)
        outs.append(y)
    return torch.cat(outs)


def _ada_forward(p, z, res, n_fc, lr, clamp, psi=1.0, noise_mode="const"):
    x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    for i in range(n_fc):
        x = _fc(x, p[f"mapping.fc{i}.weight"], p[f"mapping.fc{i}.bias"], lr, True)
    w = p["mapping.w_avg"].lerp(x, psi)
    f = p["synthesis.b4.resample_filter"]
    h = p["synthesis.b4.const"][None].repeat(z.shape[0], 1, 1, 1)
    img, wi = None, 0

    def layer(L, h, wv, up):
        s = _fc(wv, p[L + "affine.weight"], p[L + "affine.bias"], 1.0, False)
        h = _modconv(h, p[L + "weight"], s, True, up, f)
        if noise_mode == "const":
            h = h + p[L + "noise_const"] * p[L + "noise_strength"]
        h = F.leaky_relu(h + p[L + "bias"].reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)
        return h.clamp(-clamp, clamp) if clamp is not None else h

    for rr in [2 ** i for i in range(2, int(math.log2(res)) + 1)]:
        b = f"synthesis.b{rr}."
        names = ["conv1"] if rr == 4 else ["conv0", "conv1"]
        for j, name in enumerate(names):
            h = layer(b + name + ".", h, w, 2 if name == "conv0" else 1)
        T = b + "torgb."
        s = _fc(w, p[T + "affine.weight"], p[T + "affine.bias"], 1.0, False)
        s = s / math.sqrt(p[T + "weight"].shape[1])
        y = _modconv(h, p[T + "weight"], s, False, 1, f) + p[T + "bias"].reshape(1, -1, 1, 1)
        y = y.clamp(-clamp, clamp) if clamp is not None else y
        img = y if img is None else _fir(img, f, (2, 1), up=2, gain=4.0) + y
        wi += len(names)
    return x, img


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("conv_clamp", [None, 0.8])
def test_imported_generator_matches_ada_semantics(tmp_path, fake_ada_modules, conv_clamp):
    res, w_dim, n_fc, lr, cbase, cmax = 32, 32, 2, 0.01, 512, 48
    widths = {r: min(cbase // r, cmax) for r in (4, 8, 16, 32)}  # 48, 48, 32, 16: not rosinality
    p = _random_ada_params(res, widths, w_dim, n_fc, lr)
    path = _write_ada_pickle(fake_ada_modules, tmp_path, p, res, w_dim, n_fc, lr, cbase, cmax,
                             conv_clamp)
    sd, cfg = load_ada_pickle(path)
    assert cfg["size"] == res and cfg["channels"] == widths and cfg["n_mlp"] == n_fc
    assert cfg["conv_clamp"] == conv_clamp and cfg["lr_mlp"] == pytest.approx(lr)
    assert sd["conv1.conv.weight"].shape == (1, 48, 48, 3, 3)
    assert sd["noises.noise_0"].shape == (1, 1, 4, 4) and sd["conv1.noise.weight"].shape == (1,)
    assert sd["to_rgbs.2.bias"].shape == (1, 3, 1, 1)

    g = load_generator(path)
    assert g.n_latent == 8 and g.channels == widths
    assert torch.equal(g.latent_avg, p["mapping.w_avg"])
    z = torch.randn(3, w_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        w_ref, img_ref = _ada_forward(p, z, res, n_fc, lr, conv_clamp)
        _, img_ref_t = _ada_forward(p, z, res, n_fc, lr, conv_clamp, psi=0.6, noise_mode="none")
        w = g.mapping(z)
        img = g.synthesis(w, noise_mode="const")
        img_t = g.synthesis(g.truncate(w, 0.6), noise_mode="none")
    assert torch.allclose(w, w_ref, atol=1e-5, rtol=1e-5)
    assert img.shape == (3, 3, 32, 32) and img_ref.abs().max() > 0.1
    assert torch.allclose(img, img_ref, atol=1e-4), (img - img_ref).abs().max()
    assert torch.allclose(img_t, img_ref_t, atol=1e-4), (img_t - img_ref_t).abs().max()
    other = tmp_path / "snapshot.bin"  # dispatch on content, not only the extension
    other.write_bytes(path.read_bytes())
    with torch.no_grad():
        assert torch.equal(load_generator(other).synthesis(w), img)
    assert not (tmp_path / MARKER_NAME).exists()


def test_module_src_never_executed(tmp_path, fake_ada_modules):
    res, w_dim = 8, 16
    widths = {4: 16, 8: 16}
    p = _random_ada_params(res, widths, w_dim, 1, 0.01)
    path = _write_ada_pickle(fake_ada_modules, tmp_path, p, res, w_dim, 1, 0.01, 128, 16, None)
    raw = path.read_bytes()
    assert MARKER_NAME.encode() in raw  # the payload really is in the pickle
    for mod in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        sys.modules.pop(mod)  # importer must not need the real packages either
    sd, cfg = load_ada_pickle(path)
    assert cfg["size"] == 8 and "latent_avg" in sd
    assert not (tmp_path / MARKER_NAME).exists()


class _Evil:
    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


def test_refuses_foreign_globals(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(f"touch {marker}")}))
    with pytest.raises(ValueError, match=r"evil\.pkl.*refusing.*system"):
        load_ada_pickle(path)
    with pytest.raises(ValueError, match="evil.pkl"):
        load_generator(path)
    assert not marker.exists()


def test_rejects_non_ada_content(tmp_path, fake_ada_modules):
    no_g = tmp_path / "no_g.pkl"
    no_g.write_bytes(pickle.dumps({"G": 1}))
    with pytest.raises(ValueError, match="no 'G_ema'"):
        load_ada_pickle(no_g)
    p = _random_ada_params(8, {4: 16, 8: 16}, 16, 1, 0.01)
    path = _write_ada_pickle(fake_ada_modules, tmp_path, p, 8, 16, 1, 0.01, 64, 8, None)
    with pytest.raises(ValueError, match="width 16 at resolution 4"):
        load_ada_pickle(path)  # channel_max 8 disagrees with the tensors
