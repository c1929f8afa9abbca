"""A real GigE Vision device on loopback: Aravis's `arv-fake-gv-camera-0.8`, started by the tests.

The fake camera listens on 127.0.0.1:3956 (the GigE Vision control port, fixed by the
standard), so one runs on a machine at a time: the fixture holds a file lock while it
runs, and each test gives its camera its own serial number.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

FAKE = shutil.which("arv-fake-gv-camera-0.8") or "/usr/bin/arv-fake-gv-camera-0.8"
_serials = itertools.count(1)


def skip_reason() -> str | None:
    if not Path(FAKE).exists():
        return "arv-fake-gv-camera-0.8 is not installed (apt-get install aravis-tools)"
    from edge.capture import aravis

    return aravis.available()


class FakeGigECamera:
    """`arv-fake-gv-camera-0.8 -i 127.0.0.1 -s SERIAL`; `kill()` and `start()` again."""

    def __init__(self, serial: str, lost_ratio_per_mille: int = 0):
        self.serial = serial
        self.lost = lost_ratio_per_mille
        self.proc: subprocess.Popen | None = None

    def start(self) -> FakeGigECamera:
        args = [FAKE, "-i", "127.0.0.1", "-s", self.serial]
        if self.lost:
            args += ["-r", str(self.lost)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(f"fake camera exited: {self.proc.stderr.read().decode()}")
        return self

    def kill(self) -> None:
        """Pulled away: no goodbye on the network, as when a cable is cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class _Lock:
    def __init__(self) -> None:
        self.path = Path(tempfile.gettempdir()) / "edge-inspect-fake-gige.lock"

    def __enter__(self) -> _Lock:
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _camera(lost: int = 0):
    why = skip_reason()
    if why:
        pytest.skip(why)
    with _Lock():
        cam = FakeGigECamera(f"T{os.getpid() % 10000}-{next(_serials)}", lost).start()
        try:
            yield cam
        finally:
            cam.kill()


@pytest.fixture(name="fake_gige")
def fake_gige_fixture():
    yield from _camera()


@pytest.fixture(name="lossy_gige")
def lossy_gige_fixture():
    """A fake camera that loses stream packets (0.2 %: Aravis asks for them again; the fake does not resend)."""
    yield from _camera(2)
