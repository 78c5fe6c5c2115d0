"""LPIPS and MS-SSIM metrics: checked against independent computations, on real faces."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import correlate1d

from stages.batch import EMPTY_IMAGE, to_column
from stages.metrics import MS_SSIM_MIN_SIDE, ScoreConfig, ms_ssim, score_batch, score_row, ssim, ssim_hole
from stages.perceptual import build_lpips, cached_lpips, lpips_distances
from tests.helpers import save_random_torchvision


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    return save_random_torchvision(tmp_path_factory.mktemp("weights"), "alexnet")


@pytest.fixture(scope="module")
def faces(faces256):
    return [np.asarray(Image.open(p).convert("RGB")) for p in faces256[:4]]


def _independent_lpips(state: dict, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS(alex) written out from the paper's definition with torchvision's AlexNet: ReLU
    outputs 1-5, unit-normalised over channels, squared difference, the package's learned 1x1
    weights, spatial mean, summed over layers."""
    import lpips
    from pathlib import Path
    from torchvision.models import alexnet

    net = alexnet(weights=None)
    net.load_state_dict(state)
    heads = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(x: np.ndarray) -> list[torch.Tensor]:
        h = (torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].double() / 127.5 - 1 - shift) / scale
        out = []
        for i, layer in enumerate(net.features.double()):
            h = layer(h)
            if i in (1, 4, 7, 9, 11):
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    total = 0.0
    with torch.no_grad():
        for k, (fa, fb) in enumerate(zip(feats(a), feats(b))):
            w = heads[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
            total += float(((fa - fb) ** 2 * w).sum(1).mean())
    return total


def test_lpips_matches_the_definition_and_is_zero_for_identical_images(alexnet_file, faces):
    state = torch.load(alexnet_file, weights_only=True)
    model = build_lpips("alex", state)
    noisy = np.clip(faces[0].astype(int) + np.random.default_rng(0).integers(-40, 40, faces[0].shape), 0, 255).astype(np.uint8)
    ours = lpips_distances(model, [faces[0], noisy], [faces[0], faces[0]])
    assert ours[0] == pytest.approx(0.0, abs=1e-7)
    assert ours[1] == pytest.approx(_independent_lpips(state, noisy, faces[0]), rel=1e-4)
    assert ours[1] > 0


def test_lpips_batching_does_not_change_values_and_mixed_sizes_work(alexnet_file, faces):
    model = cached_lpips("alex", str(alexnet_file))
    small = faces[3][::2, ::2].copy()
    outputs = [faces[1], faces[2], small, faces[0]]
    gts = [faces[0], faces[0], faces[0][::2, ::2].copy(), faces[1]]
    together = lpips_distances(model, outputs, gts, batch_size=3)
    alone = [lpips_distances(model, [o], [g])[0] for o, g in zip(outputs, gts)]
    assert together == pytest.approx(alone, rel=1e-5)
    assert cached_lpips("alex", str(alexnet_file)) is model


def test_lpips_refuses_a_state_dict_that_is_not_its_trunk(alexnet_file):
    with pytest.raises(ValueError, match="features.0"):
        build_lpips("alex", {"classifier.1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="alex, vgg"):
        build_lpips("squeeze", None)


def _independent_ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """MS-SSIM (Wang et al. 2003) in numpy: valid-window Gaussian statistics, 2x2 average pooling."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z):
        return correlate1d(correlate1d(z, g, axis=0), g, axis=1)[5:-5, 5:-5]

    per_channel = []
    for c in range(3):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        value = 1.0
        for level, w in enumerate(weights):
            ma, mb = blur(a), blur(b)
            va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
            cs = (2 * cov + c2) / (va + vb + c2)
            if level < 4:
                value *= max(cs.mean(), 0) ** w
                a = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean((1, 3))
                b = b.reshape(b.shape[0] // 2, 2, b.shape[1] // 2, 2).mean((1, 3))
            else:
                lum = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
                value *= max((lum * cs).mean(), 0) ** w
        per_channel.append(value)
    return float(np.mean(per_channel))


def test_ms_ssim_matches_the_definition_and_is_one_for_identical_images(faces):
    damaged = faces[0].copy()
    damaged[80:160, 60:200] = 0
    assert ms_ssim(faces[0], faces[0]) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(faces[1], faces[0]) == pytest.approx(_independent_ms_ssim(faces[1], faces[0]), abs=1e-6)
    assert ms_ssim(damaged, faces[0]) == pytest.approx(_independent_ms_ssim(damaged, faces[0]), abs=1e-6)
    assert ms_ssim(damaged, faces[0]) < ms_ssim(faces[0], faces[0])
    tiny = faces[0][: MS_SSIM_MIN_SIDE - 1, : MS_SSIM_MIN_SIDE - 1]
    assert np.isnan(ms_ssim(tiny, tiny))


@pytest.mark.parametrize("height, width", [(256, 256), (201, 233), (161, 300)])  # even, odd, smallest side
def test_ms_ssim_equals_pytorch_msssim(faces, height, width):
    from pytorch_msssim import ms_ssim as reference

    a = np.asarray(Image.fromarray(faces[0]).resize((width, height)))
    b = np.array(Image.fromarray(faces[1]).resize((width, height)))
    b[height // 3: height // 2] = 0

    def ref(x, y):
        t = [torch.from_numpy(np.array(z)).permute(2, 0, 1)[None].double() for z in (x, y)]
        return float(reference(*t, data_range=255, win_size=11, win_sigma=1.5))

    assert ms_ssim(a, b) == pytest.approx(ref(a, b), abs=1e-6)
    assert ms_ssim(b, a) == pytest.approx(ref(b, a), abs=1e-6)


def test_score_batch_adds_lpips_and_ms_ssim_only_to_scored_rows(alexnet_file, faces):
    hole = np.zeros((256, 256), np.uint8)
    hole[100:150, 100:150] = 1
    batch = {"id": np.array(["a", "b", "c"]), "status": np.array(["ok", "ok", "error"], dtype=object),
             "result": to_column([faces[1], faces[2], EMPTY_IMAGE]), "gt": to_column([faces[0], EMPTY_IMAGE, EMPTY_IMAGE]),
             "hole": to_column([hole, hole, np.zeros((0, 0), np.uint8)])}
    config = ScoreConfig(lpips_net="alex", lpips_backbone=str(alexnet_file))
    out = score_batch(batch, config)
    model = cached_lpips("alex", str(alexnet_file))
    assert out["lpips"][0] == pytest.approx(lpips_distances(model, [faces[1]], [faces[0]])[0], rel=1e-6)
    assert out["ms_ssim"][0] == pytest.approx(ms_ssim(faces[1], faces[0]))
    assert np.isnan(out["lpips"][1:]).all() and np.isnan(out["ms_ssim"][1:]).all()  # no gt / failed row
    plain = score_batch(batch)  # default: MS-SSIM on, LPIPS off
    assert np.isnan(plain["lpips"]).all() and plain["ms_ssim"][0] == out["ms_ssim"][0]
    assert plain["psnr"][0] == out["psnr"][0] and (out["t_score"][:1] > 0).all()


def test_vgg_lpips_loads_the_torchvision_vgg16_trunk(faces):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}  # the trunk's keys
    model = build_lpips("vgg", state)
    assert torch.equal(getattr(model.net.slice1, "0").weight, state["features.0.weight"])
    assert torch.equal(getattr(model.net.slice5, "28").weight, state["features.28.weight"])
    same, different = lpips_distances(model, [faces[0], faces[1]], [faces[0], faces[0]])
    assert same == pytest.approx(0.0, abs=1e-7) and different > 0


def _float64_ssim_maps(x: np.ndarray, y: np.ndarray, blur) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-channel SSIM and contrast-structure maps written plainly: one channel at a time, float64,
    the 5 blurred moments each on its own (the metrics' code before it was made fast)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_maps, cs_maps = [], []
    for c in range(x.shape[2]):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        ma, mb = blur(a), blur(b)
        va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
        cs = (2 * cov + c2) / (va + vb + c2)
        ssim_maps.append((2 * ma * mb + c1) / (ma**2 + mb**2 + c1) * cs)
        cs_maps.append(cs)
    return ssim_maps, cs_maps


def _float64_metrics(x: np.ndarray, y: np.ndarray, hole: np.ndarray) -> tuple[float, float, float]:
    """(SSIM, masked SSIM, MS-SSIM) from `_float64_ssim_maps`; MS-SSIM pools with numpy."""
    import cv2

    def same(z):
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    def valid(z):
        return correlate1d(correlate1d(z, kernel, axis=0), kernel, axis=1)[5:-5, 5:-5]

    def pool(z):  # torch avg_pool2d(2, padding=side % 2): a zero before an odd side, counted
        z = np.pad(z, [(z.shape[0] % 2, 0), (z.shape[1] % 2, 0), (0, 0)])
        return z[: z.shape[0] // 2 * 2, : z.shape[1] // 2 * 2].reshape(
            z.shape[0] // 2, 2, z.shape[1] // 2, 2, -1).mean(axis=(1, 3))

    kernel = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    kernel /= kernel.sum()
    maps, _ = _float64_ssim_maps(x, y, same)
    ssim_value = float(np.mean([m[5:-5, 5:-5].mean() for m in maps]))
    hole_value = float(np.mean(maps, axis=0)[hole].mean())
    a, b, value = x.astype(np.float64), y.astype(np.float64), np.ones(x.shape[2])
    for level, weight in enumerate((0.0448, 0.2856, 0.3001, 0.2363, 0.1333)):
        ssim_maps, cs_maps = _float64_ssim_maps(a, b, valid)
        chosen = cs_maps if level < 4 else ssim_maps
        value *= np.maximum([m.mean() for m in chosen], 0) ** weight
        a, b = pool(a), pool(b)
    return ssim_value, hole_value, float(value.mean())


def test_fast_ssim_and_ms_ssim_equal_plain_float64_on_real_faces(faces256, nvidia_masks):
    """The fast path (float64 channel planes, 4 blurs a scale, OpenCV pooling, SSIM's finest
    scale shared with MS-SSIM) against the plain computation, on real faces: different faces, a
    face with a real NVIDIA hole zeroed, a noisy one, odd and non-square sizes.
    The contract is 1e-6; the fast path is float64 and is off by ~1e-14, while float32 (even
    centred) was off by ~1e-6, so 1e-9 tells a precision loss on a handful of pairs."""
    faces = [np.asarray(Image.open(p).convert("RGB")) for p in faces256[:6]]
    cases = []
    for i in range(3):
        hole = np.asarray(Image.open(nvidia_masks[7 * i]).convert("L").resize((256, 256), Image.NEAREST)) > 0
        damaged = faces[i].copy()
        damaged[hole] = 0
        noisy = np.clip(faces[i] + np.random.default_rng(i).integers(-20, 21, faces[i].shape), 0, 255).astype(np.uint8)
        cases += [(faces[i], faces[i + 3], hole), (damaged, faces[i], hole), (noisy, faces[i], hole)]
    for height, width in [(201, 233), (161, 300)]:
        a = np.asarray(Image.fromarray(faces[4]).resize((width, height)))
        b = np.array(Image.fromarray(faces[5]).resize((width, height)))
        hole = np.zeros((height, width), bool)
        hole[height // 3: height // 2, width // 4:] = True
        b[hole] = 0
        cases.append((b, a, hole))
    for output, gt, hole in cases:
        want_ssim, want_hole, want_ms = _float64_metrics(output, gt, hole)
        row = score_row(output, gt, hole, with_ms_ssim=True)
        assert ssim(output, gt) == row["ssim"] == pytest.approx(want_ssim, abs=1e-9)
        assert ssim_hole(output, gt, hole) == pytest.approx(want_hole, abs=1e-9)
        assert ms_ssim(output, gt) == pytest.approx(want_ms, abs=1e-9)
        assert row["ms_ssim"] == pytest.approx(want_ms, abs=1e-9)
    same = faces[0]
    assert ssim(same, same) == ms_ssim(same, same) == ssim_hole(same, same, same[..., 0] > 0) == 1.0
