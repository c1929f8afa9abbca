#!/usr/bin/env bash
# Install edge-inspect as a service on the device (production path; see docs/deployment.md).
#
#   sudo scripts/install-appliance.sh                 # into /opt/edge-inspect, units into /etc
#   sudo scripts/install-appliance.sh --extras gpio   # plus optional extras
#   sudo scripts/install-appliance.sh --genicam       # GigE Vision / USB3 Vision cameras (Aravis)
#   scripts/install-appliance.sh --root /tmp/img --prefix /tmp/img/opt/edge-inspect --no-systemctl
#
# Idempotent: re-running upgrades the package and units; it never overwrites the config or
# secrets already in /etc/edge-inspect. On JetPack the venv sees the system site-packages
# (TensorRT, pycuda and the GStreamer-enabled OpenCV come from JetPack, not from pip).
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'TXT'
Options:
  --prefix DIR        install location of the venv and models (default /opt/edge-inspect)
  --root DIR          write system files (/etc, /var/lib, units) under DIR instead of /
  --source PATH       project folder or wheel to install (default: this checkout)
  --config FILE       initial /etc/edge-inspect/config.yaml (only if none is there yet)
  --python PATH       interpreter for the venv (default python3)
  --extras LIST       optional extras, comma separated (opcua,gpio,genicam)
  --genicam           GenICam cameras: Debian's Aravis packages and the genicam extra (PyGObject)
  --wheelhouse DIR    install offline from this folder of wheels
  --jetpack | --no-jetpack   force or forbid JetPack mode (default: detected)
  --no-deps           install the package only (dependencies already present)
  --no-systemctl      do not create users, run systemd-tmpfiles or systemctl
  -h, --help          this text
TXT
}

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/edge-inspect
ROOT=/
SOURCE="$HERE"
CONFIG=""
PYTHON=python3
EXTRAS=""
WHEELHOUSE=""
JETPACK=auto
NO_DEPS=0
SYSTEMCTL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --root) ROOT="$2"; shift 2 ;;
    --source) SOURCE="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --extras) EXTRAS="$2"; shift 2 ;;
    --genicam) EXTRAS="${EXTRAS:+$EXTRAS,}genicam"; shift ;;
    --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
    --jetpack) JETPACK=yes; shift ;;
    --no-jetpack) JETPACK=no; shift ;;
    --no-deps) NO_DEPS=1; shift ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

ROOT="${ROOT%/}"
say() { printf '==> %s\n' "$*"; }
SERVICE_USER=edge-inspect
ETC="$ROOT/etc/edge-inspect"
STATE="$ROOT/var/lib/edge-inspect"
UNITS="$ROOT/etc/systemd/system"
VENV="$PREFIX/venv"

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
  echo "installing into the running system needs root (or use --root DIR for a staging tree)" >&2
  exit 1
fi

# --------------------------------------------------------------------------- JetPack
if [ "$JETPACK" = auto ]; then
  if [ -e "$ROOT/etc/nv_tegra_release" ] || dpkg-query -W nvidia-l4t-core >/dev/null 2>&1; then
    JETPACK=yes
  else
    JETPACK=no
  fi
fi

if [ "$JETPACK" = yes ] && [ -r "$ROOT/etc/nv_tegra_release" ]; then
  # "# R36 (release), REVISION: 3.0, ...": L4T R36 is JetPack 6; R35 and older are JetPack 5
  # and earlier (TensorRT 8.5, Python 3.8): the TensorRT backend needs TensorRT 10
  l4t="$(sed -n 's/^# R\([0-9]*\).*/\1/p' "$ROOT/etc/nv_tegra_release" | head -n1)"
  if [ -n "$l4t" ] && [ "$l4t" -lt 36 ]; then
    echo "JetPack with L4T R$l4t is not supported: edge-inspect needs JetPack 6 or later" \
      "(L4T R36: TensorRT 10, Python 3.10). Upgrade JetPack; or install with --no-jetpack" \
      "and run the CPU backend (inference.backend.type: onnx)." >&2
    exit 1
  fi
fi

