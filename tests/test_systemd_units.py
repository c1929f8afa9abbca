"""The service units and the device installer: what systemd and the plant's IT will check."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "edge-inspect.service"
INSTALLER = ROOT / "scripts" / "install-appliance.sh"
EXEC = "/opt/edge-inspect/venv/bin/edge"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def settings(path: Path) -> dict[str, list[str]]:
    """Unit file keys -> every value given (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ANALYZE, "--man=no", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


def fake_executable(folder: Path) -> Path:
    exe = folder / "edge"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


@needs_analyze
def test_the_service_unit_passes_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart exists on this machine: point it at a stand-in binary
    exe = fake_executable(tmp_path)
    unit = tmp_path / "edge-inspect.service"
    unit.write_text(UNIT.read_text().replace(EXEC, str(exe)))
    r = verify(unit)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr  # unknown keys and bad values are only warnings


@needs_analyze
def test_verify_would_catch_a_misspelt_setting(tmp_path):
    exe = fake_executable(tmp_path)
    unit = tmp_path / "edge-inspect.service"
    unit.write_text(
        UNIT.read_text().replace(EXEC, str(exe)).replace("WatchdogSec=", "WatchdogSecs=")
    )
    assert "Unknown key" in verify(unit).stderr


def test_the_service_is_restarted_by_its_watchdog_and_runs_hardened():
    s = settings(UNIT)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify"
    assert int(one["WatchdogSec"]) > 0
    assert one["Restart"] == "always"
    assert "StartLimitIntervalSec" in one and "StartLimitBurst" in one
    assert one["ExecStart"] == f"{EXEC} run --config /etc/edge-inspect/config.yaml"
    # ordered after the network and the local broker, which is wanted but not required
    assert "network-online.target" in one["After"] and "mosquitto.service" in one["After"]
    assert "mosquitto.service" in one["Wants"]
    assert "Requires" not in s
    # hardening
    assert one["ProtectSystem"] == "strict"
    assert one["NoNewPrivileges"] == "yes"
    assert one["PrivateTmp"] == "yes"
    assert one["ProtectHome"] == "yes"
    assert one["StateDirectory"] == "edge-inspect"
    assert one["ConfigurationDirectory"] == "edge-inspect"
    assert one["User"] == "edge-inspect"
    assert set(one["SupplementaryGroups"].split()) == {"video", "gpio"}
    assert one["CapabilityBoundingSet"] == ""
    creds = {v.split(":", 1)[0] for v in s["LoadCredential"]}
    assert creds == {"mqtt-password", "plc-password", "web-session-key"}
    assert "User=root" not in UNIT.read_text()


def test_sysusers_gives_the_service_user_only_the_device_groups():
    lines = (ROOT / "systemd" / "edge-inspect.sysusers.conf").read_text().splitlines()
    members = {ln.split()[2] for ln in lines if ln.startswith("m edge-inspect ")}
    assert members == {"video", "gpio"}


@pytest.mark.integration
@pytest.mark.slow
@needs_analyze
def test_installer_into_a_staging_root_is_idempotent_and_keeps_the_site_config(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            str(ROOT),
            "-w",
            str(wheels),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(wheels.glob("edge_inspect-*.whl"))
    root = tmp_path / "img"
    prefix = root / "opt" / "edge-inspect"
    cmd = [
        "bash",
        str(INSTALLER),
        "--root",
        str(root),
        "--prefix",
        str(prefix),
        "--no-systemctl",
        "--no-deps",
        "--no-jetpack",
        "--python",
        sys.executable,
        "--source",
        str(wheel),
    ]
    # nothing is fetched: the wheel is all it needs; and no PYTHONPATH, through which pip
    # would take a source checkout for the installed package and install nothing
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PIP_NO_INDEX": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert "Next steps" in first.stdout

    etc = root / "etc" / "edge-inspect"
    unit = root / "etc" / "systemd" / "system" / "edge-inspect.service"
    assert (prefix / "venv" / "bin" / "edge").exists()
    assert (root / "var" / "lib" / "edge-inspect").is_dir()
    assert (root / "etc" / "sysusers.d" / "edge-inspect.conf").exists()
    assert stat.S_IMODE((etc / "credentials").stat().st_mode) == 0o700
    key = (etc / "credentials" / "web-session-key").read_text()
    assert len(key.strip()) == 64
    assert stat.S_IMODE((etc / "credentials" / "web-session-key").stat().st_mode) == 0o600
    # the unit as installed points at the venv it made, and verifies
    assert f"ExecStart={prefix}/venv/bin/edge run" in unit.read_text()
    r = verify(unit)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    # the written config is a valid starting point
    from edge.config import load_config

    cfg = load_config(etc / "config.yaml")
    assert str(cfg.records.state_dir) == "/var/lib/edge-inspect"

    # a site edits its config and secrets; re-running the installer keeps them
    (etc / "config.yaml").write_text("station: {id: line7-cam1}\n")
    (etc / "credentials" / "mqtt-password").write_text("s3cret\n")
    unit_before = unit.read_text()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    assert "reusing" in second.stdout and "keeping" in second.stdout
    assert (etc / "config.yaml").read_text() == "station: {id: line7-cam1}\n"
    assert (etc / "credentials" / "mqtt-password").read_text() == "s3cret\n"
    assert (etc / "credentials" / "web-session-key").read_text() == key
    assert unit.read_text() == unit_before


def test_installer_refuses_unknown_options():
    r = subprocess.run(["bash", str(INSTALLER), "--frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option" in r.stderr


def test_installer_refuses_jetpack_5_before_installing_anything(tmp_path):
    """JetPack 5 (L4T R35: TensorRT 8.5, Python 3.8) cannot run the TensorRT backend."""
    (tmp_path / "root" / "etc").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "nv_tegra_release").write_text(
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n"
    )
    prefix = tmp_path / "root" / "opt" / "edge-inspect"
    r = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(tmp_path / "root"), "--prefix", str(prefix)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "needs JetPack 6 or later" in r.stderr, r.stderr
    assert not prefix.exists()
