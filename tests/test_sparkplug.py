"""The appliance as a Sparkplug B 3.0 edge node, as a SCADA/MES host sees it.

A real Mosquitto, the real line (pipeline, recorder, outbox, simulated PLC), and a host
that decodes every message with Eclipse Tahu's library, not the appliance's protobuf.
"""

from __future__ import annotations

import logging
import time

import pytest

from edge.ops import health
from edge.publish import sparkplug
from edge.publish.sparkplug_metrics import RESULT_METRICS

from mqtt_support import wait_until
from services import Line, Subscriber, dark_every, line_config, mosquitto  # noqa: F401
from sparkplug_host import SparkplugHost, tahu  # noqa: F401

GROUP, NODE, DEVICE = "site1", "edge-01", "inspect1"  # the default station's names


def outbox_rows(line) -> int:
    """How many rows the outbox has ever had (its AUTOINCREMENT counter)."""
    q = "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
    return int(line.pipeline.db.connect().execute(q).fetchone()[0])


@pytest.fixture
def make_line(tmp_path):
    lines = []

    def make(port, images, period_s=0.01, encoding="sparkplug", state=None, **spb):
        cfg = line_config(
            state or tmp_path / "state",
            period_s=period_s,
            gate_mm=8000.0,
            mqtt_port=port,
            mqtt={"encoding": encoding, "sparkplug": spb},
        )
        line = Line(cfg, list(images), period_s)
        line.spb = sparkplug.build(line.app)
        line.app.components.append(line.spb)
        lines.append(line)
        return line.start()

    yield make
    for line in lines:
        line.stop()


@pytest.fixture
def host(mosquitto, tahu):  # noqa: F811
    hosts = []

    def make(host_id=None):
        h = SparkplugHost(mosquitto.port, GROUP, tahu, host_id)
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.close()


def test_births_are_valid_and_seq_is_gap_free_over_3000_items(mosquitto, host, make_line):  # noqa: F811
    h = host()
    line = make_line(mosquitto.port, dark_every(3000, 7), period_s=0.003)
    assert line.wait(90)
    assert h.wait(lambda: len(h.results()) >= 3000, 60), len(h.results())
    assert not h.undecodable

    nbirth = h.of("NBIRTH")[0]
    assert (nbirth.node, nbirth.payload["seq"]) == (NODE, 0)
    assert nbirth.qos == 0 and not nbirth.retain
    m = nbirth.metrics()
    assert m["bdSeq"]["type"] == "Int64"
    assert m["Node Control/Rebirth"] == {
        **m["Node Control/Rebirth"],
        "type": "Boolean",
        "value": False,
    }
    assert abs(nbirth.payload["timestamp"] - time.time() * 1000) < 120_000  # ms, not s

    dbirth = h.of("DBIRTH")[0]
    assert (dbirth.device, dbirth.payload["seq"]) == (DEVICE, 1)
    born = dbirth.metrics()
    for name, dt in RESULT_METRICS:
        assert born[name]["type"] == dt.name
    assert born["Counters/Rejected/LOW_FILL"]["type"] == "UInt64"
    assert born["Recipe/Name"]["value"] == "t" and len(born["Recipe/Digest"]["value"]) == 12
    assert born["Batch/Lot"]["value"] == "LOT1"
    # every metric a data message carries was declared in the birth, with its datatype
    for msg in h.of("DDATA"):
        for name, metric in msg.metrics().items():
            assert born[name]["type"] == metric["type"], name
    for msg in h.of("NDATA"):
        for name, metric in msg.metrics().items():
            assert m[name]["type"] == metric["type"], name

    # a clean stop (every result recorded, no amendment to come): DDEATH, then NDEATH with
    # the birth's bdSeq
    assert wait_until(lambda: line.spb.status()["outbox"] == 0)
    assert health.broker(line.app)["up"]
    line.stop()
    assert h.wait(lambda: h.of("NDEATH"), 10)
    assert h.of("NDEATH")[-1].value("bdSeq") == nbirth.value("bdSeq")
    assert h.of("DDEATH")

    assert h.seq_problems() == []
    # every outbox row, once, in order: 3000 results and the amendments of those whose
    # PASS the PLC did not take in time (recorded again as REJECT)
    assert h.result_seqs() == list(range(1, outbox_rows(line) + 1))
    rows = line.rows()
    final = {r.value("Last Result/Item ID"): r.value("Last Result/Verdict") for r in h.results()}
    assert final == {i: r["verdict"] for i, r in rows.items()}
    assert sum(v == "REJECT" for v in final.values()) >= 3000 // 7
    last = h.results()[-1]
    assert last.value("Last Result/Item ID") in rows
    assert last.metrics()["Last Result/Seq"]["timestamp"] > 1e12  # ms since the epoch


