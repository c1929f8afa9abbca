#!/usr/bin/env bash
# Install the training extra (ultralytics + torch) deterministically.
#
# ultralytics depends on opencv-python (the GUI build); the project depends on
# opencv-python-headless. Both own the same cv2 package folder, so whichever is
# installed last wins and uninstalling one breaks the other. We keep the
# headless build: remove the GUI build, then reinstall headless without
# touching its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m pip install -q --disable-pip-version-check -e '.[dev,train]'
"$PY" -m pip uninstall -q -y opencv-python || true
HEADLESS="$("$PY" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))' 2>/dev/null || echo "")"
if [ -n "$HEADLESS" ]; then
  "$PY" -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$HEADLESS"
else
  "$PY" -m pip install -q --force-reinstall --no-deps opencv-python-headless
fi
"$PY" -c 'import cv2, ultralytics, torch, torchvision; print("cv2", cv2.__version__, "ultralytics", ultralytics.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)'
