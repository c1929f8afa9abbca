"""Results to plant systems over MQTT 5, against a real Mosquitto broker."""

from __future__ import annotations

import uuid

import pytest

from edge.spc.monitor import Deviation

from mqtt_support import GOOD, Requester, appliance_login, validate, wait_until
from services import (  # noqa: F401
    BASE,
    Line,
    Subscriber,
    dark_every,
    line_config,
    mosquitto,
    plant_broker,
)


@pytest.fixture
def make_line(tmp_path):
    lines = []

    def make(port, images=(), period_s=0.02, batch=True, **kw):
        line = Line(
            line_config(tmp_path, period_s=period_s, mqtt_port=port, **kw),
            list(images),
            period_s,
            batch=batch,
        )
        lines.append(line)
        return line.start()

    yield make
    for line in lines:
        line.stop()


def test_every_payload_matches_its_published_schema(mosquitto, make_line):  # noqa: F811
    sub = Subscriber(mosquitto.port, f"{BASE}/#", client_id=f"s-{uuid.uuid4().hex[:6]}")
    try:
        line = make_line(mosquitto.port, dark_every(30, 3))
        assert line.wait(30)
        assert wait_until(lambda: len(sub.on("/result")) >= 30)
        results = sub.on("/result")
        for msg in results:
            validate("result", msg)
        # one result per item; a PASS that reached the PLC after its gate time is re-published
        # as REJECT TIMEOUT with the same seq (the fail-safe amendment), so count first ones
        first = {}
        for m in results:
            first.setdefault(m["seq"], m)
        assert sorted(first) == list(range(1, 31))
        assert {m["id"] for m in first.values()} == set(line.rows())
        assert sum(m["verdict"] == "REJECT" for m in first.values()) == 10
        assert all(m["verdict"] == "REJECT" for m in results if m is not first[m["seq"]])
        assert wait_until(lambda: sub.on("/counters") and sub.on("/state"))
        validate("counters", sub.on("/counters")[-1])
        states = sub.on("/state")
        for s in states:
            validate("state", s)
        assert states[-1]["state"] == "Execute"
        births = sub.on("/status")
        assert births and births[0]["status"] == "online"
        validate("status", births[0])
        line.sim.conveyor.bin_full = True
        assert wait_until(lambda: any(a["code"] == "BIN_FULL" for a in sub.on("/alarm")))
        for a in sub.on("/alarm"):
            validate("alarm", a)
        # every item's measurements for a historian, and process-control deviations
        measured = sub.on("/measurements")
        assert measured and all(m["units"] == {"mean_grey": "grey level 0-255"} for m in measured)
        for m in measured:
            validate("measurements", m)
        dev = Deviation("mean_grey", "ewma", 12, "img-12", 3, 41.0, (50.0, 60.0), 55.0, "ewma")
        line.pipeline.bus.publish("deviation", {**dev.to_dict(), "record": 7})
        assert wait_until(lambda: sub.on("/deviation"))
        validate("deviation", sub.on("/deviation")[0])
        assert sub.on("/deviation")[0]["record"] == 7
        # acknowledged results leave the outbox
        assert wait_until(lambda: line.mqtt.status()["outbox"] == 0)
        line.stop()
        assert wait_until(lambda: sub.on("/status")[-1]["status"] == "offline")
    finally:
        sub.close()


def test_without_a_broker_results_are_held_and_replayed_in_order(mosquitto, make_line):  # noqa: F811
    mosquitto.stop()
    line = make_line(mosquitto.port, dark_every(40, 4))
    assert line.wait(30)
    st = line.mqtt.status()
    assert not st["up"] and st["outbox"] == 40 and "40 results held" in st["detail"]
    assert line.pipeline.alarms.is_active("MQTT_OFFLINE")
    assert line.plc.status()["up"]  # the line itself kept running
    mosquitto.start()
    sub = Subscriber(mosquitto.port, f"{BASE}/result", client_id="late-subscriber")
    try:
        assert wait_until(lambda: len(sub.on("/result")) >= 40, 15)
        assert [m["seq"] for m in sub.on("/result")] == list(range(1, 41))
        assert wait_until(lambda: line.mqtt.status()["outbox"] == 0)
        assert not line.pipeline.alarms.is_active("MQTT_OFFLINE")
    finally:
        sub.close()


@pytest.fixture
def mes(plant_broker, make_line, tmp_path):  # noqa: F811
    line = make_line(plant_broker.port, batch=False, mqtt=appliance_login(tmp_path))
    assert wait_until(lambda: line.mqtt.status()["up"])
    req = Requester(plant_broker.port)
    yield line, req
    req.close()


def test_mes_starts_and_stops_a_batch_with_an_audited_answer(mes):
    line, req = mes
    resp = req.send("start_batch", {**GOOD, "recipe": "t"}, user="mes-operator")
    assert resp["ok"], resp
    assert resp["sender"] == {
        "user": "mqtt:mes1",
        "authenticated": True,
        "claimed_user": "mes-operator",
    }
    assert line.pipeline.batch.lot == "A12B" and line.pipeline.batch.gtin == "09506000134352"
    assert req.send("stop_batch", {"reason": "end of shift"})["ok"]
    assert line.pipeline.batch is None
    actions = [(e["user"], e["action"]) for e in line.app.audit.entries()]
    assert ("mqtt:mes1", "mes.start_batch") in actions
    assert ("mqtt:mes1", "mes.stop_batch") in actions
    assert req.send("stop_batch", {})["error"]["code"] == "no_batch"
    refused = line.app.audit.entries(action="mes.stop_batch.refused")
    assert refused and "no batch is running" in refused[-1]["reason"]


@pytest.mark.parametrize(
    ("name", "payload", "code"),
    [
        ("start_batch", {**GOOD, "gtin": "09506000134353"}, "invalid"),  # wrong check digit
        ("start_batch", {**GOOD, "expiry": "271340"}, "invalid"),
        ("start_batch", {"gtin": GOOD["gtin"], "lot": "A12B"}, "invalid"),  # expiry missing
        ("start_batch", {**GOOD, "colour": "red"}, "invalid"),
        ("start_batch", {**GOOD, "recipe": "nope"}, "unknown_recipe"),
        ("change_recipe", {"recipe": "nope"}, "unknown_recipe"),
        ("stop_batch", {}, "no_batch"),
        ("launch_rocket", {}, "unknown_command"),
        ("start_batch", b"{not json", "bad_json"),
        ("start_batch", b"[1, 2]", "bad_json"),
        ("start_batch", b"x" * 20000, "too_large"),
    ],
)
def test_a_bad_command_changes_nothing_and_says_why(mes, name, payload, code):
    line, req = mes
    before = (line.pipeline.batch, line.pipeline.recipe.name)
    raw = payload if isinstance(payload, bytes) else None
    resp = req.send(name, None if raw else payload, raw=raw)
    assert not resp["ok"] and resp["error"]["code"] == code, resp
    assert resp["error"]["message"]
    assert (line.pipeline.batch, line.pipeline.recipe.name) == before


def test_a_second_batch_is_refused_while_one_runs_and_the_recipe_is_kept(mes):
    line, req = mes
    assert req.send("start_batch", GOOD)["ok"]
    resp = req.send("start_batch", {**GOOD, "lot": "OTHER"})
    assert resp["error"]["code"] == "batch_running"
    assert line.pipeline.batch.lot == "A12B"
    assert req.send("change_recipe", {"recipe": "vials"})["error"]["code"] == "batch_running"
    assert req.send("stop_batch", {})["ok"]
    assert req.send("change_recipe", {"recipe": "t"})["ok"]
