"""The web UI in its own process: the operator sees and drives the line, the line keeps its CPU."""

from __future__ import annotations

import os
import time

import httpx

from edge.web.isolated import IsolatedWeb

import web_support as ws
from fake_tools import grey


def wait_for(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_a_separate_web_process_shows_the_live_line_and_its_commands_reach_the_line(tmp_path):
    imgs = [grey(200) if i % 3 else grey(20) for i in range(400)]
    app = ws.appliance(tmp_path, imgs=imgs, period_s=0.02)
    ws.add_users(app)
    web = IsolatedWeb(app)
    app.start()
    web.start()
    try:
        assert web.status()["up"], web.status()
        assert web.proc.pid != os.getpid() and web.proc.is_alive()
        with httpx.Client(base_url=web.url, timeout=10) as c:
            r = ws.post_login(c, "olga", "op-secret-1")
            assert r.status_code in (200, 303), r.text
            csrf = c.get("/api/me").json()["csrf"]

            # counters and the live view come from the line process
            first = c.get("/api/line/state").json()["stats"]["items"]
            moved = wait_for(lambda: c.get("/api/line/state").json()["stats"]["items"] > first + 5)
            assert moved
            last = wait_for(lambda: c.get("/api/line/state").json()["last"])
            assert c.get(f"/api/line/frame/{last['seq']}.jpg").status_code in (200, 404)

            # a batch started on the HMI runs in the line, and is audited
            r = c.post(
                "/api/line/batch/start",
                json={"lot": "L77", "reason": "shift start"},
                headers={"x-csrf-token": csrf},
            )
            assert r.status_code == 200, r.text
            assert app.pipeline.batch is not None and app.pipeline.batch.lot == "L77"
            assert c.get("/api/line/state").json()["batch"]["lot"] == "L77"
            assert app.audit.entries(action="batch.start")[0]["user"] == "olga"

            # an alarm raised in the line is acknowledged from the web process
            app.pipeline.alarms.raise_("BIN_FULL", "reject bin full", "major", True)
            wait_for(lambda: c.get("/api/line/state").json()["alarms"])
            r = c.post(
                "/api/line/alarms/BIN_FULL/ack",
                json={"reason": "emptied"},
                headers={"x-csrf-token": csrf},
            )
            assert r.status_code == 200, r.text
            assert app.pipeline.alarms.active()[0].acked_by == "olga"

            # the probes answer for the line, not for the web process
            assert c.get("/readyz").json()["checks"]["camera"]["configured"] is not None
            assert "edge_" in c.get("/metrics").text
    finally:
        app.stop()
        web.stop()
    assert not web.proc.is_alive()
    ok, problems = app.audit.verify()
    assert ok, problems


def test_the_line_goes_on_when_the_web_process_dies(tmp_path):
    app = ws.appliance(tmp_path, imgs=[grey(200)] * 200, period_s=0.01)
    web = IsolatedWeb(app)
    app.start()
    web.start()
    try:
        web.proc.kill()
        web.proc.join(5)
        assert app.pipeline.wait(30)
        assert app.pipeline.stats.snapshot()["items"] == 200
        assert not web.status()["up"]
    finally:
        app.stop()
        web.stop()
