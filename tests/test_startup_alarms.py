"""A normal start raises no alarm: the stall clock starts when capture starts.

The appliance as shipped (`edge demo`: embedded demo config, web UI in its own process,
simulated PLC), watched from the plant side over a real MQTT broker: its alarms and PackML
states. The web process takes seconds to come up before capture starts; that is no stall.
A camera that really goes quiet still raises CAMERA_STALL and holds the line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services import Subscriber, free_port, mosquitto  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def _demo(folder: Path, broker_port: int, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGE_STATE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "edge.cli", "demo", "--headless", "--json"]
    cmd += ["--port", str(free_port()), "--mqtt", f"127.0.0.1:{broker_port}", *args]
    out = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _watch(port: int) -> Subscriber:
    return Subscriber(port, "#", client_id=f"plant-{uuid.uuid4().hex[:6]}")


def _alarm_codes(sub: Subscriber) -> list[str]:
    return [m.get("code") for m in sub.on("/alarm") if m.get("event") == "raised"]


@pytest.mark.integration
def test_the_demo_starts_without_a_stall_alarm_and_is_not_held(tmp_path, mosquitto):  # noqa: F811
    sub = _watch(mosquitto.port)
    try:
        _demo(tmp_path, mosquitto.port, "--items", "40")
        states = [m.get("state") for m in sub.on("/state")]
        alarms = _alarm_codes(sub)
    finally:
        sub.close()
    assert "Execute" in states, states
    assert "CAMERA_STALL" not in alarms, alarms
    assert "Held" not in states, states


@pytest.mark.integration
def test_a_camera_that_goes_quiet_still_raises_the_stall_alarm(tmp_path, mosquitto):  # noqa: F811
    sub = _watch(mosquitto.port)
    try:
        # two frames 5 s apart: the demo's stall timeout is 2 s
        _demo(tmp_path, mosquitto.port, "--items", "2", "--rate", "12")
        states = [m.get("state") for m in sub.on("/state")]
        alarms = _alarm_codes(sub)
    finally:
        sub.close()
    assert "CAMERA_STALL" in alarms, alarms
    assert "Held" in states, states
