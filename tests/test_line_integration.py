"""3,000 items through the appliance with the simulated PLC and a real Mosquitto that goes
away for 10 s mid-run: the plant receives every result, and the gate did what was reported."""

from __future__ import annotations

import threading
import time

import pytest

from services import Line, Mosquitto, Subscriber, dark_every, line_config

BASE = "acme/site1/packaging/line1/inspect1/inspection"
N = 3000
PERIOD = 0.01  # 6,000 items/min


@pytest.mark.integration
def test_3000_items_with_a_broker_outage_lose_nothing_and_gate_every_reject(tmp_path):
    if not Mosquitto.available():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Mosquitto(folder, persistence=True).start()  # a plant broker keeps sessions
    sub = Subscriber(broker.port, f"{BASE}/result", client_id="mes-historian")
    cfg = line_config(
        tmp_path / "state", period_s=PERIOD, gate_mm=2000, deadline_ms=150, mqtt_port=broker.port
    )
    line = Line(cfg, dark_every(N, 9), PERIOD)
    outage: dict[str, float] = {}

    def outage_mid_run() -> None:
        while len(line.verdicts) < N // 3:
            time.sleep(0.05)
        outage["down"] = time.monotonic()
        broker.stop()
        time.sleep(10)
        broker.start()
        outage["up"] = time.monotonic()

    chaos = threading.Thread(target=outage_mid_run, daemon=True)
    try:
        line.start()
        chaos.start()
        assert line.wait(180)
        chaos.join(30)
        assert outage.get("up"), "the broker was not restarted"
        assert line.mqtt.status()["disconnects"] >= 1

        def all_received(s):
            return len({m["id"] for m in s.on("/result")}) >= N

        assert sub.wait_for(all_received, 60), (
            f"received {len({m['id'] for m in sub.on('/result')})}"
        )
        results = sub.on("/result")
        rows = line.rows()
        assert len(rows) == N
        # every item, by id; seq gap-free after de-duplication
        latest = {}
        for m in results:
            if m["id"] not in latest or m["seq"] > latest[m["id"]]["seq"]:
                latest[m["id"]] = m
        assert set(latest) == set(rows)
        seqs = sorted({m["seq"] for m in results})
        assert seqs == list(range(1, seqs[-1] + 1))
        # what the plant was told is what the gate did: every REJECT gated, no PASS gated
        conveyor = line.sim.conveyor
        assert conveyor.wait_idle(10)
        wrong = [
            i
            for i, m in latest.items()
            if (m["verdict"] == "PASS") != (conveyor.outcome(m["encoder"]) == "accepted")
        ]
        assert wrong == []
        assert sum(m["verdict"] == "REJECT" for m in latest.values()) >= N // 9
        assert wait_for_empty_outbox(line)
    finally:
        line.stop()
        sub.close()
        broker.stop()


def wait_for_empty_outbox(line, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if line.mqtt.status()["outbox"] == 0:
            return True
        time.sleep(0.05)
    return False
