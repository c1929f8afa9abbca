"""The whole appliance on a 25 MB filesystem: it fails safe while full, and leaves whole records.

`edge demo` as shipped (web UI in its own process, simulated PLC), its state directory on
a 25 MB tmpfs mounted for the test (root only, as in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import httpx
import pytest
import yaml
from disk_support import SmallFs, fill

from edge.store.audit import AuditTrail
from edge.store.db import Database
from edge.web.auth import UserStore

import web_support
from services import free_port

EDGE = [sys.executable, "-m", "edge.cli"]


@pytest.fixture
def small_fs():
    fs = SmallFs()
    yield fs
    fs.close()


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.getcwd(), "PYTHONUNBUFFERED": "1"}


def demo_config(tmp_path: Path, **records) -> Path:
    data = yaml.safe_load(resources.files("edge.defaults").joinpath("demo.yaml").read_text())
    data.setdefault("records", {}).update(records)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_demo(state: Path, port: int, items: int, config: Path | None = None):
    cmd = [*EDGE, "demo", "--items", str(items), "--rate", "1200", "--headless", "--json"]
    cmd += ["--port", str(port), "--state-dir", str(state)]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )


def records_verify(state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*EDGE, "records", "verify", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )


def finish(proc, timeout=400) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_a_demo_that_fills_its_disk_rejects_fails_safe_and_leaves_nothing_dangling(
    tmp_path, small_fs
):
    state = small_fs.mount(tmp_path / "fs", "25m") / "state"
    db = Database(state / "edge.db")
    UserStore(db, AuditTrail(db)).create(
        "olga", "Olga Operator", "operator", "op-secret-1", by="shell:test", reason="test"
    )
    # the worst case: every image kept and no free-space steps, so images fill the disk
    cfg = demo_config(
        tmp_path,
        sample_pass_every=1,
        pass_images_min_free_mb=0,
        reject_images_min_free_mb=0,
        min_free_mb=0,
    )
    port = free_port()
    proc = start_demo(state, port, items=400, config=cfg)
    down: dict | None = None
    login = None
    metrics = ""
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            end = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < end and login is None:
                time.sleep(0.3)
                try:
                    r = c.get("/readyz")
                except httpx.HTTPError:
                    continue
                rec = r.json()["checks"].get("records", {})
                if (
                    r.status_code == 503
                    and rec.get("up") is False
                    and "cannot be written" in str(rec.get("detail"))
                ):
                    down = rec
                    for n in range(5):
                        # whatever a failed image write gave back is taken: the disk is full
                        fill(state.parent, f"ballast-{n}")
                        time.sleep(0.5)
                        fill(state.parent, f"ballast-{n}-b")
                        login = web_support.post_login(c, "olga", "op-secret-1")
                        if login.status_code != 303:  # 303: there was room after all
                            break
                        c.cookies.clear()
                    for _ in range(50):
                        metrics = c.get("/metrics").text
                        if "edge_records_writable 0.0" in metrics:
                            break
                        time.sleep(0.2)
    finally:
        summary = finish(proc)
    assert down is not None, "/readyz never reported that records cannot be written"
    assert "full" in down["detail"]
    assert login is not None and login.status_code == 503, (login and login.text, summary)
    assert "cannot write its records" in login.json()["detail"]
    assert "disk is full" in login.json()["detail"]
    assert "edge_records_writable 0.0" in metrics, metrics
    assert "edge_records_free_bytes" in metrics and "edge_records_not_recorded" in metrics

    # every item is accounted for, and those that could not be recorded were rejected
    assert summary["items"] == 400
    assert summary["passed"] + summary["rejected"] == 400
    assert summary["by_reason"].get("NOT_RECORDED", 0) > 0
    assert summary["escapes"] == 0, summary

    r = records_verify(state)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(state.rglob("*.tmp")) == []


def test_on_a_small_disk_the_default_steps_keep_no_images_and_report_not_ready(tmp_path, small_fs):
    state = small_fs.mount(tmp_path / "fs", "25m") / "state"
    port = free_port()
    proc = start_demo(state, port, items=150)  # the embedded defaults: 25 MB is below them all
    seen = None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            end = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < end and seen is None:
                time.sleep(0.3)
                try:
                    r = c.get("/readyz")
                except httpx.HTTPError:
                    continue
                rec = r.json()["checks"].get("records", {})
                if r.status_code == 503 and "min_free_mb" in str(rec.get("detail")):
                    seen = rec
    finally:
        summary = finish(proc)
    assert seen is not None and seen["up"] is False
    assert summary["items"] == 150
    assert "NOT_RECORDED" not in summary["by_reason"]  # the database still had room
    assert [p for p in (state / "images").rglob("*") if p.is_file()] == []
    conn = Database(state / "edge.db").conn
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 150
    codes = {r[0] for r in conn.execute("SELECT code FROM alarm_log WHERE event = 'raised'")}
    assert {"DISK_LOW_PASS_IMAGES", "DISK_LOW_REJECT_IMAGES", "DISK_LOW_RECORDS"} <= codes
    r = records_verify(state)
    assert r.returncode == 0, r.stdout + r.stderr


def test_web_writes_on_a_full_disk_answer_503_with_a_plain_message(tmp_path, small_fs):
    from edge.web.isolated import IsolatedWeb

    from fake_tools import grey

    state = small_fs.mount(tmp_path / "fs", "8m") / "state"
    app = web_support.appliance(state, imgs=[grey(200)] * 2000, period_s=0.05)
    web_support.add_users(app)
    web = IsolatedWeb(app)  # the web UI in its own process, as shipped
    app.start()
    web.start()
    try:
        with httpx.Client(base_url=web.url, timeout=30) as c:
            r = web_support.post_login(c, "olga", "op-secret-1")
            assert r.status_code in (200, 303), r.text
            csrf = c.get("/api/me").json()["csrf"]
            ballast = fill(state)
            # a write the line process runs for the web process (a batch start)
            r = c.post(
                "/api/line/batch/start",
                json={"lot": "L9", "reason": "shift start"},
                headers={"x-csrf-token": csrf},
            )
            assert r.status_code == 503, r.text
            assert "cannot write its records" in r.json()["detail"]
            # a login (its session and audit entry) from a browser: a page that says why
            with httpx.Client(base_url=web.url, timeout=30) as b:
                r = web_support.post_login(
                    b, "tom", "tech-secret-1", headers={"accept": "text/html"}
                )
            assert r.status_code == 503, r.text
            assert "text/html" in r.headers["content-type"]
            assert "the disk is full" in r.text and "could not be recorded" in r.text
            ballast.unlink()
            r = c.post(
                "/api/line/batch/start",
                json={"lot": "L9", "reason": "shift start"},
                headers={"x-csrf-token": csrf},
            )
            assert r.status_code == 200, r.text  # space is back: the same request works
    finally:
        web.stop()
        app.stop()
