#!/usr/bin/env bash
# Train, quantise, evaluate, verify and approve the shipped default detector
# (models/defects/<version>/) from simulator data, reproducibly and offline.
#
# Needs the training extra: scripts/install-train.sh. On the 2-core reference
# machine the whole run takes about an hour (training dominates).
#
#   scripts/train-default-models.sh            # all steps
#   scripts/train-default-models.sh train      # one step: data | train | package
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
STEP="${1:-all}"
shift || true
exec "$PY" -m edge.train.defaults "$STEP" \
  --work "${WORK:-runs/defaults}" \
  --models models \
  --calibration calibration/sim-v1 \
  "$@"