# --------------------------------------------------------------------------- venv and package
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
  echo "$PYTHON is older than Python 3.10 (JetPack 5 ships 3.8: use JetPack 6, or --python)" >&2
  exit 1
}
mkdir -p "$PREFIX"
if [ ! -x "$VENV/bin/python" ]; then
  venv_args=()
  [ "$JETPACK" = yes ] && venv_args+=(--system-site-packages)
  say "creating $VENV ${venv_args[*]:-}"
  "$PYTHON" -m venv "${venv_args[@]}" "$VENV"
else
  say "reusing $VENV"
fi

case ",$EXTRAS," in
  *,genicam,*)
    # Aravis from Debian; PyGObject is built against its introspection headers (the pin in
    # pyproject.toml keeps PyGObject on girepository-1.0, which Debian 12 has)
    aravis_pkgs=(libaravis-0.8-0 gir1.2-aravis-0.8 aravis-tools libgirepository1.0-dev
      libcairo2-dev pkg-config gcc python3-dev)
    missing=()
    for pkg in "${aravis_pkgs[@]}"; do
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      if [ -z "$ROOT" ]; then
        say "installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
      else
        say "WARNING: the target needs these Debian packages: ${missing[*]}"
      fi
    fi
    ;;
esac

pip_args=(--disable-pip-version-check --no-input -q)
[ -n "$WHEELHOUSE" ] && pip_args+=(--no-index --find-links "$WHEELHOUSE")
[ "$NO_DEPS" = 1 ] && pip_args+=(--no-deps)
target="$SOURCE"
[ -n "$EXTRAS" ] && target="$SOURCE[$EXTRAS]"
say "installing $target"
"$VENV/bin/python" -m pip install "${pip_args[@]}" --upgrade "$target"

if [ "$JETPACK" = yes ]; then
  # JetPack's OpenCV has GStreamer (CSI cameras) and CUDA; pip's wheel has neither
  if "$PYTHON" -c 'import cv2, sys; sys.exit(0 if "GStreamer:                   YES" in cv2.getBuildInformation() else 1)' 2>/dev/null; then
    say "using JetPack's OpenCV (GStreamer) instead of the pip wheel"
    "$VENV/bin/python" -m pip uninstall -y -q opencv-python-headless opencv-python || true
  fi
  "$VENV/bin/python" -c 'import tensorrt' 2>/dev/null \
    && say "TensorRT $("$VENV/bin/python" -c 'import tensorrt; print(tensorrt.__version__)') visible" \
    || say "WARNING: TensorRT is not importable; install JetPack's python3-libnvinfer"
fi

if [ -d "$SOURCE/models" ]; then
  mkdir -p "$PREFIX/models"
  cp -a "$SOURCE/models/." "$PREFIX/models/"
fi

