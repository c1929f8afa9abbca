#!/usr/bin/env bash
# Train, quantise, evaluate, verify and approve the shipped default detector
# (models/defects/<version>/) from simulator data, reproducibly and offline.
#
# Needs the training extra: scripts/install-train.sh. The shipped model was trained on
# one GPU, bounded by time (21 epochs in 4 minutes):
#
#   scripts/train-default-models.sh data
#   scripts/train-default-models.sh train --device 0 --workers 12 --batch 64 --cache --hours 0.06
#   scripts/train-default-models.sh package
#
# On a 2-core CPU the same 21 epochs take about five hours (`--hours 5`); the data and
# package steps take a few minutes each.
#
# Re-quantising the shipped network into a new version (1.0.1 from 1.0.0, without INT32
# bias Q/DQ), then approving it through the audited CLI:
#
#   scripts/train-default-models.sh reissue --from 1.0.0 --reason "..."
#   edge model approve defects 1.0.1 --reason "..." --models models --state-dir var
#
#   scripts/train-default-models.sh            # all steps, on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
STEP="${1:-all}"
shift || true
exec "$PY" -m edge.train.defaults "$STEP" \
  --work "${WORK:-runs/defaults}" \
  --models models \
  --calibration calibration/sim-v1 \
  --verify-set calibration/verify-sim-v1 \
  "$@"
