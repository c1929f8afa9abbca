"""The appliance on a GigE Vision camera: Aravis's fake camera on loopback, optionally pulled.

Starts `arv-fake-gv-camera-0.8 -i 127.0.0.1`, runs `examples/gige-fake.yaml` as shipped
(software trigger at 600 items/min, exposure check, simulated PLC, web UI in its own
process) for N items and, with `--outage-at`, kills the camera after that many seconds and
starts it again `--outage-s` later. Prints one JSON line: verdicts by reason, deadline
misses, trigger->verdict p50/p99 (the trigger-to-frame time of the camera included),
items passed without a frame (must be 0), how long after the first item that lost its
frame the alarm came, and how long after the camera came back the first item passed.

Run: python bench/gige.py [--items 300] [--outage-at 10 --outage-s 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edge.app import Appliance
from edge.cli import _override
from edge.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_camera(serial: str) -> subprocess.Popen:
    exe = shutil.which("arv-fake-gv-camera-0.8") or "/usr/bin/arv-fake-gv-camera-0.8"
    p = subprocess.Popen([exe, "-i", "127.0.0.1", "-s", serial], stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    if p.poll() is not None:
        sys.exit("the fake camera did not start (another one on 127.0.0.1:3956?)")
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--outage-at", type=float, default=None, help="seconds into the run")
    ap.add_argument("--outage-s", type=float, default=3.0)
    ap.add_argument("--serial", default="GV01")
    args = ap.parse_args()

    cam = start_camera(args.serial)
    state = Path(tempfile.mkdtemp(prefix="bench-gige-"))
    try:
        cfg = load_config(ROOT / "examples" / "gige-fake.yaml")
        cfg = _override(
            cfg,
            **{
                "source.items": args.items,
                "source.serial": args.serial,
                "records.state_dir": str(state),
                "web.port": free_port(),
            },
        )
        app = Appliance(cfg)
        items, alarms = [], []
        app.pipeline.bus.subscribe_sync("verdict", lambda _t, it: items.append(it))
        app.pipeline.bus.subscribe_sync("alarm", lambda _t, ev: alarms.append(ev))
        back_at: list[float] = []

        def outage() -> None:
            nonlocal cam
            time.sleep(args.outage_at)
            cam.kill()
            cam.wait()
            time.sleep(args.outage_s)
            cam = start_camera(args.serial)
            back_at.append(time.time())

        app.start()
        t0 = time.monotonic()
        if args.outage_at is not None:
            threading.Thread(target=outage, daemon=True).start()
        app.pipeline.wait(args.items * 0.2 + 60)
        app.stop()
        wall = time.monotonic() - t0
    finally:
        cam.kill()
        shutil.rmtree(state, ignore_errors=True)

    lat = np.array([it.latency_ms for it in items if it.latency_ms is not None])
    reasons: dict[str, int] = {}
    for it in items:
        for r in it.reasons:
            reasons[r] = reasons.get(r, 0) + 1
    missing = sorted((it for it in items if it.frame.image is None), key=lambda it: it.encoder)
    raised = [a for a in alarms if a["code"] == "CAMERA_NO_FRAME" and a["event"] == "raised"]
    out = {
        "items": len(items),
        "seconds": round(wall, 1),
        "passed": sum(it.verdict.value == "PASS" for it in items),
        "rejected_by_reason": reasons,
        "deadline_misses": sum(it.timed_out for it in items),
        "passed_without_frame": sum(
            it.verdict.value == "PASS" and it.frame.image is None for it in items
        ),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "pitch_ms": 60000.0 / cfg.source.rate_per_min,
    }
    if missing and raised:
        out["alarm_after_first_missing_ms"] = round(
            (raised[0]["raised_utc"] - missing[0].wall_trigger) * 1000, 1
        )
    if back_at:
        later = [it for it in items if it.verdict.value == "PASS" and it.wall_trigger > back_at[0]]
        if later:
            out["first_pass_after_camera_back_s"] = round(later[0].wall_trigger - back_at[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