# --------------------------------------------------------------------------- users, folders
HAVE_USER=0
if [ "$SYSTEMCTL" = 1 ] && [ -z "$ROOT" ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers - < "$HERE/systemd/edge-inspect.sysusers.conf"
  elif ! id "$SERVICE_USER" >/dev/null 2>&1; then
    for g in video gpio; do getent group "$g" >/dev/null || groupadd --system "$g"; done
    useradd --system --home-dir /var/lib/edge-inspect --shell /usr/sbin/nologin \
      --groups video,gpio "$SERVICE_USER"
  fi
  HAVE_USER=1
fi

install -d -m 0750 "$ETC" "$STATE"
install -d -m 0700 "$ETC/credentials"
if [ "$HAVE_USER" = 1 ]; then
  chown "root:$SERVICE_USER" "$ETC"
  chown "$SERVICE_USER:$SERVICE_USER" "$STATE"
fi

if [ ! -e "$ETC/config.yaml" ]; then
  if [ -n "$CONFIG" ]; then
    install -m 0640 "$CONFIG" "$ETC/config.yaml"
  else
    cat > "$ETC/config.yaml" <<YAML
# edge-inspect configuration (written by install-appliance.sh; edit for this line,
# then run: $VENV/bin/edge config check /etc/edge-inspect/config.yaml).
# Starts on the simulated line so the service runs before a camera is connected;
# see the examples/ folder of the project for USB, RTSP and Jetson CSI cameras.
station: {id: $(hostname -s 2>/dev/null || echo edge-01)}
source: {type: simulator, scenario: vials, rate_per_min: 600}
records: {state_dir: /var/lib/edge-inspect, synchronous: FULL}
inference:
  models_dir: $PREFIX/models
plc: {type: sim}
mqtt:
  enabled: false
  host: 127.0.0.1
  port: 1883
  # password_file: /run/credentials/edge-inspect.service/mqtt-password
web:
  enabled: true
  host: 127.0.0.1
  port: 8080
  session_key_file: web-session-key  # from the unit's LoadCredential= (signs the login form)
YAML
    chmod 0640 "$ETC/config.yaml"
  fi
  [ "$HAVE_USER" = 1 ] && chown "root:$SERVICE_USER" "$ETC/config.yaml"
  say "wrote $ETC/config.yaml"
else
  say "keeping $ETC/config.yaml"
fi

# secrets: root-only files the unit hands over with LoadCredential= (never in the config)
for name in mqtt-password plc-password web-session-key; do
  f="$ETC/credentials/$name"
  if [ ! -e "$f" ]; then
    ( umask 077
      if [ "$name" = web-session-key ]; then
        "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$f"
      else
        : > "$f"
      fi )
  fi
done

# --------------------------------------------------------------------------- TensorRT engines
# Built now, not at the first start (minutes on a Jetson, under the unit's start timeout):
# one engine per approved model into <state dir>/engines, as the service user.
if "$VENV/bin/python" -c 'import tensorrt, pycuda.driver' 2>/dev/null && [ -z "$ROOT" ]; then
  run_as=()
  [ "$HAVE_USER" = 1 ] && run_as=(runuser -u "$SERVICE_USER" --)
  for name in $("$VENV/bin/python" - "$PREFIX/models" <<'PY'
import sys
from edge.models.registry import ModelRegistry
reg = ModelRegistry(sys.argv[1])
print(" ".join(n for n in reg.names() if reg.approved(n)))
PY
  ); do
    say "building the TensorRT engine of $name (minutes)"
    ${run_as[@]+"${run_as[@]}"} "$VENV/bin/edge" model build-engine "$name" \
      --models "$PREFIX/models" --config "$ETC/config.yaml" \
      || say "WARNING: no engine for $name; the service builds it at start and rejects until then"
  done
fi

# --------------------------------------------------------------------------- units
install -d "$UNITS" "$ROOT/etc/sysusers.d" "$ROOT/etc/tmpfiles.d"
sed "s|/opt/edge-inspect/venv/bin/edge|$VENV/bin/edge|" \
  "$HERE/systemd/edge-inspect.service" > "$UNITS/edge-inspect.service.tmp"
chmod 0644 "$UNITS/edge-inspect.service.tmp"
mv "$UNITS/edge-inspect.service.tmp" "$UNITS/edge-inspect.service"
install -m 0644 "$HERE/systemd/edge-inspect.sysusers.conf" "$ROOT/etc/sysusers.d/edge-inspect.conf"
install -m 0644 "$HERE/systemd/edge-inspect.tmpfiles.conf" "$ROOT/etc/tmpfiles.d/edge-inspect.conf"
say "installed $UNITS/edge-inspect.service"

if [ "$SYSTEMCTL" = 1 ] && [ -z "$ROOT" ]; then
  systemd-tmpfiles --create /etc/tmpfiles.d/edge-inspect.conf || true
  systemctl daemon-reload
  systemctl enable edge-inspect.service
fi

cat <<TXT

edge-inspect is installed in $VENV.
Next steps:
  1. Edit $ETC/config.yaml (camera, recipe, PLC, broker), then check it:
       sudo -u $SERVICE_USER $VENV/bin/edge config check /etc/edge-inspect/config.yaml
  2. Put secrets in $ETC/credentials/ (mqtt-password, plc-password; web-session-key was generated).
  3. Start it and watch it:
       sudo systemctl start edge-inspect      # enabled at boot$([ "$SYSTEMCTL" = 1 ] && [ -z "$ROOT" ] || echo " once you run: systemctl enable edge-inspect")
       journalctl -u edge-inspect -f -o cat   # JSON lines
       curl -s localhost:8080/readyz          # camera, model, PLC, broker
  4. Prometheus can scrape http://<device>:8080/metrics (bind web.host to the plant network).
TXT
