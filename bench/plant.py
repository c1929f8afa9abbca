"""A plant of lines on one broker: N appliances, one subscriber, what each line delivers.

    python bench/plant.py --lines N --rate R --seconds S [--encoding json|sparkplug] [--json]
    python bench/plant.py --max-lines M --rate R --seconds S      # 1, 2, 4, ... up to M

Starts one Mosquitto on a free loopback port and N headless simulated appliances
(`edge demo --headless --json`, separate processes, each with its own state directory,
station id `edge-NN` and ISA-95 line `lineNN`), one after the other once the previous
one's first result has arrived (a start-up loads the detector: the CPUs it takes are not
the plant's steady state). Once every line delivers, the measured window of S seconds
starts; then every appliance is stopped (SIGTERM: the outbox drains, the summary prints).
One subscriber counts, per line:

  in window   results of items triggered in the window (what the percentiles are over)
  delivered   distinct results of the whole run (by the appliance's outbox `seq`)
  duplicates  results received again (QoS 1 may deliver twice; de-duplicated by seq)
  gaps        seqs missing between 1 and the highest one received
  lost        items the appliance inspected whose result never arrived (whole run)
  p50/p99 ms  end to end: trigger (the result's `trigger_time`) to arrival at the subscriber
  misses      deadline misses in the window (the appliance's retained `counters` at the
              window's start, against its final summary); `all` over the whole run

A line counts as sustained with 0 deadline misses and 0 lost results; the run prints the
number of lines sustained. `--max-lines` doubles N until a run fails and prints the
largest N that held. Each appliance runs the full demo (simulated vial line, detector on
ONNX Runtime, simulated PLC) on this one machine's CPUs, so the number says how many
appliances this machine can be, not how many a broker can take: in a plant each line has
its own computer. Load average before and after is printed: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from broker import start_mosquitto
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
BASE = "acme/site1/packaging/line{n:02d}/inspect1/inspection"


class Counter:
    """The plant's subscriber: every result of every line, by line and seq."""

    def __init__(self, port: int, encoding: str):
        self.encoding = encoding
        self.seen: dict[str, dict[int, int]] = {}  # line -> seq -> times received
        self.items: dict[str, set[str]] = {}
        self.latency: dict[str, list[tuple[float, float]]] = {}  # (trigger, ms)
        self.counters: dict[str, dict[str, Any]] = {}  # line -> its last `counters`
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plant-counter")
        topics = [("+/+/+/+/+/inspection/counters", 1)]
        topics.append(
            ("+/+/+/+/+/inspection/result", 1) if encoding == "json" else ("spBv1.0/+/DDATA/#", 1)
        )
        self.client.on_connect = lambda c, *a: c.subscribe(topics)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise SystemExit("subscriber could not subscribe")

    def _result(self, msg: Any) -> tuple[str, dict[str, Any]] | None:
        if msg.topic.endswith("/counters"):
            with self._lock:
                self.counters[msg.topic.split("/")[3]] = json.loads(msg.payload)
            return None
        if self.encoding == "json":
            return msg.topic.split("/")[3], json.loads(msg.payload)
        from edge.publish.sparkplug_payload import decode

        values = {n: v for n, _, v in decode(msg.payload)}
        if "Last Result/Message" not in values:
            return None  # counters, state, alarms
        node = msg.topic.split("/")[3]  # edge-NN, the station id of lineNN
        return f"line{node.removeprefix('edge-')}", json.loads(values["Last Result/Message"])

    def _on_message(self, client, userdata, msg) -> None:
        now = time.time()
        got = self._result(msg)
        if got is None:
            return
        line, r = got
        with self._lock:
            seen = self.seen.setdefault(line, {})
            seen[r["seq"]] = seen.get(r["seq"], 0) + 1
            self.items.setdefault(line, set()).add(r["id"])
            if seen[r["seq"]] == 1 and r.get("trigger_time"):
                t = datetime.fromisoformat(r["trigger_time"]).timestamp()
                self.latency.setdefault(line, []).append((t, (now - t) * 1000.0))

    def first(self, line: str) -> bool:
        with self._lock:
            return bool(self.seen.get(line))

    def misses(self, line: str) -> int | None:
        with self._lock:
            c = self.counters.get(line)
        return None if c is None else int(c.get("deadline_misses", 0))

    def line_stats(
        self, line: str, summary: dict[str, Any], window: tuple[float, float], misses0: int | None
    ) -> dict[str, Any]:
        with self._lock:
            seen = dict(self.seen.get(line, {}))
            lat = sorted(ms for t, ms in self.latency.get(line, []) if window[0] <= t < window[1])
            items = len(self.items.get(line, set()))
        top = max(seen, default=0)
        pct = statistics.quantiles(lat, n=100) if len(lat) >= 2 else lat * 99
        final = summary.get("deadline_misses")
        return {
            "line": line,
            "in_window": len(lat),
            "inspected": summary.get("items", 0),
            "delivered": len(seen),
            "duplicates": sum(n - 1 for n in seen.values()),
            "gaps": top - len(seen),
            "lost": max(0, summary.get("items", 0) - items),
            "p50_ms": round(pct[49], 1) if pct else None,
            "p99_ms": round(pct[98], 1) if pct else None,
            "misses": None if final is None or misses0 is None else final - misses0,
            "misses_all": final,
            "appliance_p99_ms": summary.get("p99_ms"),
        }

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def line_config(folder: Path, n: int, port: int, encoding: str) -> Path:
    cfg = yaml.safe_load((ROOT / "edge" / "defaults" / "demo.yaml").read_text())
    cfg["station"] = {"id": f"edge-{n:02d}", "line": f"line{n:02d}"}
    cfg["pipeline"]["workers"] = 1  # a low rate needs one worker; N lines share 2 cores
    cfg["web"] = {"enabled": False}
    cfg["mqtt"] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "encoding": "both" if encoding == "sparkplug" else "json",  # counters in JSON
        "counters_interval_s": 1.0,
    }
    path = folder / f"line{n:02d}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_plant(lines: int, rate: float, seconds: float, encoding: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="plant-"))
    broker, port = start_mosquitto(tmp, ["max_queued_messages 0"])
    counter = Counter(port, encoding)
    procs: list[tuple[str, subprocess.Popen]] = []
    edge = [sys.executable, "-m", "edge.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()
    try:
        for n in range(1, lines + 1):
            cfg = line_config(tmp, n, port, encoding)
            cmd = [*edge, "demo", "--config", str(cfg), "--rate", str(rate), "--headless"]
            cmd += ["--json", "--state-dir", str(tmp / f"state{n:02d}")]
            p = subprocess.Popen(
                cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            procs.append((f"line{n:02d}", p))
            end = time.monotonic() + 120  # the next line starts once this one delivers
            while not counter.first(f"line{n:02d}") and time.monotonic() < end:
                if p.poll() is not None:
                    break
                time.sleep(0.1)
        time.sleep(1.5)  # a fresh `counters` from every line (published every second)
        misses0 = {name: counter.misses(name) for name, _ in procs}
        window = (time.time(), time.time() + seconds)
        time.sleep(seconds)
        for _, p in procs:
            p.terminate()  # the appliance stops as on SIGTERM under systemd: drain, summary
        summaries = {}
        for name, p in procs:
            out, _ = p.communicate(timeout=120)
            last = [ln for ln in out.splitlines() if ln.startswith("{")]
            summaries[name] = json.loads(last[-1]) if last else {"error": f"exit {p.returncode}"}
        time.sleep(2.0)  # the last results in flight
        stats = [counter.line_stats(n, summaries[n], window, misses0[n]) for n, _ in procs]
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
        counter.close()
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
    ok = [s for s in stats if s["misses"] == 0 and s["lost"] == 0 and s["gaps"] == 0]
    return {
        "lines": lines,
        "rate_per_min": rate,
        "seconds": seconds,
        "encoding": encoding,
        "sustained": len(ok) == lines,
        "lines_ok": len(ok),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "per_line": stats,
    }


def show(res: dict[str, Any]) -> None:
    print(
        f"\n{res['lines']} lines x {res['rate_per_min']:g}/min for {res['seconds']:g} s "
        f"({res['encoding']}), load {res['load_before']} -> {res['load_after']}"
    )
    print(
        f"{'line':8} {'window':>6} {'inspected':>9} {'delivered':>9} {'dupl':>5} {'gaps':>5} "
        f"{'lost':>5} {'p50 ms':>7} {'p99 ms':>7} {'misses':>6} {'all':>4}"
    )
    for s in res["per_line"]:
        print(
            f"{s['line']:8} {s['in_window']:>6} {s['inspected']:>9} {s['delivered']:>9} "
            f"{s['duplicates']:>5} {s['gaps']:>5} {s['lost']:>5} {s['p50_ms'] or '-':>7} "
            f"{s['p99_ms'] or '-':>7} {s['misses'] if s['misses'] is not None else '?':>6} "
            f"{s['misses_all'] if s['misses_all'] is not None else '?':>4}"
        )
    verdict = "sustained" if res["sustained"] else f"NOT sustained ({res['lines_ok']} lines ok)"
    print(f"=> {res['lines']} lines: {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=2)
    ap.add_argument("--max-lines", type=int, help="try 1, 2, 4, ... lines up to this many")
    ap.add_argument("--rate", type=float, default=30.0, help="items per minute, each line")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--encoding",
        choices=["json", "sparkplug"],
        default="json",
        help="what the subscriber counts (sparkplug: JSON stays on for the counters)",
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    counts = [args.lines]
    if args.max_lines:
        counts, n = [], 1
        while n < args.max_lines:
            counts.append(n)
            n *= 2
        counts.append(args.max_lines)
    results, best = [], 0
    for n in counts:
        res = run_plant(n, args.rate, args.seconds, args.encoding)
        results.append(res)
        if not args.json:
            show(res)
        if not res["sustained"]:
            break
        best = n
    if args.json:
        print(json.dumps({"lines_sustained": best, "runs": results}))
    else:
        print(
            f"\nlines sustained with 0 deadline misses and 0 lost results: {best} "
            f"(at {args.rate:g}/min each, {args.seconds:g} s)"
        )
    sys.exit(0 if best == counts[-1] else 1)


if __name__ == "__main__":
    main()
