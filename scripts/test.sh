#!/usr/bin/env bash
# Installs everything the test suite needs on a Debian/Ubuntu machine, then runs lint and the suite.
# Idempotent: what is already installed is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# aravis-tools: the fake GigE Vision camera the camera tests start; the -dev packages, gcc and
# pkg-config build PyGObject (the genicam extra) against Debian's gobject-introspection;
# poppler-utils: pdftoppm and pdftotext read the batch record's PDF back in its tests;
# fonts-dejavu-core: the PDF's Unicode font
for pkg in mosquitto openssl libzbar0 chromium systemd aravis-tools gir1.2-aravis-0.8 libaravis-0.8-0 \
    libgirepository1.0-dev libcairo2-dev pkg-config gcc python3-dev poppler-utils fonts-dejavu-core; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# node and npm: Eclipse Tahu's Sparkplug B library, the tests' decoder independent of the appliance's
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# the dev and train extras (the training path is tested too); deterministic OpenCV build
PYTHON=.venv/bin/python scripts/install-train.sh
# the genicam extra (PyGObject for Aravis), built once, when the binding is missing
.venv/bin/python -c 'import gi; gi.require_version("Aravis", "0.8")' 2>/dev/null \
  || .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[genicam]'

# the Sparkplug tests' host decodes with Eclipse Tahu's JavaScript library (locked versions)
[ -d tests/sparkplug/node_modules/sparkplug-payload ] \
  || npm ci --prefix tests/sparkplug --no-audit --no-fund --loglevel=error

.venv/bin/ruff check edge tests bench scripts
.venv/bin/ruff format --check edge tests bench scripts
.venv/bin/python -m pytest -q "$@"
