"""MQTT helpers for tests: an MES client, the appliance's broker login, a one-shot publish."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.publish.encoding import load_schema

from services import BASE, PLANT_USERS, Subscriber

GOOD = {"gtin": "09506000134352", "lot": "A12B", "expiry": "271231"}


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def validate(kind, msg):
    jsonschema.validate(msg, load_schema(kind), format_checker=jsonschema.FormatChecker())


def make_pki(folder: Path, *clients: str) -> dict[str, tuple[Path, Path, Path]]:
    """A plant CA, a broker certificate for 127.0.0.1 and one client certificate per name (CN).

    The same openssl commands as in docs/deployment.md. Returns name -> (CA, cert, key),
    "broker" included.
    """
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
        "-subj", "/CN=plant-ca")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    out = {}
    for name in ("broker", *clients):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        ext = ["-extfile", "san.ext"] if name == "broker" else []
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "30", *ext)  # fmt: skip
        out[name] = (folder / "ca.crt", folder / f"{name}.crt", folder / f"{name}.key")
    return out


def publish(port, topic, payload, *, username=None, password=None, retain=False, tls=None) -> None:
    """One message from a plain client, waiting for the broker's PUBACK."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    if username:
        c.username_pw_set(username, password)
    if tls:
        c.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(topic, json.dumps(payload).encode(), qos=1, retain=retain).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


class Requester:
    """An MES client: publishes commands on `cmd/<identity>/<name>` as `identity`."""

    def __init__(
        self,
        port,
        identity="mes1",
        password=None,
        anonymous=False,
        reply_default=False,
        tls=None,
    ):
        self.identity = identity
        self.reply_default = reply_default  # no response topic: the appliance's default one
        self.sub = Subscriber(
            port,
            f"{BASE}/cmd/{identity}/+/response" if reply_default else f"mes/replies/{identity}/#",
            client_id=f"mes-{uuid.uuid4().hex[:6]}",
            username=None if anonymous or tls else identity,
            password=None if anonymous or tls else (password or PLANT_USERS.get(identity)),
            tls=tls,
        )

    def send(self, name, payload, *, raw=None, user=None, topic=None, answer=True):
        corr = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        if not self.reply_default:
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
        assert wait_until(answered, 30), f"no answer to {name}"
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
