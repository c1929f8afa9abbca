"""The whole appliance on loopback: simulated line -> inspection -> PLC (Modbus) -> MQTT.

For each rate it runs the simulator (default recipe of the scenario), the simulated PLC
and a real Mosquitto on a free loopback port, and prints: the rate actually sustained,
deadline misses, trigger->verdict and trigger->PLC-write latency (p50/p99), what the gate
did against what was reported, and results delivered over MQTT.

Run: python bench/line.py [--rates 600,1200] [--seconds 30] [--scenario vials] [--ramp]
`--ramp` keeps doubling the rate after the list until a run misses a deadline or a PASS
reaches the PLC too late for the gate (`late_for_gate`: amended to REJECT TIMEOUT).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from broker import start_mosquitto

from edge.app import Appliance
from edge.cli import _override
from edge.config import load_config

BASE = "acme/site1/packaging/line1/inspect1/inspection"


class Counter:
    """A plant-side subscriber counting result messages."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.ids: set[str] = set()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=mqtt.MQTTv5
        )
        self.c.on_message = lambda _c, _u, m: self.ids.add(json.loads(m.payload)["id"])
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"{BASE}/result", qos=1)
        self.c.loop_start()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def run(
    rate: float,
    seconds: float,
    scenario: str,
    config: str | None,
    port: int,
    images: bool = True,
    recipe: str | None = None,
) -> dict:
    items = max(int(rate / 60 * seconds), 20)
    state = Path(tempfile.mkdtemp(prefix="bench-line-"))
    cfg = _override(
        load_config(config),
        **{
            "source.type": "simulator",
            "source.scenario": scenario,
            "source.rate_per_min": rate,
            "source.items": items,
            "source.realtime": True,
            "records.state_dir": str(state),
            "plc": {"type": "sim"},
            "mqtt.enabled": True,
            "mqtt.host": "127.0.0.1",
            "mqtt.port": port,
            "web.enabled": False,
            "recipe": recipe,
            **(
                {}
                if images
                else {"records.keep_reject_images": False, "records.sample_pass_every": 0}
            ),
        },
    )
    sub = Counter(port)
    app = Appliance(cfg)
    triggers: list[float] = []
    app.pipeline.bus.subscribe_sync("verdict", lambda _t, it: triggers.append(it.t_trigger))
    app.start()
    app.pipeline.wait(seconds * 3 + 60)
    plc = next(c for c in app.components if c.name == "plc")
    mq = next(c for c in app.components if c.name == "mqtt")
    plc.sim.conveyor.wait_idle(10)
    end = time.monotonic() + 15
    while len(sub.ids) < items and time.monotonic() < end:
        time.sleep(0.05)
    s = app.pipeline.stats.snapshot()
    lat_write = plc.latencies_ms()
    rows = {r["id"]: r for r in app.pipeline.db.items(limit=10**6)}
    conveyor = plc.sim.conveyor
    mismatch = sum(
        (r["verdict"] == "PASS") != (conveyor.outcome(r["encoder"]) == "accepted")
        for r in rows.values()
    )
    span = (max(triggers) - min(triggers)) if len(triggers) > 1 else float("nan")
    out = {
        "rate_set": rate,
        "items": s["items"],
        "sustained_per_min": round((len(triggers) - 1) / span * 60, 1) if span == span else None,
        "deadline_misses": s["deadline_misses"],
        "verdict_p50_ms": s["p50_ms"],
        "verdict_p99_ms": s["p99_ms"],
        "plc_write_p50_ms": pct(lat_write, 50),
        "plc_write_p99_ms": pct(lat_write, 99),
        "plc_written": plc.status()["written"],
        "late_for_gate": plc.status()["late_for_gate"],
        "gate_mismatches": mismatch,
        "mqtt_delivered": len(sub.ids),
        "outbox_left": mq.status()["outbox"],
        "rejected": s["rejected"],
    }
    app.stop()
    sub.close()
    shutil.rmtree(state, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="600,1200", help="items/min, comma separated")
    ap.add_argument("--seconds", type=float, default=30.0, help="run length per rate")
    ap.add_argument("--scenario", default="vials")
    ap.add_argument("--config", default=None, help="YAML config (default: embedded demo)")
    ap.add_argument("--recipe", default=None, help="recipe name (default: the scenario's)")
    ap.add_argument(
        "--ramp", action="store_true", help="double the rate until a deadline is missed"
    )
    ap.add_argument("--no-images", action="store_true", help="keep no images (isolates their cost)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    broker, port = start_mosquitto(folder, ["max_queued_messages 0"])
    cols = (
        "rate_set",
        "sustained_per_min",
        "items",
        "deadline_misses",
        "verdict_p50_ms",
        "verdict_p99_ms",
        "plc_write_p50_ms",
        "plc_write_p99_ms",
        "late_for_gate",
        "gate_mismatches",
        "mqtt_delivered",
        "outbox_left",
    )
    print(" ".join(f"{c:>17s}" for c in cols))
    rates = [float(r) for r in args.rates.split(",")]
    best = None
    try:
        i = 0
        while i < len(rates):
            r = run(
                rates[i],
                args.seconds,
                args.scenario,
                args.config,
                port,
                not args.no_images,
                args.recipe,
            )
            print(" ".join(f"{r[c]!s:>17s}" for c in cols), flush=True)
            clean = r["deadline_misses"] == 0 and r["late_for_gate"] == 0
            if clean and r["gate_mismatches"] == 0:
                best = max(best or 0, r["sustained_per_min"] or 0)
            if args.ramp and i == len(rates) - 1 and clean and rates[i] < 20000:
                rates.append(rates[i] * 2)
            i += 1
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"highest sustained rate, no deadline miss, no late gate write: {best} items/min")


if __name__ == "__main__":
    sys.exit(main())
