"""A plant of lines: the line's broker bridged to the plant broker (docs/deployment.md,
"Scaling out"). The appliance publishes to its line broker only; the plant's systems
subscribe on the plant broker. An outage of the link must cost nothing but time.
"""

from __future__ import annotations

import time

import pytest

from mqtt_support import wait_until
from services import BASE, Line, Mosquitto, Subscriber, dark_every, line_config


def bridge_to(plant: Mosquitto, name: str = "line1") -> str:
    """The line broker's side of the bridge, as in the deployment doc (QoS 1, persistent)."""
    return "\n".join(
        [
            f"connection {name}-to-plant",
            f"address 127.0.0.1:{plant.port}",
            "topic acme/# out 1",  # results, counters, alarms: line -> plant, QoS 1
            "cleansession false",  # the bridge's session and its queue survive an outage
            f"remote_clientid {name}-bridge",
            f"local_clientid {name}-bridge-local",
            "start_type automatic",
            "restart_timeout 1 2",
            "keepalive_interval 5",
            "notifications false",
            "",
        ]
    )


@pytest.fixture
def brokers(tmp_path):
    if not Mosquitto.available():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    (tmp_path / "plant").mkdir()
    (tmp_path / "line").mkdir()
    plant = Mosquitto(tmp_path / "plant", persistence=True).start()
    line = Mosquitto(tmp_path / "line", persistence=True)
    # one message in flight on the bridge: with more, those in flight when the plant broker
    # went away can arrive after the next ones at the reconnect (seen: 20 swapped places)
    conf = line.conf.read_text().replace("max_inflight_messages 0", "max_inflight_messages 1")
    line.conf.write_text(conf + bridge_to(plant))
    line.start()
    yield line, plant
    line.stop()
    plant.stop()


def test_every_result_crosses_the_bridge_in_order_through_a_10_s_plant_outage(brokers, tmp_path):
    line_broker, plant = brokers
    sub = Subscriber(plant.port, f"{BASE}/result", client_id="mes-on-plant-broker")
    local = Subscriber(line_broker.port, f"{BASE}/result", client_id="on-the-line-broker")
    cfg = line_config(
        tmp_path / "state", period_s=0.0045, gate_mm=8000.0, mqtt_port=line_broker.port
    )
    line = Line(cfg, dark_every(3000, 5), 0.0045).start()  # 13.5 s of line
    try:
        assert wait_until(lambda: len(sub.on("/result")) >= 100, 30)
        plant.stop()  # the plant broker goes away mid-run, the line goes on
        t_down = time.monotonic()
        assert line.mqtt.status()["up"]  # the appliance still has its line broker
        time.sleep(10)
        plant.start()
        assert time.monotonic() - t_down >= 10
        assert len(line.rows()) < 3000  # mid-run: the line was still producing
        assert line.wait(120)
        q = "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
        total = int(line.pipeline.db.connect().execute(q).fetchone()[0])
        assert total >= 3000

        def seqs():
            return [m["seq"] for m in sub.on("/result")]

        assert wait_until(lambda: set(seqs()) >= set(range(1, total + 1)), 60), len(set(seqs()))
        # a bridge may deliver a message twice (QoS 1): subscribers de-duplicate by seq
        firsts = list(dict.fromkeys(seqs()))
        assert sorted(firsts) == list(range(1, len(firsts) + 1))  # every result
        assert len(firsts) >= total  # (late amendments may have come since)

        # in the order the line broker got them: the bridge changes nothing (the appliance
        # itself sends results it held before connecting beside the live ones, each in order)
        def at_line():
            return list(dict.fromkeys(m["seq"] for m in local.on("/result")))

        assert wait_until(lambda: len(at_line()) >= len(firsts))
        assert firsts == at_line()[: len(firsts)]
        by_seq: dict[int, dict] = {}
        for m in sub.on("/result"):
            assert by_seq.setdefault(m["seq"], m) == m  # a duplicate is the same message
        assert {m["id"] for m in by_seq.values()} == set(line.rows())
    finally:
        line.stop()
        sub.close()
        local.close()
