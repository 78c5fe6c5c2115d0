import dataclasses

import numpy as np
import pytest
from PIL import Image

from stages.batch import EMPTY_IMAGE, to_column
from stages.metrics import psnr_hole
from workers.base import InpaintMethod, MethodInputs, MethodOutputs
from workers.registry import UnknownMethodError, available_methods, build_config, get_method, register_method
from workers.runner import MethodRunner
from tests.helpers import disk_mask


def test_classical_methods_are_registered():
    methods = available_methods()
    assert {"telea", "ns"} <= set(methods)
    with pytest.raises(UnknownMethodError, match="available: .*telea"):
        get_method("nope")


def test_build_config_types_and_rejects_unknown_options():
    cls = get_method("telea")
    assert build_config(cls, {"radius": "5"}).radius == 5.0
    with pytest.raises(ValueError, match="unknown option.*colour"):
        build_config(cls, {"colour": "1"})
    with pytest.raises(ValueError, match="radius: expected float"):
        build_config(cls, {"radius": "big"})
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen


@pytest.mark.parametrize("name", ["telea", "ns"])
def test_opencv_methods_fill_the_hole_plausibly(name, faces256):
    face = np.asarray(Image.open(faces256[0]).convert("RGB"))
    hole = disk_mask(256, 0.1) > 0
    masked = face.copy()
    masked[hole] = 0
    out = get_method(name)()(MethodInputs(ids=["a"], images=[masked], holes=[hole])).generated[0]
    assert out.shape == face.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], masked[~hole])
    # Far better than the zeroed hole, on a real face.
    assert psnr_hole(out, face, hole) > psnr_hole(masked, face, hole) + 10


@register_method("test-flaky")
class _Flaky(InpaintMethod):
    """Fails on any batch that contains the id 'boom'; returns two variants per row."""

    @dataclasses.dataclass(frozen=True)
    class Config:
        pass

    def __call__(self, inputs: MethodInputs) -> MethodOutputs:
        if "boom" in inputs.ids:
            raise RuntimeError("exploded")
        n = len(inputs.ids)
        gen = [np.full_like(im, 7) for im in inputs.images for _ in range(2)]
        return MethodOutputs(generated=gen, source=[i for i in range(n) for _ in range(2)], variant=[0, 1] * n,
                             extras={"score": [float(i) for i in range(2 * n)]})


def test_runner_isolates_a_failing_row_and_expands_variants(rng):
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    hole = (disk_mask(8) > 0).astype(np.uint8)
    batch = {"id": to_column(["a", "boom", "skip", "b"]), "status": to_column(["ok", "ok", "error", "ok"]),
             "error": to_column([None, None, "load: bad", None]),
             "image": to_column([image, image, EMPTY_IMAGE, image]), "hole": to_column([hole] * 4)}
    out = MethodRunner("test-flaky", _Flaky.Config(), device="cpu")(batch)
    assert list(out["id"]) == ["a", "a", "boom", "skip", "b", "b"]
    assert list(out["variant"]) == [0, 1, 0, 0, 0, 1]
    assert list(out["status"]) == ["ok", "ok", "error", "error", "ok", "ok"]
    assert "inpaint (test-flaky): RuntimeError: exploded" == out["error"][2]
    assert out["error"][3] == "load: bad"
    assert (out["generated"][0] == 7).all() and out["generated"][2].size == 0
    assert out["score"][0] == 0.0


def test_runner_rejects_wrong_shaped_output(rng):
    @register_method("test-bad-shape")
    class _Bad(InpaintMethod):
        @dataclasses.dataclass(frozen=True)
        class Config:
            pass

        def __call__(self, inputs):
            return MethodOutputs(generated=[im[:2] for im in inputs.images])

    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    batch = {"id": to_column(["a"]), "status": to_column(["ok"]), "error": to_column([None]),
             "image": to_column([image]), "hole": to_column([np.ones((8, 8), np.uint8)])}
    out = MethodRunner("test-bad-shape", _Bad.Config(), device="cpu")(batch)
    assert out["status"][0] == "error" and "expected (8, 8, 3)" in out["error"][0]


def test_every_method_is_registered_by_the_module_listed_for_it():
    """get_method imports only METHOD_MODULES[name]: a method registered elsewhere, or missing from the
    list, would be unknown to a run."""
    from workers import registry
    listed = dict(registry.METHOD_MODULES)
    registered = {name: cls.__module__ for name, cls in available_methods().items()
                  if cls.__module__ in set(listed.values())}
    assert registered == listed
