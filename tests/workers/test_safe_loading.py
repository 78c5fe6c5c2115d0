"""No checkpoint or pickle in the code base can run code: every `torch.load` passes
`weights_only=True`, and raw unpickling happens only in the allow-listed stylegan2-ada importer
(its behaviour is tested in test_stylegan2_ada_pkl.py)."""
from __future__ import annotations

import ast

from tests.helpers import REPO

PACKAGES = ("pipeline", "stages", "workers", "manifests")
RESTRICTED_UNPICKLER = "workers/nets/stylegan2_ada_pkl.py"
UNSAFE_CALLS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("dill", "load"),
                ("joblib", "load"), ("cloudpickle", "load"), ("cloudpickle", "loads")}


def _calls(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, node
        elif isinstance(node, ast.ClassDef):  # subclassing pickle.Unpickler is unpickling too
            for base in node.bases:
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
                    yield base.value.id, base.attr, node


def _sources():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def test_every_torch_load_is_weights_only():
    loads = []
    for path in _sources():
        for module, attr, node in _calls(path):
            if (module, attr) == ("torch", "load"):
                flags = {k.arg: k.value for k in node.keywords}
                safe = isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True
                loads.append((f"{path.relative_to(REPO)}:{node.lineno}", safe))
    assert loads, "expected checkpoint loading somewhere under workers/ or stages/"
    assert [where for where, safe in loads if not safe] == []


def test_raw_unpickling_only_in_the_restricted_importer():
    found = [f"{path.relative_to(REPO)}:{node.lineno} {module}.{attr}"
             for path in _sources() for module, attr, node in _calls(path) if (module, attr) in UNSAFE_CALLS]
    assert found and all(where.startswith(RESTRICTED_UNPICKLER) for where in found), found
    source = (REPO / RESTRICTED_UNPICKLER).read_text()
    assert "def find_class" in source and "pickle.load(" not in source and "pickle.loads(" not in source
    numpy_loads = [f"{path.relative_to(REPO)}:{node.lineno}" for path in _sources()
                   for module, attr, node in _calls(path) if (module, attr) == ("np", "load")
                   and not any(k.arg == "allow_pickle" and isinstance(k.value, ast.Constant)
                               and k.value.value is False for k in node.keywords)]
    assert numpy_loads == []
