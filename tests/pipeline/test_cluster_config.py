"""ray_cluster.yaml must satisfy the cluster launcher's own schema (shipped in the ray package)."""
import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO


def test_cluster_yaml_matches_ray_launcher_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types and {"gpu_workers", "cpu_workers"} <= set(types)
    assert any("pip install -e ." in cmd for cmd in config["setup_commands"])
