#!/usr/bin/env bash
# Create .venv and install facefill with its test tools. Idempotent; needs only python3 and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch/torchvision are pinned in pyproject.toml: the pinned wheels install from local disk here in
# about a minute, an unpinned torch would download several GB.
.venv/bin/pip install --disable-pip-version-check -q -e ".[dev]"
