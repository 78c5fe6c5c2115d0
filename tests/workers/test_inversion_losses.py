"""The paper's loss terms against independent computations, and the weights-folder lookup."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from workers.inversion_losses import (ALEXNET_FILE, VGG16_FILE, InversionLoss, LossConfig,
                                      load_inversion_loss, logcosh_loss, ms_ssim, ms_ssim_scales,
                                      msssim_loss, required_loss_weights)
from workers.weights_files import MissingWeightsError, find_weight, require_weight



@pytest.fixture
def weights_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "home" / "weights").mkdir(parents=True)
    return tmp_path / "home" / "weights"


@pytest.fixture(scope="module")
def vgg_state():
    """Random VGG16 trunk weights in torchvision's key layout (features only: all we read)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    return {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}


@pytest.fixture(scope="module")
def loss(vgg_state):
    return InversionLoss(LossConfig(), vgg_state=vgg_state)


def _pair(b=2, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, s, s, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(b, 3, s, s, generator=g)).clamp(-1, 1)
    known = torch.ones(b, 1, s, s)
    known[:, :, s // 4: 3 * s // 4, s // 4: 3 * s // 4] = 0
    return x, y, known


def test_logcosh_matches_numpy_on_known_pixels():
    x, y, known = _pair()
    got = logcosh_loss(x, y, known, scale=255.0).numpy()
    d = (x.numpy().astype(np.float64) - y.numpy()) * 127.5
    k = np.broadcast_to(known.numpy(), d.shape).astype(bool)
    want = [np.log(np.cosh(d[i][k[i]])).mean() for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    huge = logcosh_loss(torch.full((1, 3, 4, 4), 1.0), torch.full((1, 3, 4, 4), -1.0),
                        torch.ones(1, 1, 4, 4), scale=1e6)
    assert torch.isfinite(huge).all()


def _ssim_numpy(x, y, sigma=1.5, radius=5):
    """Gaussian SSIM and CS means per channel, 'valid' region, Wang et al.'s constants."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def f(a):
        out = gaussian_filter(a, sigma, truncate=radius / sigma, mode="constant")
        return out[radius:-radius, radius:-radius]

    ssim, cs = [], []
    for c in range(x.shape[0]):
        a, b = x[c].astype(np.float64), y[c].astype(np.float64)
        mx, my = f(a), f(b)
        sxx, syy, sxy = f(a * a) - mx ** 2, f(b * b) - my ** 2, f(a * b) - mx * my
        csm = (2 * sxy + c2) / (sxx + syy + c2)
        cs.append(csm.mean())
        ssim.append((((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)) * csm).mean())
    return np.array(ssim), np.array(cs)


def test_single_scale_ms_ssim_is_ssim_and_two_scales_combine_cs_and_ssim():
    x, y, _ = _pair(b=1, s=32)
    x01, y01 = ((x + 1) / 2), ((y + 1) / 2)
    s1, cs1 = _ssim_numpy(x01[0].numpy(), y01[0].numpy())
    one = ms_ssim(x01, y01, weights=(1.0,))
    np.testing.assert_allclose(one.numpy(), [s1.mean()], rtol=1e-4)
    pool = lambda t: t.reshape(3, 16, 2, 16, 2).mean((2, 4))  # noqa: E731
    s2, _ = _ssim_numpy(pool(x01[0].numpy()), pool(y01[0].numpy()))
    w1, w2 = 0.0448 / (0.0448 + 0.2856), 0.2856 / (0.0448 + 0.2856)
    want = (cs1 ** w1 * s2 ** w2).mean()
    np.testing.assert_allclose(ms_ssim(x01, y01).numpy(), [want], rtol=1e-4)
    assert ms_ssim(x01, x01).item() == pytest.approx(1.0, abs=1e-5)


def test_ms_ssim_scale_fallback():
    assert ms_ssim_scales(1024) == ms_ssim_scales(256) == ms_ssim_scales(176) == 5
    assert ms_ssim_scales(175) == 4 and ms_ssim_scales(32) == 2 and ms_ssim_scales(8) == 1
    tiny = torch.rand(1, 3, 8, 8)
    assert 0.99 < ms_ssim(tiny, tiny).item() <= 1.0 + 1e-6


def test_masked_out_pixels_have_no_influence(loss):
    x, y, known = _pair()
    hole = known == 0
    x2, y2 = x.clone(), y.clone()
    x2[hole.expand_as(x)] = torch.rand(int(hole.expand_as(x).sum())) * 2 - 1
    y2[hole.expand_as(y)] = 1.0
    t1, t2 = loss.terms(x, y, known), loss.terms(x2, y2, known)
    assert set(t1) == {"vgg", "logcosh", "msssim", "lpips"}
    for name in t1:
        torch.testing.assert_close(t1[name], t2[name], rtol=1e-5, atol=1e-6, msg=name)


def test_identical_images_give_zero_and_losses_are_per_image(loss):
    x, y, known = _pair(b=3)
    same = loss.terms(x, x, known)
    for name, value in same.items():
        assert value.abs().max() < 1e-5, name
    diff = loss.terms(x, y, known)
    assert all((v > 0).all() for v in diff.values())
    total = loss(x, y, known)
    alone = torch.cat([loss(x[i:i + 1], y[i:i + 1], known[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(total, alone, rtol=1e-4, atol=1e-4)
    assert total.shape == (3,)


def test_shared_trunk_lpips_equals_lpips_package(vgg_state):
    import lpips

    ours = InversionLoss(LossConfig(lambda_vgg=0, lambda_logcosh=0, lambda_msssim=0),
                         vgg_state=vgg_state)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    ref.net.load_state_dict({k: vgg_state["features." + k.split(".", 1)[1]]
                             for k in ref.net.state_dict()})
    x, y, _ = _pair()
    full = torch.ones(2, 1, 32, 32)
    assert set(ours.terms(x, y, full)) == {"lpips"}
    torch.testing.assert_close(ours.terms(x, y, full)["lpips"], ref(x, y).flatten(),
                               rtol=1e-4, atol=1e-6)


def test_msssim_loss_range():
    x, y, known = _pair()
    value = msssim_loss(x, y, known)
    assert ((value > 0) & (value < 1)).all()


def test_weighted_sum_uses_paper_lambdas(loss):
    x, y, known = _pair()
    t = loss.terms(x, y, known)
    want = 0.4 * t["vgg"] + 1.5 * t["logcosh"] + 100 * t["msssim"] + 100 * t["lpips"]
    torch.testing.assert_close(loss(x, y, known), want)


def test_loader_reads_local_files_and_reports_every_missing_one(weights_home, vgg_state):
    cfg = LossConfig(lpips_net="alex")
    assert required_loss_weights(cfg) == [VGG16_FILE, ALEXNET_FILE]
    assert required_loss_weights(LossConfig()) == [VGG16_FILE]
    with pytest.raises(MissingWeightsError) as err:
        load_inversion_loss(cfg)
    msg = str(err.value)
    assert VGG16_FILE in msg and ALEXNET_FILE in msg and str(weights_home) in msg
    assert "pipeline weights import" in msg and "download.pytorch.org/models" in msg
    assert isinstance(err.value, FileNotFoundError)

    torch.save(vgg_state, weights_home / VGG16_FILE)
    from torchvision.models import alexnet

    alex = {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("feat")}
    torch.save(alex, weights_home / ALEXNET_FILE)
    model = load_inversion_loss(cfg)
    torch.testing.assert_close(model.vgg[0].weight, vgg_state["features.0.weight"])
    torch.testing.assert_close(model.lpips.net.slice1[0].weight, alex["features.0.weight"])
    x, y, known = _pair()
    assert model(x, y, known).shape == (2,)


def test_torch_hub_cache_is_accepted(weights_home, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / ALEXNET_FILE).write_bytes(b"x")
    assert require_weight(ALEXNET_FILE) == hub / ALEXNET_FILE
    (weights_home / ALEXNET_FILE).write_bytes(b"y")
    assert find_weight(ALEXNET_FILE) == weights_home / ALEXNET_FILE  # facefill's folder first
    with pytest.raises(MissingWeightsError, match="the path given does not exist"):
        require_weight(str(tmp_path / "nope" / "g.pt"))
