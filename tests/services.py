"""Real services for line tests: a Mosquitto broker, the simulated PLC, an MQTT subscriber.

Fixtures to import in `tests/conftest.py`:  `from services import mosquitto, sim_plc  # noqa: F401`
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import EncoderConfig
from edge.line.plc.sim import SimulatedPLC

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


EXAMPLES = Path(__file__).parents[1] / "examples"
#: the station's topic prefix in the test configs (the default station)
BASE = "acme/site1/packaging/line1/inspect1/inspection"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """`mosquitto -c CONF` on a free loopback port; `stop()` and `start()` again on the same port.

    `persistence=True` keeps sessions and queued messages across a restart, as a plant
    broker does (files in `folder`); off by default. `users` (name -> password) turns on
    authentication with a password file written by `mosquitto_passwd` (anonymous clients
    refused unless `allow_anonymous`), and `acl` is the text of an `acl_file`.
    `listener_options` follow the listener line (e.g. TLS: `cafile`, `require_certificate`).
    `log=True` writes every packet the broker sees to `self.log`, in the order it saw them.
    """

    def __init__(
        self,
        folder: Path,
        *,
        persistence: bool = False,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        allow_anonymous: bool | None = None,
        listener_options: list[str] | None = None,
        log: bool = False,
    ):
        self.folder = folder
        self.log = folder / "mosquitto.log"
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        if allow_anonymous is None:
            allow_anonymous = users is None
        lines = [
            f"listener {self.port} 127.0.0.1",
            *(listener_options or []),
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            *([f"log_dest file {self.log}", "log_type all"] if log else ["log_dest none"]),
            "max_queued_messages 0",
            "max_inflight_messages 0",
        ]
        if users:
            pwfile = folder / "passwd"
            pwfile.unlink(missing_ok=True)
            for i, (name, password) in enumerate(users.items()):
                subprocess.run(
                    [
                        "mosquitto_passwd",
                        "-b",
                        *(["-c"] if i == 0 else []),
                        str(pwfile),
                        name,
                        password,
                    ],
                    check=True,
                    capture_output=True,
                )
            lines.append(f"password_file {pwfile}")
        if acl is not None:
            (folder / "acl").write_text(acl)
            lines.append(f"acl_file {folder / 'acl'}")
        if os.geteuid() == 0:  # else it drops to the mosquitto user, who cannot read tmp_path
            lines.append("user root")
        if persistence:
            lines += ["persistence true", f"persistence_location {folder}/", "autosave_interval 1"]
        else:
            lines += ["persistence false"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return Path(MOSQUITTO).exists()

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not open its port")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path):
    if not Mosquitto.available():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Mosquitto(folder).start()
    yield broker
    broker.stop()


#: passwords of the clients named in examples/mosquitto/acl
PLANT_USERS = {"edge-inspect": "line-secret", "mes1": "mes-secret", "dashboard": "dash-secret"}


@pytest.fixture
def plant_broker(tmp_path):
    """Mosquitto as docs/deployment.md sets it up: passwords, the example acl_file, no anonymous."""
    if not Mosquitto.available():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    folder = tmp_path / "plant-broker"
    folder.mkdir()
    acl = (EXAMPLES / "mosquitto" / "acl").read_text()
    broker = Mosquitto(folder, users=PLANT_USERS, acl=acl, log=True).start()
    yield broker
    broker.stop()


@pytest.fixture
def sim_plc():
    """A simulated PLC (Modbus TCP server + conveyor) on a free port, 10 counts/mm, belt 800 mm/s."""
    plc = SimulatedPLC(EncoderConfig(), belt_mm_s=800.0).start()
    yield plc
    plc.close()


class Subscriber:
    """A plant-side MQTT 5 subscriber with a persistent session: collects every message."""

    def __init__(
        self,
        port: int,
        topic: str,
        client_id: str = "plant-subscriber",
        username: str | None = None,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ):
        self.topic = topic
        self.messages: list[tuple[str, dict[str, Any], bool]] = []  # topic, payload, retained
        self.raw: list[mqtt.MQTTMessage] = []
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:  # (CA, client certificate, its key)
            self.client.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
        self.client.on_connect = self._on_connect
        # ready once the broker has acknowledged the subscription: a message published
        # between SUBSCRIBE and SUBACK would otherwise be missed (a flaky test)
        self.client.on_subscribe = lambda *a: self.connected.set()
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("subscriber could not connect")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg):
        try:
            payload = json.loads(msg.payload) if msg.payload else {}
        except ValueError:
            payload = {"_raw": msg.payload}
        with self._lock:
            self.messages.append((msg.topic, payload, bool(msg.retain)))
            self.raw.append(msg)

    def on(self, suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, pred, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self):
                return True
            time.sleep(0.02)
        return pred(self)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- a line to test


def dark_every(n: int, k: int, shape=(16, 16, 3)) -> list:
    """n tiny frames; every k-th is dark (the test tool rejects it as LOW_FILL)."""
    import numpy as np

    bright = np.full(shape, 200, np.uint8)
    dark = np.full(shape, 20, np.uint8)
    return [dark if k and i % k == k - 1 else bright for i in range(n)]


def line_config(
    state_dir: Path,
    *,
    period_s: float,
    gate_mm: float = 600.0,
    mqtt_port: int | None = None,
    deadline_ms: float = 150.0,
    plc: dict | None = None,
    recipe: dict | None = None,
    workers: int = 2,
    mqtt: dict[str, Any] | None = None,
    **extra: Any,
):
    from edge.config import parse_config

    data: dict[str, Any] = {
        "records": {
            "state_dir": str(state_dir),
            "sample_pass_every": 0,
            "keep_reject_images": False,
        },
        "pipeline": {
            "workers": workers,
            "deadline_ms": deadline_ms,
            "queue_size": 64,
            "stall_timeout_s": 30,
        },
        "recipe": "t",
        "recipes": {
            "t": recipe
            or {
                "name": "t",
                "tools": [{"type": "behaviour", "find": "LOW_FILL", "find_when_mean_below": 100}],
            }
        },
        "plc": plc or {"type": "sim", "poll_s": 0.01},
        "tracking": {
            "encoder": {
                "counts_per_mm": 10,
                "pitch_mm": 80,
                "gate_distance_mm": gate_mm,
                "safety_margin_mm": 40,
            },
            "belt_mm_s": 80.0 / period_s,
        },
    }
    if mqtt_port is not None:
        data["mqtt"] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": mqtt_port,
            "replay_rate_per_s": 400,
            "counters_interval_s": 1.0,
            **(mqtt or {}),
        }
    data.update(extra)
    return parse_config(data)


class Line:
    """The appliance with the line components (PLC, MQTT, PackML), on a list of frames."""

    def __init__(self, cfg, images, period_s: float, batch: bool = True, first_count: int = 0):
        from edge.app import Appliance
        from edge.domain import BatchState
        from edge.line import packml
        from edge.line.plc import component as plc_component
        from edge.publish import mqtt as mqtt_component

        from fake_tools import ListSource

        self.source = ListSource(images, period_s=period_s, paced=True, first_count=first_count)
        b = BatchState("LOT1", "09506000134352", "271231") if batch else None
        self.app = Appliance(cfg, source=self.source, batch=b, components=False)
        self.plc = plc_component.build(self.app)
        self.mqtt = mqtt_component.build(self.app)
        self.packml = packml.build(self.app)
        self.app.components = [c for c in (self.plc, self.mqtt, self.packml) if c is not None]
        self.pipeline = self.app.pipeline
        self.verdicts: list[Any] = []
        self.pipeline.bus.subscribe_sync("verdict", lambda _t, it: self.verdicts.append(it))

    @property
    def sim(self) -> SimulatedPLC:
        return self.plc.sim

    def start(self) -> Line:
        self.app.start()
        return self

    def wait(self, timeout: float = 120) -> bool:
        return self.pipeline.wait(timeout)

    def stop(self) -> None:
        self.app.stop()

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.pipeline.db.items(limit=1_000_000)}
