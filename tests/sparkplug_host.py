"""A Sparkplug host for the tests, decoding with a library the appliance does not use.

Every payload is decoded (and the host's NCMD encoded) by Eclipse Tahu's JavaScript
library (`tests/sparkplug/codec.js`, npm `sparkplug-payload`, protobufjs underneath),
so a wrong field number, datatype or timestamp in the appliance's protobuf cannot pass
unseen. The host itself is plain paho: it records every message in arrival order,
publishes its STATE (Sparkplug 3.0 JSON, retained, with its Will) when it is a primary
host, and checks what a SCADA host checks: seq continuity and bdSeq pairing.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

CODEC_DIR = Path(__file__).parent / "sparkplug"


def tahu_missing() -> str | None:
    """Why the Tahu codec cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/test.sh installs it)"
    if not (CODEC_DIR / "node_modules" / "sparkplug-payload").is_dir():
        return "npm ci --prefix tests/sparkplug has not been run (scripts/test.sh runs it)"
    return None


class TahuCodec:
    """Eclipse Tahu's payload library in a node process: one JSON line in, one out."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(CODEC_DIR / "codec.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=CODEC_DIR,
        )
        self._lock = threading.Lock()

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            answer = json.loads(self.proc.stdout.readline())
        if not answer["ok"]:
            raise ValueError(answer["error"])
        return answer

    def decode(self, data: bytes) -> dict[str, Any]:
        return self._ask({"op": "decode", "data": base64.b64encode(data).decode()})["payload"]

    def encode(self, payload: dict[str, Any]) -> bytes:
        return base64.b64decode(self._ask({"op": "encode", "payload": payload})["data"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(5)


@pytest.fixture(scope="session")
def tahu():
    why = tahu_missing()
    if why:
        pytest.skip(why)
    codec = TahuCodec()
    yield codec
    codec.close()


@dataclass
class Message:
    kind: str  # NBIRTH, DDATA, ...
    node: str
    device: str | None
    payload: dict[str, Any]  # as Tahu decoded it
    qos: int
    retain: bool
    arrived: float

    def metrics(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.payload.get("metrics", [])}

    def value(self, name: str) -> Any:
        return self.metrics()[name]["value"]


class SparkplugHost:
    """A host application on `spBv1.0/<group>/#`; the primary host when `host_id` is given."""

    def __init__(self, port: int, group: str, codec: TahuCodec, host_id: str | None = None):
        self.port, self.group, self.codec, self.host_id = port, group, codec, host_id
        self.messages: list[Message] = []
        self.undecodable: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.birth_ts = int(time.time() * 1000)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"host-{uuid.uuid4().hex[:6]}"
        )
        if host_id:  # Sparkplug 3.0: the Will says offline with the birth's timestamp
            self.client.will_set(self.state_topic, self._state(False), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("host could not subscribe")

    @property
    def state_topic(self) -> str:
        return f"spBv1.0/STATE/{self.host_id}"

    def _state(self, online: bool) -> bytes:
        return json.dumps({"online": online, "timestamp": self.birth_ts}).encode()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe(f"spBv1.0/{self.group}/#", qos=1)
        if self.host_id:
            client.publish(self.state_topic, self._state(True), qos=1, retain=True)

    def _on_message(self, client, userdata, msg):
        parts = msg.topic.split("/")
        try:
            payload = self.codec.decode(msg.payload)
        except ValueError as exc:
            with self._lock:
                self.undecodable.append((msg.topic, str(exc)))
            return
        with self._lock:
            self.messages.append(
                Message(
                    parts[2],
                    parts[3],
                    parts[4] if len(parts) > 4 else None,
                    payload,
                    msg.qos,
                    bool(msg.retain),
                    time.time(),
                )
            )

    # ------------------------------------------------------------------ what a host does

    def set_online(self, online: bool) -> None:
        """A primary host going offline or coming back (a new session: a newer timestamp)."""
        if online:
            self.birth_ts = int(time.time() * 1000)
        self.client.publish(self.state_topic, self._state(online), qos=1, retain=True)

    def rebirth(self, node: str) -> None:
        payload = {
            "timestamp": int(time.time() * 1000),
            "metrics": [{"name": "Node Control/Rebirth", "type": "Boolean", "value": True}],
        }
        topic = f"spBv1.0/{self.group}/NCMD/{node}"
        self.client.publish(topic, self.codec.encode(payload), qos=0)

    def of(self, *kinds: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.kind in kinds]

    def results(self) -> list[Message]:
        """Result DDATA (those that carry `Last Result/Seq`), in arrival order."""
        return [m for m in self.of("DDATA") if "Last Result/Seq" in m.metrics()]

    def result_seqs(self) -> list[int]:
        return [m.value("Last Result/Seq") for m in self.results()]

    def wait(self, pred, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.05)
        return pred()

    def seq_problems(self) -> list[str]:
        """Every break of Sparkplug's seq rule: NBIRTH 0, then +1 modulo 256 per message."""
        problems, expect = [], None
        with self._lock:
            msgs = [m for m in self.messages if m.kind not in ("NDEATH", "NCMD", "DCMD")]
        for i, m in enumerate(msgs):
            seq = m.payload.get("seq")
            if m.kind == "NBIRTH":
                if seq != 0:
                    problems.append(f"#{i} NBIRTH seq {seq}")
            elif expect is None or seq != expect:
                problems.append(f"#{i} {m.kind} seq {seq}, expected {expect}")
            expect = (seq + 1) % 256 if seq is not None else None
        return problems

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
