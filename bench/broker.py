"""A throwaway Mosquitto on a free loopback port for the benches (the tests have their own in
`tests/mqtt_support.py`). Run from a bench script: `from broker import start_mosquitto`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(folder: Path, extra: Sequence[str] = ()) -> tuple[subprocess.Popen, int]:
    """(process, port) of a Mosquitto listening on 127.0.0.1, config written in `folder`,
    `extra` lines appended; waits until it accepts connections."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    lines += ["log_dest none", *extra]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")