def test_bdseq_pairs_across_broker_restart_and_appliance_restart(
    mosquitto,  # noqa: F811
    host,
    make_line,
    tmp_path,
):
    h = host()
    line = make_line(mosquitto.port, dark_every(20, 4))
    assert h.wait(lambda: h.of("NBIRTH") and len(h.results()) >= 1)
    first = h.of("NBIRTH")[0].value("bdSeq")

    mosquitto.stop()  # the broker restarts: a new CONNECT, a new bdSeq in its Will
    mosquitto.start()
    h2 = host()  # the first host's session went with the broker
    if not h2.wait(lambda: h2.of("NBIRTH"), 3):  # born before this host subscribed:
        h2.rebirth(NODE)  # a host that joins late asks for the birth
    assert h2.wait(lambda: h2.of("NBIRTH"), 20)
    second = h2.of("NBIRTH")[0].value("bdSeq")
    assert second == (first + 1) % 256

    def births():
        return [m.value("bdSeq") for m in h2.of("NBIRTH")]

    # the appliance's link dies without DISCONNECT: the broker sends its Will
    line.spb.client.socket().close()
    assert h2.wait(lambda: h2.of("NDEATH"), 20)
    assert h2.of("NDEATH")[0].value("bdSeq") == second
    third = (second + 1) % 256
    assert h2.wait(lambda: third in births(), 20), births()
    assert line.wait(30)
    # every result acknowledged by the broker (which host was subscribed when is the hosts'
    # business: results are not retained)
    assert wait_until(lambda: line.spb.status()["outbox"] == 0, 20)
    line.stop()
    assert births()[-1] == third  # no other session in between

    # a restart of the appliance continues from the state directory
    again = make_line(mosquitto.port, [], state=tmp_path / "state")
    assert h2.wait(lambda: births()[-1] == (third + 1) % 256, 20), births()
    again.stop()


def test_rebirth_on_request_and_a_storm_costs_one_birth_per_interval(
    mosquitto,  # noqa: F811
    host,
    make_line,
    caplog,
):
    h = host()
    line = make_line(mosquitto.port, dark_every(200, 5), period_s=0.02, rebirth_min_interval_s=1.0)
    assert h.wait(lambda: len(h.results()) >= 5)
    bdseq = h.of("NBIRTH")[0].value("bdSeq")
    h.rebirth(NODE)
    assert h.wait(lambda: len(h.of("NBIRTH")) == 2 and len(h.of("DBIRTH")) == 2)
    again = h.of("NBIRTH")[1]
    assert again.payload["seq"] == 0 and again.value("bdSeq") == bdseq  # same session
    assert again.value("Node Control/Rebirth") is False

    caplog.set_level(logging.INFO, "edge.publish.sparkplug")
    t0 = time.monotonic()
    for _ in range(200):
        h.rebirth(NODE)
    time.sleep(2.5)
    births = len(h.of("NBIRTH")) - 2
    assert 1 <= births <= int((time.monotonic() - t0) / 1.0) + 1
    assert "rebirth requested" in caplog.text and "merged" in caplog.text
    assert line.wait(30)
    assert h.wait(lambda: set(h.result_seqs()) == set(range(1, outbox_rows(line) + 1)))
    assert h.seq_problems() == []
    assert line.spb.status()["rebirth_requests"] == 201


def test_primary_host_offline_for_10_s_mid_run_every_result_follows_in_order(
    mosquitto,  # noqa: F811
    host,
    make_line,
):
    h = host("scada")
    line = make_line(
        mosquitto.port,
        dark_every(600, 6),
        period_s=0.02,
        primary_host_id="scada",
        host_offline_alarm_s=2.0,
    )
    assert h.wait(lambda: len(h.results()) >= 50)
    bdseq = h.of("NBIRTH")[0].value("bdSeq")
    h.set_online(False)
    assert h.wait(lambda: h.of("NDEATH"), 10)
    assert h.of("NDEATH")[0].value("bdSeq") == bdseq
    sent_before = len(h.results())
    time.sleep(3)
    assert line.pipeline.alarms.is_active("SPARKPLUG_HOST_OFFLINE")
    assert "scada" in line.spb.status()["detail"]
    time.sleep(7)
    assert len(h.results()) == sent_before  # held, not sent while the host is away
    h.set_online(True)
    assert line.wait(60)
    total = outbox_rows(line)
    assert total >= 600
    assert h.wait(lambda: set(h.result_seqs()) >= set(range(1, total + 1)), 60)
    firsts = list(dict.fromkeys(h.result_seqs()))
    assert firsts == list(range(1, len(firsts) + 1)) and len(firsts) >= total  # in order
    rebirth = h.of("NBIRTH")[1]
    assert rebirth.value("bdSeq") == (bdseq + 1) % 256
    # what waited for the host is marked historical; the rest is live
    held = [r for r in h.results() if r.arrived > rebirth.arrived]
    assert held[0].metrics()["Last Result/Seq"].get("isHistorical") is True
    assert not line.pipeline.alarms.is_active("SPARKPLUG_HOST_OFFLINE")
    assert h.seq_problems() == []
    assert wait_until(lambda: line.spb.status()["outbox"] == 0)


