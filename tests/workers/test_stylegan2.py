"""Tests for workers.nets.stylegan2: rosinality parity (io_64.pt), key layout, loading, noise."""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import pytest
import torch

from workers.nets.stylegan2 import CONFIG_KEY, Generator, load_generator
from workers.nets.stylegan2_testing import make_tiny_checkpoint

REF = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "stylegan2"
needs_ref = pytest.mark.skipif(not (REF / "io_64.pt").is_file(), reason="reference data missing")


def _read_keys(name: str) -> list[list[str]]:
    lines = (REF / name).read_text().splitlines()
    return [ln.split("\t") for ln in lines if ln.strip() and not ln.startswith("#")]


def _our_keys(g: Generator) -> list[list[str]]:
    params = {n for n, _ in g.named_parameters()}
    return [[k, "P" if k in params else "B", str(list(v.shape))] for k, v in g.state_dict().items()]


def _rule(name: str, shape: torch.Size) -> torch.Tensor:
    """The README's deterministic weight rule."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    t = torch.randn(shape, generator=g, dtype=torch.float32)
    return t if name.endswith("weight") else t * 0.5


@pytest.fixture(scope="module")
def ref_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REF / "io_64.pt").is_file():
        pytest.skip("reference data missing")
    g = Generator(64, style_dim=512, n_mlp=8, channel_multiplier=1)
    sd = {k: v if k.endswith(".kernel") else _rule(k, v.shape) for k, v in g.state_dict().items()}
    path = tmp_path_factory.mktemp("ref") / "g64.pt"
    torch.save({"g_ema": sd, "latent_avg": _rule("latent_avg", torch.Size([512]))}, path)
    return path


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt")


@needs_ref
def test_keys_64_match_reference() -> None:
    with torch.device("meta"):
        g = Generator(64, channel_multiplier=1)
    assert _our_keys(g) == _read_keys("keys_64.txt")


@needs_ref
def test_keys_1024_config_f_match_reference() -> None:
    with torch.device("meta"):
        g = Generator(1024, channel_multiplier=2)
    assert _our_keys(g) == _read_keys("keys_1024_config_f.txt")
    assert g.n_latent == 18 and g.num_layers == 17


@pytest.mark.parametrize("size,n_latent", [(64, 10), (128, 12), (256, 14), (512, 16), (1024, 18)])
def test_n_latent(size: int, n_latent: int) -> None:
    with torch.device("meta"):
        g = Generator(size)
    assert g.n_latent == n_latent and g.size == size and g.style_dim == 512


@needs_ref
def test_parity_with_rosinality_io64(ref_ckpt: Path) -> None:
    io = torch.load(REF / "io_64.pt", map_location="cpu", weights_only=True)
    g = load_generator(ref_ckpt)
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    assert torch.equal(g.latent_avg, _rule("latent_avg", torch.Size([512])))
    sd = g.state_dict()
    for name, kernel in io["fir_kernels"].items():
        assert torch.equal(sd[name], kernel), name
    with torch.no_grad():
        w = g.mapping(io["z"])
        both = g.synthesis(torch.cat([w, g.truncate(w, 0.7)]))  # one batched forward
    img_z, img_t = both[:2], both[2:]
    wplus = io["wplus"].clone().requires_grad_(True)
    img_w = g.synthesis(wplus)
    loss = img_w.square().mean()
    loss.backward()
    dev = {"img_from_z": img_z, "img_from_wplus": img_w.detach(), "img_from_z_trunc0p7": img_t,
           "loss_sq_mean": loss.detach(), "grad_wplus": wplus.grad}
    for name, ours in dev.items():
        err = (ours - io[name]).abs().max().item()
        print(f"{name}: max abs dev {err:.3g}")
        assert err < 1e-4, (name, err)


def test_load_errors(tmp_path: Path, tiny_path: Path) -> None:
    ckpt = torch.load(tiny_path, weights_only=True)
    with pytest.raises(ValueError, match="not found"):
        load_generator(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_generator(junk)
    no_g = tmp_path / "no_g.pt"
    torch.save({"state": ckpt["g_ema"]["input.input"]}, no_g)
    with pytest.raises(ValueError, match="no 'g_ema'"):
        load_generator(no_g)
    for name, edit in [("missing", lambda sd: sd.pop("convs.1.noise.weight")),
                       ("unexpected", lambda sd: sd.__setitem__("extra.weight", torch.zeros(1))),
                       ("shape", lambda sd: sd.__setitem__("conv1.activate.bias", torch.zeros(7)))]:
        bad = dict(ckpt)
        bad["g_ema"] = dict(ckpt["g_ema"])
        edit(bad["g_ema"])
        path = tmp_path / f"{name}.pt"
        torch.save(bad, path)
        with pytest.raises(ValueError, match=rf"{name}.pt.*(missing keys|unexpected keys|shape)"):
            load_generator(path)


def test_infers_layout_without_config(tmp_path: Path, tiny_path: Path) -> None:
    """A plain rosinality file (no facefill_config, no kernels, args Namespace) still loads."""
    ckpt = torch.load(tiny_path, weights_only=True)
    sd = {k: v for k, v in ckpt["g_ema"].items() if not k.endswith(".kernel")}
    path = tmp_path / "plain.pt"
    torch.save({"g_ema": sd, "latent_avg": ckpt["latent_avg"],
                "args": argparse.Namespace(size=32)}, path)
    g, ref = load_generator(path), load_generator(tiny_path)
    assert g.channels == ref.channels and g.n_latent == ref.n_latent == 8
    assert g.config["n_mlp"] == 2 and g.style_dim == 64
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(g(z), ref(z))


def test_noise_modes_and_broadcast(tiny_path: Path) -> None:
    g = load_generator(tiny_path)
    w = g.mapping(torch.randn(2, g.style_dim, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        const = g.synthesis(w, noise_mode="const")
        assert torch.equal(const, g.synthesis(w.unsqueeze(1).repeat(1, g.n_latent, 1)))
        assert torch.equal(const, g.synthesis(w))  # deterministic
        r1, r2 = g.synthesis(w, "random"), g.synthesis(w, "random")
        none = g.synthesis(w, "none")
        for n in range(g.num_layers):
            getattr(g.noises, f"noise_{n}").zero_()
        zero_const = g.synthesis(w, "const")
    assert not torch.allclose(r1, r2) and not torch.allclose(r1, const)
    assert torch.allclose(none, zero_const, atol=1e-6)
    assert not torch.allclose(none, const)
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(w, "bogus")
    with pytest.raises(ValueError, match="W\\+"):
        g.synthesis(torch.zeros(1, 3, g.style_dim))


def test_tiny_generator_fast_backward_and_range(tiny_path: Path) -> None:
    ckpt = torch.load(tiny_path, weights_only=True)
    assert set(ckpt) == {"g_ema", "latent_avg", CONFIG_KEY}
    g = load_generator(tiny_path)
    assert g.size == 32 and max(g.channels.values()) <= 64
    z = torch.randn(4, g.style_dim, generator=torch.Generator().manual_seed(2))
    wplus = g.truncate(g.mapping(z), 0.9).unsqueeze(1).repeat(1, g.n_latent, 1)
    wplus.requires_grad_(True)
    img = g.synthesis(wplus)
    img.square().mean().backward()
    assert img.shape == (4, 3, 32, 32) and wplus.grad is not None
    assert wplus.grad.abs().sum() > 0 and all(p.grad is None for p in g.parameters())
    assert img.abs().max() < 4 and 0.05 < img.std() < 1.5
    assert (img[0] - img[1]).abs().mean() > 1e-2  # depends on the latent


def test_mean_latent_computed_when_absent(tmp_path: Path, tiny_path: Path) -> None:
    ckpt = torch.load(tiny_path, weights_only=True)
    path = tmp_path / "noavg.pt"
    torch.save({"g_ema": ckpt["g_ema"], CONFIG_KEY: ckpt[CONFIG_KEY]}, path)
    g = load_generator(path)
    assert not g.has_latent_avg
    avg = g.mean_latent()
    assert g.has_latent_avg and avg.shape == (g.style_dim,)
    assert torch.allclose(avg, ckpt["latent_avg"], atol=1e-5)  # same seed/count as the helper
    w = torch.randn(3, g.style_dim)
    assert torch.allclose(g.truncate(w, 0.0), avg.expand(3, -1))
    assert torch.allclose(g.truncate(w, 0.3), avg.lerp(w, 0.3), atol=1e-6)


def test_conv_clamp_limits_layer_outputs() -> None:
    torch.manual_seed(0)
    g = Generator(16, style_dim=16, n_mlp=1, channels={4: 8, 8: 8, 16: 8}, conv_clamp=0.25)
    acts = []
    for m in [g.conv1, *g.convs]:
        m.register_forward_hook(lambda _m, _i, out: acts.append(out))
    with torch.no_grad():
        g.synthesis(torch.randn(2, g.style_dim))
    assert max(a.abs().max().item() for a in acts) <= 0.25
