"""Crop strategy: methods with a native size repair crops around the holes of large images."""
from __future__ import annotations

import dataclasses

import numpy as np

from stages.batch import to_column
from stages.crops import needs_crops, paste_crops, plan_crops, prepare_crop
from stages.fusion import paste_fuse
from workers.base import InpaintMethod, MethodInputs, MethodOutputs
from workers.registry import register_method
from workers.runner import MethodRunner


def _gradient(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), (xx + yy) % 256], axis=2).astype(np.uint8)


def _hole(height: int, width: int, *rects: tuple[int, int, int, int]) -> np.ndarray:
    hole = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in rects:
        hole[y0:y1, x0:x1] = True
    return hole


@register_method("test-native64")
class _Native64(InpaintMethod):
    """Records the sizes it is called with; fills holes with mid grey; one float extra."""

    native_size = 64
    calls: list[tuple[int, int]] = []

    @dataclasses.dataclass(frozen=True)
    class Config:
        pass

    def __call__(self, inputs: MethodInputs) -> MethodOutputs:
        out = []
        for image, hole in zip(inputs.images, inputs.holes):
            type(self).calls.append(image.shape[:2])
            assert not image[hole].any(), "hole pixels reach the method zeroed"
            out.append(np.where(hole[..., None], np.uint8(128), image).astype(np.uint8))
        return MethodOutputs(generated=out, extras={"score": [float(i) for i in range(len(out))]})


def _run(images: list[np.ndarray], holes: list[np.ndarray]) -> dict:
    _Native64.calls = []
    masked = []
    for image, hole in zip(images, holes):
        m = image.copy()
        m[hole] = 0
        masked.append(m)
    n = len(images)
    batch = {"id": to_column([f"r{i}" for i in range(n)]), "status": to_column(["ok"] * n),
             "error": to_column([None] * n), "image": to_column(masked),
             "hole": to_column([h.astype(np.uint8) for h in holes])}
    return MethodRunner("test-native64", _Native64.Config())(batch)


def test_small_hole_in_a_large_image_is_repaired_from_a_native_size_crop():
    image = _gradient(900, 1200)
    hole = _hole(900, 1200, (900, 700, 912, 710))  # a small logo near the bottom right
    out = _run([image], [hole])
    assert _Native64.calls == [(64, 64)], "called on one 64 px crop, never on the whole image"
    generated = out["generated"][0]
    assert generated.shape == image.shape
    assert np.all(generated[hole] == 128)
    result = paste_fuse(out["image"][0], generated, hole)
    assert np.array_equal(result[~hole], image[~hole]) and result.shape == image.shape


def test_far_apart_holes_get_one_crop_each_and_overlapping_ones_merge():
    height, width = 900, 1200
    far = _hole(height, width, (50, 50, 60, 60), (1100, 800, 1110, 812), (600, 450, 610, 455))
    crops = plan_crops(far, 64)
    assert len(crops) == 3 and all((x1 - x0, y1 - y0) == (64, 64) for x0, y0, x1, y1 in crops)
    for x0, y0, x1, y1 in crops:  # disjoint, inside the image
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    covered = np.zeros_like(far)
    for x0, y0, x1, y1 in crops:
        assert not covered[y0:y1, x0:x1].any()
        covered[y0:y1, x0:x1] = True
    assert covered[far].all()
    near = _hole(height, width, (300, 300, 310, 310), (330, 300, 340, 310))  # margins overlap
    merged = plan_crops(near, 64)
    assert merged == [(284, 269, 356, 341)], "union of both grown boxes (16 px margins), made square"
    out = _run([_gradient(height, width)], [far])
    assert _Native64.calls == [(64, 64)] * 3 and out["score"][0] == 1.0  # float extra: mean over crops


def test_large_hole_crop_is_resized_to_native_and_back():
    image, hole = _gradient(900, 1200), _hole(900, 1200, (100, 100, 300, 220))
    (box,) = plan_crops(hole, 64)
    side = box[2] - box[0]
    assert side == box[3] - box[1] and side >= 200 + 2 * 100, "margin: half the hole's long side"
    crop, crop_hole = prepare_crop(image, hole, box, 64)
    assert crop.shape == (64, 64, 3) and crop_hole.shape == (64, 64)
    back = paste_crops(image, [box], [np.full_like(crop, 7)])
    assert back.shape == image.shape and np.all(back[hole] == 7)
    assert np.array_equal(back[:, :box[0]], image[:, :box[0]])
    out = _run([image], [hole])
    inner = _hole(900, 1200, (116, 116, 284, 204))  # upscaling blends only the hole's rim
    assert _Native64.calls == [(64, 64)] and np.all(out["generated"][0][inner] == 128)


def test_no_crops_for_small_images_large_holes_or_methods_without_native_size():
    assert not needs_crops(128, 100, 64) and needs_crops(129, 100, 64) and not needs_crops(4000, 3000, None)
    big_hole = _hole(300, 300, (0, 0, 250, 250))
    assert plan_crops(big_hole, 64) == [(0, 0, 300, 300)]
    assert plan_crops(np.zeros((300, 300), bool), 64) == []
    image = _gradient(100, 120)
    _run([image, _gradient(300, 300)], [_hole(100, 120, (5, 5, 9, 9)), big_hole])
    assert _Native64.calls == [(100, 120), (300, 300)], "whole images, as without crops"


def test_thin_hole_survives_downscaling_and_stays_zeroed():
    image, hole = _gradient(900, 1200), _hole(900, 1200, (100, 500, 1100, 501))  # 1 px line, 1000 px long
    crops = plan_crops(hole, 64)
    assert len(crops) == 1
    crop, crop_hole = prepare_crop(np.where(hole[..., None], 0, image).astype(np.uint8), hole, crops[0], 64)
    assert crop_hole.any() and not crop[crop_hole].any()
