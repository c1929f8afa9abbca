"""Results to plant systems over MQTT 5, against a real Mosquitto broker."""

from __future__ import annotations

import json
import time
import uuid

import jsonschema
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.publish.encoding import load_schema

from services import (  # noqa: F401
    BASE,
    PLANT_USERS,
    Line,
    Subscriber,
    dark_every,
    line_config,
    mosquitto,
    plant_broker,
)


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


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


def validate(kind, msg):
    jsonschema.validate(msg, load_schema(kind), format_checker=jsonschema.FormatChecker())


def test_every_payload_matches_its_published_schema(mosquitto, make_line):  # noqa: F811
    sub = Subscriber(mosquitto.port, f"{BASE}/#", client_id=f"s-{uuid.uuid4().hex[:6]}")
    try:
        line = make_line(mosquitto.port, dark_every(30, 3))
        assert line.wait(30)
        assert wait_until(lambda: len(sub.on("/result")) >= 30)
        results = sub.on("/result")
        for msg in results:
            validate("result", msg)
        assert sorted(m["seq"] for m in results) == list(range(1, 31))
        assert {m["id"] for m in results} == set(line.rows())
        assert sum(m["verdict"] == "REJECT" for m in results) == 10
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


class Requester:
    """An MES client: publishes commands on `cmd/<identity>/<name>` as `identity`."""

    def __init__(self, port, identity="mes1", password=None, anonymous=False):
        self.identity = identity
        self.sub = Subscriber(
            port,
            f"mes/replies/{identity}/#",
            client_id=f"mes-{uuid.uuid4().hex[:6]}",
            username=None if anonymous else identity,
            password=None if anonymous else (password or PLANT_USERS.get(identity)),
        )

    def send(self, name, payload, *, raw=None, user=None, topic=None, answer=True):
        corr = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"mes/replies/{self.identity}/{name}"
        props.CorrelationData = corr
        if user:
            props.UserProperty = ("user", user)
        data = raw if raw is not None else json.dumps(payload).encode()
        topic = topic or f"{BASE}/cmd/{self.identity}/{name}"
        self.sub.client.publish(topic, data, qos=1, properties=props)

        def answered():
            return any(m.properties.CorrelationData == corr for m in self.sub.raw)

        if not answer:
            return None
        assert wait_until(answered, 10), f"no answer to {name}"
        msg = next(m for m in self.sub.raw if m.properties.CorrelationData == corr)
        resp = json.loads(msg.payload)
        validate("cmd-response", resp)
        return resp

    def close(self):
        self.sub.close()


ALL_COMMANDS = ["start_batch", "stop_batch", "change_recipe"]


def appliance_login(tmp_path, allow=None, **commands):
    """mqtt config keys for the appliance logging in as `edge-inspect` on the plant broker."""
    secret = tmp_path / "mqtt-password"
    secret.write_text(PLANT_USERS["edge-inspect"] + "\n")
    return {
        "username": "edge-inspect",
        "password_file": str(secret),
        "commands": {"allow": allow if allow is not None else {"mes1": ALL_COMMANDS}, **commands},
    }


@pytest.fixture
def mes(plant_broker, make_line, tmp_path):  # noqa: F811
    line = make_line(plant_broker.port, batch=False, mqtt=appliance_login(tmp_path))
    assert wait_until(lambda: line.mqtt.status()["up"])
    req = Requester(plant_broker.port)
    yield line, req
    req.close()


GOOD = {"gtin": "09506000134352", "lot": "A12B", "expiry": "271231"}


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
