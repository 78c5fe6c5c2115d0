import pytest
from typer.testing import CliRunner

from pipeline.cli import app


@pytest.mark.parametrize("args", [[], ["manifest"], ["manifest", "build"], ["manifest", "check"], ["run"],
                                  ["masks", "generate"], ["train-encoder"], ["weights", "fetch"], ["bench"],
                                  ["report"], ["methods"]])
def test_every_command_explains_itself_with_an_example(args):
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if args not in ([], ["manifest"], ["methods"]):
        assert "Example" in result.output


def test_methods_lists_the_baselines():
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0 and "telea" in result.output and "radius" in result.output


def test_unknown_method_and_bad_options_fail_clearly(tmp_path):
    result = CliRunner().invoke(app, ["run", "--manifest", "m.parquet", "--out", str(tmp_path), "--method", "x"])
    assert result.exit_code == 2 and "unknown method 'x'" in result.output
    result = CliRunner().invoke(app, ["run", "--manifest", "m.parquet", "--out", str(tmp_path), "--method-opt", "r"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_variants_need_a_method_with_latents(tmp_path):
    result = CliRunner().invoke(app, ["run", "--manifest", "m.parquet", "--out", str(tmp_path), "--variants", "3"])
    assert result.exit_code == 2 and "no latent to edit" in result.output


def test_missing_weights_stop_the_run_before_any_work(tmp_path):
    import dataclasses

    import pyarrow as pa

    from manifests.io import write_manifest
    from workers.base import InpaintMethod
    from workers.registry import register_method

    @register_method("test-needs-weights")
    class _NeedsWeights(InpaintMethod):
        @dataclasses.dataclass(frozen=True)
        class Config:
            pass

        @classmethod
        def missing_weights(cls, config):
            return ["G.pt: not in /cache (pipeline weights fetch G)"]

        def __call__(self, inputs):
            raise AssertionError("must not run")

    manifest = tmp_path / "m.parquet"
    write_manifest(pa.table({"id": ["a"], "image": ["/x.png"], "mask": ["/m.png"]}), manifest)
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                                      "--method", "test-needs-weights"])
    assert result.exit_code == 2 and "weights are missing" in result.output and "G.pt" in result.output
    assert not (tmp_path / "o").exists()
