#!/usr/bin/env bash
# Set up, then run the demo job on the real dev faces: manifest build -> run -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SHARED=${FACEFILL_SHARED:-../shared}
OUT=${1:-demo-out}
.venv/bin/pipeline manifest build --images "$SHARED/bench-dev/faces/256" --masks "$SHARED/bench-dev/masks" \
  --pair random --seed 0 --out "$OUT/manifest.parquet"
.venv/bin/pipeline manifest check "$OUT/manifest.parquet"
.venv/bin/pipeline run --manifest "$OUT/manifest.parquet" --method telea --out "$OUT/telea"
.venv/bin/pipeline report "$OUT/telea" --html
