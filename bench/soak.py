"""Soak test: the whole appliance at line rate for a long run, then the numbers that matter.

    python bench/soak.py --minutes 30 [--rate 600] [--warmup-min 2] [--config FILE] [--json]

Runs simulator -> pipeline -> simulated PLC (a real Modbus server) -> MQTT to a Mosquitto it
starts on a free loopback port with its own config, plus the ops components (metrics,
maintenance, watchdog). Every 30 s it prints items, rate, deadline misses, resident
memory and outbox depth. At the end it stops the camera, lets the outbox drain, and
reports (exit status 1 when a criterion fails):

  deadline misses    must be 0
  memory growth      resident set size, end vs. end of warm-up: must stay under 5 %
  outbox depth       after the drain: must be 0 (every result acknowledged by the broker)

Not part of the test suite: it runs for minutes. The machine running it should not be
busy with other work, or deadline misses measure that work rather than the appliance.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from broker import start_mosquitto

from edge.app import Appliance
from edge.config import AppConfig, load_config


def soak_config(base: AppConfig, state: Path, port: int, rate: float) -> AppConfig:
    data = base.model_dump(mode="json", exclude={"recipes"})
    data["recipes"] = {k: v.model_dump(mode="json") for k, v in base.recipes.items()}
    if data["source"]["type"] != "simulator":
        raise SystemExit(
            "the soak test drives the simulator: use a config with source.type simulator"
        )
    data["source"].update(rate_per_min=rate, items=None, realtime=True)
    data["records"]["state_dir"] = str(state)
    data["plc"] = {"type": "sim"}
    data["mqtt"].update(enabled=True, host="127.0.0.1", port=port)
    data["web"]["enabled"] = False
    return AppConfig.model_validate(data)


def ensure_outputs(app: Appliance) -> None:
    """The PLC and MQTT components, built here if this checkout's COMPONENTS lacks them."""
    names = {str(getattr(c, "name", "")) for c in app.components}
    for name, target in (("plc", "edge.line.plc.component"), ("mqtt", "edge.publish.mqtt")):
        if name not in names:
            import importlib

            comp = importlib.import_module(target).build(app)
            if comp is not None:
                app.components.insert(0, comp)


def outbox_depth(app: Appliance) -> int:
    return int(app.pipeline.db.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


class Received:
    """An MQTT subscriber counting what reached the broker."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.count = 0
        self.by_kind: dict[str, int] = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-listener")
        self.c.on_message = self._on
        self.c.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on(self, _c: Any, _u: Any, msg: Any) -> None:
        self.count += 1
        kind = msg.topic.rsplit("/", 1)[-1]
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


#: the service's environment (systemd/edge-inspect.service) that changes memory behaviour
SERVICE_ENV = {"MALLOC_ARENA_MAX": "2"}


def main() -> int:
    if any(os.environ.get(k) != v for k, v in SERVICE_ENV.items()) and "--as-is" not in sys.argv:
        # glibc reads MALLOC_ARENA_MAX at start-up: run again with the unit's environment
        os.environ.update(SERVICE_ENV)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=600.0, help="items per minute")
    ap.add_argument("--warmup-min", type=float, default=None, help="default: min(2, minutes/5)")
    ap.add_argument("--config", type=Path, default=None, help="default: the embedded demo")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--every-s", type=float, default=30.0, help="progress line period")
    ap.add_argument(
        "--as-is", action="store_true", help="keep this environment (no MALLOC_ARENA_MAX)"
    )
    args = ap.parse_args()
    warmup_s = 60.0 * (
        args.warmup_min if args.warmup_min is not None else min(2.0, args.minutes / 5)
    )
    total_s = 60.0 * args.minutes

    tmp = Path(tempfile.mkdtemp(prefix="edge-soak-"))
    broker, port = start_mosquitto(tmp)
    proc = psutil.Process()
    rows: list[dict[str, Any]] = []
    try:
        cfg = soak_config(load_config(args.config), tmp / "state", port, args.rate)
        app = Appliance(cfg)
        ensure_outputs(app)
        listener = Received(port)
        t0 = time.monotonic()
        app.start()
        rss_warm = None
        blocks_warm = 0
        next_print = t0 + min(args.every_s, warmup_s or args.every_s)
        while (now := time.monotonic()) - t0 < total_s:
            time.sleep(max(0.0, min(1.0, t0 + total_s - now)))
            now = time.monotonic()
            if rss_warm is None and now - t0 >= warmup_s:
                rss_warm = proc.memory_info().rss
                blocks_warm = sys.getallocatedblocks()
            if now >= next_print or now - t0 >= total_s:
                s = app.pipeline.stats.snapshot()
                row = {
                    "t_min": round((now - t0) / 60, 2),
                    "items": s["items"],
                    "rate_per_min": s["rate_per_min"],
                    "deadline_misses": s["deadline_misses"],
                    "p99_ms": s["p99_ms"],
                    "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                    "py_blocks_k": round(sys.getallocatedblocks() / 1000, 1),
                    "outbox": outbox_depth(app),
                    "alarms": [a.code for a in app.pipeline.alarms.active()],
                }
                rows.append(row)
                if not args.json:
                    print(json.dumps(row), flush=True)
                next_print = now + args.every_s
        rss_end = proc.memory_info().rss
        blocks_end = sys.getallocatedblocks()
        # stop the camera, let every item reach its verdict, let the outbox drain
        app.pipeline.source.stop()
        app.pipeline.wait(30)
        drain_end = time.monotonic() + 60
        while outbox_depth(app) and time.monotonic() < drain_end:
            time.sleep(0.2)
        depth_end = outbox_depth(app)
        status = app.status()
        s = app.pipeline.stats.snapshot()
        app.stop()
        time.sleep(0.5)
        listener.close()
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    growth = (rss_end - rss_warm) / rss_warm * 100.0 if rss_warm else None
    summary = {
        "minutes": args.minutes,
        "warmup_min": round(warmup_s / 60, 2),
        "rate_per_min_target": args.rate,
        "items": s["items"],
        "rate_per_min_measured": round(s["items"] / (total_s / 60.0), 1),
        "passed": s["passed"],
        "rejected": s["rejected"],
        "escapes": s["escapes"],
        "deadline_misses": s["deadline_misses"],
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
        "max_ms": s["max_ms"],
        "rss_mb_after_warmup": round(rss_warm / 2**20, 1) if rss_warm else None,
        "rss_mb_end": round(rss_end / 2**20, 1),
        "rss_growth_pct": round(growth, 2) if growth is not None else None,
        # Python objects alive (pymalloc blocks): a leak of objects shows here, allocator
        # high-water marks (a burst of frames in flight) do not
        "py_blocks_growth_pct": round((blocks_end - blocks_warm) / blocks_warm * 100, 2)
        if rss_warm
        else None,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "outbox_depth_end": depth_end,
        "mqtt_messages_received": listener.count,
        "mqtt_by_kind": listener.by_kind,
        "plc": {
            k: status.get("plc", {}).get(k)
            for k in ("written", "late_for_gate", "unconfirmed_rejects", "lost_links")
        },
        "bus_dropped": {
            sub.name: sub.dropped for sub in app.pipeline.bus.subscriptions() if sub.dropped
        },
    }
    checks = {
        "zero deadline misses": s["deadline_misses"] == 0,
        "memory growth < 5 %": growth is not None and growth < 5.0,
        "outbox drained": depth_end == 0,
    }
    summary["checks"] = checks
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(json.dumps(summary, indent=2))
        for name, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    threading.current_thread().name = "soak"
    sys.exit(main())
