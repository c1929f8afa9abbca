"""The systemd watchdog is fed only while the line turns frames into verdicts."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import ClassVar

import pytest

from edge.config import parse_config
from edge.inspect import registry
from edge.inspect.base import Tool, ToolParams
from edge.ops.watchdog import Notifier, Watchdog
from edge.pipeline import Pipeline

from fake_tools import ListSource, grey

#: set by a test to make every inspection block: a worker stuck in a driver call
HANG = threading.Event()
RELEASE = threading.Event()


class HangParams(ToolParams):
    impl: ClassVar[str] = f"{__name__}:HangTool"


class HangTool(Tool):
    """A tool that blocks while HANG is set, as a wedged GPU call would."""

    type_key = "hang"
    version = "test-1"
    Params = HangParams

    def inspect(self, image, ctx):
        if HANG.is_set():
            RELEASE.wait(30)
        return self.result([])


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A real unix datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "150000")  # WatchdogSec=0.15: a check every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def read_messages(sock: socket.socket, seconds: float) -> list[str]:
    out: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return out


def wait_for(sock: socket.socket, predicate, timeout: float = 10.0) -> list[str]:
    seen: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            continue
        seen.append(msg)
        if predicate(msg):
            return seen
    raise AssertionError(f"no matching notify message in {timeout} s; got {seen[-5:]}")


@pytest.fixture
def line(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.TOOLS, "hang", HangParams)
    HANG.clear()
    RELEASE.clear()
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path / "state"), "sample_pass_every": 0},
            "pipeline": {"workers": 2, "deadline_ms": 100, "stall_timeout_s": 5},
            "recipe": "t",
            "recipes": {"t": {"name": "t", "tools": [{"type": "hang"}]}},
            "ops": {"watchdog": {"no_verdict_timeout_s": 0.4, "no_frame_timeout_s": 5}},
        }
    )
    # a line running at 50 items/s for up to a minute
    src = ListSource([grey()] * 3000, period_s=0.02)
    p = Pipeline(cfg, source=src)
    yield p, cfg
    RELEASE.set()
    p.stop()


def test_watchdog_pings_stop_when_the_pipeline_hangs_and_resume_when_it_recovers(
    line, notify_socket
):
    p, cfg = line
    wd = Watchdog(p, cfg.ops.watchdog)
    assert wd.interval_s == pytest.approx(0.05)
    wd.start()
    p.start()
    try:
        first = wait_for(notify_socket, lambda m: "READY=1" in m)
        assert "READY=1" in first[-1]
        healthy = read_messages(notify_socket, 0.6)
        assert sum("WATCHDOG=1" in m for m in healthy) >= 3  # fed while items are inspected
        assert any("STATUS=inspecting" in m for m in healthy)

        HANG.set()  # every worker now blocks inside its tool; the tracker rejects at deadlines
        wait_for(notify_socket, lambda m: "STATUS=not making progress" in m)
        starved = read_messages(notify_socket, 1.0)  # 20 check periods
        assert starved, "the watchdog keeps reporting status"
        assert not any("WATCHDOG=1" in m for m in starved)
        assert all("no inspected verdict" in m for m in starved)
        # fail-safe meanwhile: every item is still final, as a TIMEOUT or NOT_INSPECTED reject
        assert p.stats.snapshot()["rejected"] > 0

        HANG.clear()
        RELEASE.set()  # the stuck call returns: progress, and with it the pings, come back
        wait_for(notify_socket, lambda m: "WATCHDOG=1" in m)
    finally:
        wd.stop()
    assert "STOPPING=1" in read_messages(notify_socket, 0.2)[-1]


def test_without_systemd_the_watchdog_is_a_silent_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.notify("READY=1") is False


def test_abstract_notify_socket_addresses_are_supported(monkeypatch):
    name = f"edge-inspect-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        n = Notifier()
        assert n.notify("READY=1", "STATUS=x")
        assert sock.recv(100) == b"READY=1\nSTATUS=x"
        n.close()
    finally:
        sock.close()


@pytest.mark.integration
def test_edge_run_as_a_notify_service_says_ready_pings_and_stops_cleanly(tmp_path, notify_socket):
    """The service entry point, as systemd starts it: READY, pings, JSON logs, clean stop."""
    import signal
    import subprocess
    import sys

    conf = tmp_path / "config.yaml"
    conf.write_text(
        f"records: {{state_dir: {tmp_path / 'state'}}}\n"
        "source: {type: simulator, scenario: vials, rate_per_min: 1200}\n"
        "plc: {type: none}\nmqtt: {enabled: false}\nweb: {enabled: false}\n"
    )
    env = {**__import__("os").environ, "EDGE_LOG_FORMAT": "json", "WATCHDOG_USEC": "600000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(conf), "-v"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(notify_socket, lambda m: "READY=1" in m, timeout=60)
        wait_for(notify_socket, lambda m: "WATCHDOG=1" in m and "STATUS=inspecting" in m)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert any("STOPPING=1" in m for m in read_messages(notify_socket, 0.3))
    records = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    assert records, err[-2000:]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
