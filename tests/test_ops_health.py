"""Probes and metrics an operator's monitoring relies on: /healthz, /readyz, /metrics."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from edge.app import Appliance
from edge.config import parse_config
from edge.ops.routes import router

from fake_tools import ListSource, grey
from services import Mosquitto


def config(tmp_path, tool=None, **extra):
    tool = tool or {"type": "behaviour", "find": "LOW_FILL", "find_when_mean_below": 100}
    data = {
        "records": {"state_dir": str(tmp_path / "state"), "sample_pass_every": 0},
        "pipeline": {"workers": 2, "deadline_ms": 500, "stall_timeout_s": 2},
        "recipe": "t",
        "recipes": {"t": {"name": "t", "tools": [tool]}},
        "web": {"enabled": False},
        **extra,
    }
    return parse_config(data)


def client_for(app: Appliance) -> TestClient:
    api = FastAPI()
    api.include_router(router(app))
    return TestClient(api)


def eventually(fn, timeout: float = 10.0, period: float = 0.05):
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > end:
            return value
        time.sleep(period)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class BrokerLink:
    """A plain MQTT connection (paho) whose status is its real connection state.

    Stands in for the appliance's MQTT publisher only where that component is not
    built by this checkout; the broker and the network are real either way.
    """

    name = "mqtt"

    def __init__(self, host: str, port: int):
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ops-test")
        self.client.reconnect_delay_set(0.1, 0.5)
        self.host, self.port = host, port

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=5)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def status(self) -> dict:
        up = self.client.is_connected()
        return {"up": up, "detail": "connected" if up else "broker unreachable"}


def mqtt_component(app: Appliance, port: int):
    """The appliance's MQTT publisher; a plain link only in a checkout that lacks it."""
    try:
        from edge.publish.mqtt import build
    except ImportError:
        return BrokerLink("127.0.0.1", port)
    return build(app)


@pytest.mark.integration
@pytest.mark.skipif(not Mosquitto.available(), reason="mosquitto is not installed")
def test_readyz_reports_a_stopped_broker_and_its_return(tmp_path):
    broker = Mosquitto(tmp_path).start()
    cfg = config(tmp_path, mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port})
    app = Appliance(cfg, source=ListSource([grey(200)] * 3000, period_s=0.02))
    if not any(str(c.name).startswith("mqtt") for c in app.components):
        app.components.append(mqtt_component(app, broker.port))
    client = client_for(app)
    app.start()
    try:
        ready = eventually(lambda: client.get("/readyz").status_code == 200)
        body = client.get("/readyz").json()
        assert ready, body
        assert body["checks"]["broker"]["up"] is True
        assert body["checks"]["camera"]["up"] is True
        assert body["checks"]["plc"] == {
            "up": None,
            "configured": False,
            "detail": "not configured",
        }

        broker.stop()
        assert eventually(lambda: client.get("/readyz").status_code == 503)
        body = client.get("/readyz").json()
        assert body["ready"] is False
        assert body["checks"]["broker"]["up"] is False
        assert body["checks"]["camera"]["up"] is True  # only the broker is down
        assert client.get("/healthz").status_code == 200  # the line itself still runs

        broker.start()  # same port: the link reconnects by itself
        assert eventually(lambda: client.get("/readyz").status_code == 200)
    finally:
        app.stop()
        broker.stop()


def test_readyz_is_503_before_the_camera_delivers_and_a_broker_that_is_configured_but_absent(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("edge.app.COMPONENTS", ["edge.ops.metrics:build"])
    cfg = config(tmp_path, mqtt={"enabled": True, "port": 1})
    app = Appliance(cfg, source=ListSource([grey()]))
    r = client_for(app).get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["camera"] == {"up": False, "configured": True, "detail": "not started"}
    assert checks["broker"]["up"] is False
    assert "not running" in checks["broker"]["detail"]
    app.start()
    app.stop()


def test_healthz_turns_503_when_capture_has_ended(tmp_path):
    app = Appliance(config(tmp_path), source=ListSource([grey()] * 3))
    client = client_for(app)
    app.start()
    app.pipeline.wait(10)
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json() == {"alive": False, "detail": "capture has ended"}
    app.stop()


def test_metrics_count_items_rejects_by_reason_and_latency_per_stage(tmp_path):
    images = [grey(200)] * 20 + [grey(50)] * 5
    app = Appliance(config(tmp_path), source=ListSource(images, paced=False))
    client = client_for(app)
    app.start()
    assert app.pipeline.wait(20)

    def scraped():
        s = samples(client.get("/metrics").text)
        return s if s.get(("edge_item_latency_seconds_count", ())) == 25 else None

    s = eventually(scraped)
    assert s, client.get("/metrics").text
    app.stop()
    assert s[("edge_items_total", (("verdict", "PASS"),))] == 20
    assert s[("edge_items_total", (("verdict", "REJECT"),))] == 5
    assert s[("edge_rejects_total", (("reason", "LOW_FILL"),))] == 5
    assert s[("edge_deadline_misses_total", ())] == 0
    assert s[("edge_tool_latency_seconds_count", (("tool", "behaviour"),))] == 25
    # every verdict was inside the 0.5 s deadline, and the histogram says so
    assert s[("edge_item_latency_seconds_bucket", (("le", "0.5"),))] == 25
    assert ("edge_component_up", (("component", "watchdog"),)) in s
    assert s[("edge_alarms_active", (("severity", "critical"),))] >= 0


def test_metrics_read_outbox_and_plc_round_trip_from_component_status(tmp_path, monkeypatch):
    """Other components publish their numbers in status(); metrics read them at scrape time."""

    class Reporter:
        def start(self):
            pass

        def stop(self):
            pass

    class Outbox(Reporter):
        name = "mqtt"

        def status(self):
            return {"up": True, "outbox": {"depth": 7, "oldest_age_s": 12.5}}

    class Plc(Reporter):
        name = "plc"

        def status(self):
            return {"up": False, "rtt_ms": 4.0}

    monkeypatch.setattr("edge.app.COMPONENTS", ["edge.ops.metrics:build"])
    app = Appliance(config(tmp_path), source=ListSource([grey()]))
    app.components += [Outbox(), Plc()]
    s = samples(client_for(app).get("/metrics").text)
    app.start()
    app.stop()
    assert s[("edge_outbox_depth", ())] == 7
    assert s[("edge_outbox_oldest_age_seconds", ())] == 12.5
    assert s[("edge_plc_round_trip_seconds", ())] == pytest.approx(0.004)
    assert s[("edge_component_up", (("component", "plc"),))] == 0


def test_readyz_reports_the_model_down_when_a_tool_fails_item_after_item(tmp_path):
    # the tool raises on every item: a model file that loads but cannot run, say
    cfg = config(tmp_path, tool={"type": "behaviour", "raise_on": list(range(1, 50))})
    app = Appliance(cfg, source=ListSource([grey(200)] * 8, paced=False))
    client = client_for(app)
    app.start()
    assert app.pipeline.wait(20)
    body = eventually(
        lambda: (b := client.get("/readyz").json())["checks"]["model"]["up"] is False and b
    )
    app.stop()
    assert body, client.get("/readyz").json()
    assert body["checks"]["model"]["detail"] == "tools failing: behaviour"
    assert body["ready"] is False
