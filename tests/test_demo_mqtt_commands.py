"""`edge demo` against a broker where someone left a retained stop_batch and sends anonymous ones.

The real command in its own process (embedded demo config, web UI in its own process),
a real Mosquitto without authentication: the case where nothing on the broker stops
anyone from publishing commands, so the appliance alone has to refuse them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from importlib import resources

import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_support import publish, wait_until
from services import BASE, Subscriber, free_port, mosquitto  # noqa: F401


def start_demo(tmp_path, port: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edge.cli", "demo", "--items", "200", "--mqtt"]
    cmd += [f"127.0.0.1:{port}", "--headless", "--json", "--port", str(free_port())]
    cmd += ["--state-dir", str(tmp_path / "state"), *extra]
    return subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def finish(proc: subprocess.Popen) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def leave_retained_stop_batches(port: int) -> None:
    """As found on a plant broker: retained stop_batch on the old topic and under an identity."""
    for topic in (f"{BASE}/cmd/stop_batch", f"{BASE}/cmd/qa1/stop_batch"):
        publish(port, topic, {"by": "qa1", "reason": "left behind"}, retain=True)


def audit_rows(tmp_path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(tmp_path / "state" / "edge.db") as conn:
        return conn.execute("SELECT user, action, new FROM audit ORDER BY id").fetchall()


def send_anonymous(port: int, topic: str, payload: dict) -> dict | None:
    replies = Subscriber(port, "mes/replies/#", client_id=f"anon-{uuid.uuid4().hex[:6]}")
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "mes/replies/anon"
        props.CorrelationData = b"c1"
        props.UserProperty = ("user", "admin1")
        replies.client.publish(topic, json.dumps(payload).encode(), qos=1, properties=props)
        if not replies.wait_for(lambda s: s.on("/anon"), 30):
            return None  # no answer: checked after the run
        return replies.on("/anon")[0]
    finally:
        replies.close()


@pytest.mark.timeout(900)
def test_demo_with_a_retained_stop_batch_and_an_anonymous_one_keeps_its_batch(
    mosquitto,  # noqa: F811
    tmp_path,
):
    leave_retained_stop_batches(mosquitto.port)
    status = Subscriber(mosquitto.port, f"{BASE}/status", client_id="watch-status")
    proc = start_demo(tmp_path, mosquitto.port)
    answers = []
    try:

        def online() -> bool:
            return any(m["status"] == "online" for m in status.on("/status"))

        assert wait_until(lambda: online() or proc.poll() is not None, 300)
        assert online(), "the demo did not come online"
        # on the topic of old and under an identity nobody authenticated
        for topic in (f"{BASE}/cmd/stop_batch", f"{BASE}/cmd/qa1/stop_batch"):
            answers.append(send_anonymous(mosquitto.port, topic, {"by": "qa1"}))
    finally:
        status.close()
        summary, err = finish(proc)
    assert summary["items"] == 200
    assert "NO_BATCH" not in summary["by_reason"], summary
    assert "retained command" in err
    rows = audit_rows(tmp_path)
    assert not [r for r in rows if "qa1" in r[0] or "admin1" in r[0]], rows
    assert not [r for r in rows if r[1] == "mes.stop_batch"], rows
    assert None not in answers, answers
    assert [(a["ok"], a["error"]["code"], a["sender"]["user"]) for a in answers] == [
        (False, "no_identity", "mqtt:anonymous"),
        (False, "not_authorised", "mqtt:anonymous"),
    ]
    assert [(u, a) for u, a, _ in rows if a.startswith("mes.")] == [
        ("mqtt:anonymous", "mes.stop_batch.refused")
    ] * 2


@pytest.mark.timeout(900)
def test_demo_ignores_a_retained_stop_batch_even_where_anonymous_stop_batch_is_allowed(
    mosquitto,  # noqa: F811
    tmp_path,
):
    """The retained message itself is what is refused, not only its sender."""
    cfg = yaml.safe_load((resources.files("edge") / "defaults" / "demo.yaml").read_text())
    cfg["mqtt"] = {"enabled": True, "commands": {"anonymous": ["stop_batch"]}}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(cfg))
    leave_retained_stop_batches(mosquitto.port)
    summary, err = finish(start_demo(tmp_path, mosquitto.port, "--config", "demo.yaml"))
    assert summary["items"] == 200
    assert "NO_BATCH" not in summary["by_reason"], summary
    assert "retained command" in err
    assert not [r for r in audit_rows(tmp_path) if r[1].startswith("mes.")]