def test_a_host_that_never_comes_online_holds_every_result_with_an_alarm(
    mosquitto,  # noqa: F811
    host,
    make_line,
):
    h = host()  # sees everything, but is not the configured primary host
    line = make_line(
        mosquitto.port,
        dark_every(40, 4),
        primary_host_id="absent",
        host_offline_alarm_s=0.5,
    )
    assert line.wait(30)
    assert wait_until(lambda: line.pipeline.alarms.is_active("SPARKPLUG_HOST_OFFLINE"), 10)
    alarm = next(a for a in line.pipeline.alarms.active() if a.code == "SPARKPLUG_HOST_OFFLINE")
    assert "absent" in alarm.message and "results held" in alarm.message
    st = line.spb.status()
    assert not st["up"] and st["outbox"] == outbox_rows(line) >= 40
    assert st["primary_host"]["online"] is False
    assert h.of("NBIRTH", "DDATA") == []  # nothing is born before the host is online
    ready = health.readiness(line.app)  # /readyz says why
    assert (
        not ready["ready"]
        and "waiting for primary host absent" in ready["checks"]["broker"]["detail"]
    )
    assert line.plc.status()["up"]  # the line itself kept running


def test_a_malformed_state_is_ignored_with_a_clear_log_line(mosquitto, host, make_line, caplog):  # noqa: F811
    h = host("scada")
    line = make_line(mosquitto.port, dark_every(100, 5), period_s=0.02, primary_host_id="scada")
    assert h.wait(lambda: len(h.results()) >= 5)
    for bad in (b"{not json", b'{"online": "yes", "timestamp": 1}', b"[]", b"\xff\xfe", b""):
        h.client.publish(h.state_topic, bad, qos=1)
    assert wait_until(lambda: line.spb.status()["state_malformed"] == 5)
    assert "STATE of primary host scada malformed" in caplog.text
    assert line.wait(30)
    assert h.wait(lambda: set(h.result_seqs()) == set(range(1, outbox_rows(line) + 1)))
    assert len(h.of("NBIRTH")) == 1  # still the first session: nothing was taken as offline


def test_both_encodings_each_get_every_result_and_the_outbox_waits_for_both(
    mosquitto,  # noqa: F811
    host,
    make_line,
):
    h = host("scada")
    sub = Subscriber(mosquitto.port, "acme/#", client_id="json-subscriber")
    try:
        h.set_online(False)  # Sparkplug's host is away: JSON goes on, the outbox keeps rows
        line = make_line(
            mosquitto.port, dark_every(60, 4), encoding="both", primary_host_id="scada"
        )
        assert line.wait(30)
        assert wait_until(lambda: len(sub.on("/result")) >= 60)

        def json_seqs():
            return sorted(m["seq"] for m in sub.on("/result"))

        assert wait_until(lambda: json_seqs() == list(range(1, outbox_rows(line) + 1)))
        # every row is still in the outbox: Sparkplug has not had it acknowledged
        assert wait_until(lambda: line.spb.status()["outbox"] == outbox_rows(line))
        assert h.results() == []
        h.set_online(True)
        assert h.wait(lambda: h.result_seqs() == list(range(1, outbox_rows(line) + 1)))
        assert wait_until(lambda: line.spb.status()["outbox"] == 0)
        assert json_seqs() == list(range(1, outbox_rows(line) + 1))  # JSON sent none twice
    finally:
        sub.close()


def test_a_replayed_old_state_or_a_duplicate_changes_nothing(mosquitto, host, make_line, caplog):  # noqa: F811
    h = host("scada")
    line = make_line(mosquitto.port, dark_every(150, 5), period_s=0.02, primary_host_id="scada")
    assert h.wait(lambda: len(h.results()) >= 5)
    was_online = h._state(True)  # the STATE of the host's current session
    h.set_online(False)
    assert h.wait(lambda: h.of("NDEATH"), 10)
    assert wait_until(lambda: "waiting for primary host" in line.spb.status()["detail"])
    # a bridge delivers the old "online" again, and the "offline" twice: still offline
    h.client.publish(h.state_topic, was_online, qos=1)
    h.client.publish(h.state_topic, h._state(False), qos=1)
    assert wait_until(lambda: line.spb.status()["state_stale"] == 1)
    assert "STATE of primary host scada replayed" in caplog.text
    time.sleep(0.5)
    assert len(h.of("NBIRTH")) == 1 and line.spb.status()["primary_host"]["online"] is False
    h.set_online(True)
    assert line.wait(30)
    total = outbox_rows(line)
    assert h.wait(lambda: set(h.result_seqs()) >= set(range(1, total + 1)))
