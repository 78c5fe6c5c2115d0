import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stages.batch import EMPTY_IMAGE, to_column
from stages.fusion import fuse_batch, paste_fuse
from stages.load import LoadConfig, load_batch
from stages.metrics import l1, psnr, psnr_hole, score_batch, ssim
from tests.helpers import REPO, disk_mask, save_png


def _manifest_batch(rows):
    return {k: to_column([r.get(k) for r in rows]) for k in ("id", "row", "image", "mask", "gt")}


def test_load_zeroes_hole_resizes_mask_and_reports_bad_rows(tmp_path, rng):
    image = rng.integers(1, 256, (32, 32, 3), dtype=np.uint8)
    img = save_png(tmp_path / "a.png", image)
    big_mask = save_png(tmp_path / "m64.png", disk_mask(64))
    empty = save_png(tmp_path / "empty.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    batch = _manifest_batch([
        {"id": "good", "row": 0, "image": str(img), "mask": str(big_mask), "gt": str(img)},
        {"id": "nohole", "row": 1, "image": str(img), "mask": str(empty), "gt": None},
        {"id": "corrupt", "row": 2, "image": str(tmp_path / "corrupt.png"), "mask": str(big_mask), "gt": None},
        {"id": "missing", "row": 3, "image": str(tmp_path / "nope.png"), "mask": str(big_mask), "gt": None},
    ])
    out = load_batch(batch, LoadConfig())
    assert list(out["status"]) == ["ok", "error", "error", "error"]
    assert "no hole" in out["error"][1] and "corrupt.png" in out["error"][2] and "no such file" in out["error"][3]
    hole = out["hole"][0].astype(bool)
    assert hole.shape == (32, 32) and 0.1 < hole.mean() < 0.3
    assert (out["image"][0][hole] == 0).all() and np.array_equal(out["image"][0][~hole], image[~hole])
    assert np.array_equal(out["gt"][0], image) and "resized" in out["warning"][0]
    assert out["bucket"][0] == "0.10-0.20"


def test_gt_size_mismatch_is_an_error(tmp_path, rng):
    img = save_png(tmp_path / "a.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    gt = save_png(tmp_path / "gt.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    mask = save_png(tmp_path / "m.png", disk_mask(16))
    out = load_batch(_manifest_batch([{"id": "a", "row": 0, "image": str(img), "mask": str(mask), "gt": str(gt)}]))
    assert out["status"][0] == "error" and "differs" in out["error"][0]


def test_paste_keeps_known_pixels_bit_identical(rng):
    image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    hole = disk_mask(20) > 0
    fused = paste_fuse(image, generated, hole)
    assert np.array_equal(fused[~hole], image[~hole]) and np.array_equal(fused[hole], generated[hole])


def test_paste_runs_never_load_the_poisson_solver():
    """Every Ray task worker runs the fuse stage; on paste runs it must not carry numba (+27 MiB)."""
    code = ("import sys, numpy as np; from stages.fusion import fuse_batch; from stages.batch import to_column; "
            "z = np.zeros((4, 4, 3), np.uint8); h = np.ones((4, 4), np.uint8); "
            "b = {'status': to_column(['ok']), 'error': to_column([None]), 'image': to_column([z]), "
            "'hole': to_column([h]), 'generated': to_column([z])}; "
            "assert fuse_batch(b, 'paste')['status'][0] == 'ok'; "
            "assert 'numba' not in sys.modules and 'stages.fusion.poisson' not in sys.modules; "
            "from stages.fusion import poisson_fuse; assert 'numba' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("fusion", ["paste", "poisson"])
def test_fuse_batch_passes_error_rows_and_checks_shapes(rng, fusion):
    image = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    hole = (disk_mask(12) > 0).astype(np.uint8)
    batch = {"id": to_column(["a", "b", "c"]), "status": to_column(["ok", "error", "ok"]),
             "error": to_column([None, "load: x", None]), "image": to_column([image, EMPTY_IMAGE, image]),
             "hole": to_column([hole, hole, hole]),
             "generated": to_column([image[::-1].copy(), EMPTY_IMAGE, image[:5].copy()])}
    out = fuse_batch(batch, fusion)
    assert list(out["status"]) == ["ok", "error", "error"] and "generated" not in out
    assert out["error"][1] == "load: x" and "shape" in out["error"][2]
    assert np.array_equal(out["result"][0][hole == 0], image[hole == 0])
    if fusion == "poisson":  # the solver's work arrays do not outlive the batch in a task worker
        from stages.fusion.poisson_work import work_arrays
        assert work_arrays().kept_bytes == 0


def test_metrics_equal_scikit_image_on_real_faces(faces256, rng):
    hole = disk_mask(256) > 0
    for a_path, b_path in zip(faces256[:4], faces256[4:8]):
        a, b = np.asarray(Image.open(a_path).convert("RGB")), np.asarray(Image.open(b_path).convert("RGB"))
        assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-9)
        expected = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=255, channel_axis=2)
        assert ssim(a, b) == pytest.approx(expected, abs=1e-7)
        assert l1(a, b) == pytest.approx(np.abs(a.astype(float) - b).mean() / 255)
        assert psnr_hole(a, b, hole) == pytest.approx(peak_signal_noise_ratio(b[hole], a[hole], data_range=255))


def test_identical_images_are_capped_not_infinite(faces256):
    a = np.asarray(Image.open(faces256[0]).convert("RGB"))
    assert psnr(a, a) == 100.0 and ssim(a, a) == pytest.approx(1.0) and l1(a, a) == 0.0


def test_score_batch_leaves_no_gt_rows_unscored(rng):
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    hole = (disk_mask(16) > 0).astype(np.uint8)
    batch = {"status": to_column(["ok", "ok"]), "result": to_column([image, image]),
             "gt": to_column([image, EMPTY_IMAGE]), "hole": to_column([hole, hole])}
    out = score_batch(batch)
    assert out["psnr"][0] == 100.0 and np.isnan(out["psnr"][1]) and np.isnan(out["ssim"][1])
