"""Results to plant systems over MQTT 5 (paho-mqtt 2), with nothing lost.

Topics (`edge.publish.encoding`): `.../inspection/result` (QoS 1, from the outbox, with
its gap-free `seq`), `counters` and `state` (retained), `alarm`, `status` (birth on
connect, retained last will `offline`), and `cmd/<identity>/<name>` for MES commands
answered on the MQTT 5 response topic with the request's correlation data. Who may send
which command, and as whom it is audited, is `edge.publish.policy`; a retained command
is never applied (it would replay at every connect).

The broker may be gone for hours: results wait in the SQLite outbox, an alarm says so,
`status()` says how many are held, and they are replayed in order, rate-limited, while
live results keep flowing. A row is deleted only after the broker's PUBACK.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge import __version__
from edge.inspect.registry import measurement_units
from edge.publish.broker_check import IdentityCheck
from edge.publish.commands import CommandHandler
from edge.publish.encoding import make_encoding
from edge.publish.outbox import Forwarder, Outbox, shared_acks
from edge.publish.policy import CommandPolicy, Sender, has_credentials
from edge.publish.refusals import RefusalLimiter
from edge.publish.secrets import read_secret

log = logging.getLogger(__name__)

STATUS_SCHEMA, COUNTERS_SCHEMA, ALARM_SCHEMA = (
    "edge-inspect/status",
    "edge-inspect/counters",
    "edge-inspect/alarm",
)
MEASUREMENTS_SCHEMA, DEVIATION_SCHEMA = "edge-inspect/measurements", "edge-inspect/deviation"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class MqttPublisher:
    name = "mqtt"

    def __init__(self, app: Any):
        self.app = app
        self.cfg = app.cfg.mqtt
        self.station = app.cfg.station
        self.pipeline = app.pipeline
        self.alarms = app.pipeline.alarms
        self.enc = make_encoding("json", self.station)  # Sparkplug: edge.publish.sparkplug
        self.outbox = Outbox(app.pipeline.db)
        self.acks = shared_acks(app)  # with `encoding: both`, Sparkplug reads the outbox too
        self.fwd = Forwarder(
            self.outbox, self.cfg.replay_rate_per_s, self.cfg.max_inflight, self.acks.has("json")
        )
        ccfg = self.cfg.commands
        authenticated = has_credentials(self.cfg)
        self.check = IdentityCheck(
            self.cfg,
            self.enc.command_topic,
            self._credentials,
            self.alarms,
            enabled=authenticated and ccfg.enabled and ccfg.check_broker,
        )
        self.policy = CommandPolicy(ccfg, authenticated, self.check.distrust)
        self.refusals = RefusalLimiter(
            getattr(app, "audit", None), ccfg.refusals_audited, ccfg.refusal_interval_s
        )
        self.commands = CommandHandler(app, self.cfg.max_command_bytes, self.policy, self.refusals)
        self.retained_ignored = 0
        self.commands_dropped = 0
        self._quiet_log = _QuietLog()
        self.connected = False
        self.listening = False  # subscribed to the command topics (the broker said so)
        self._sub_mid: int | None = None
        self._sub_error = ""
        self.published = 0
        self.acked = 0
        self.disconnects = 0
        self.last_error = "not connected yet"
        self._refusal = ""
        # only the forwarding thread touches _mids, _acked and the Forwarder; paho's
        # callbacks just leave notes (paho calls on_publish holding its own lock)
        self._mids: dict[int, int] = {}  # paho mid -> outbox seq
        self._acked: list[int] = []
        self._ack_notes: deque[tuple[int, bool]] = deque()
        self._reconnected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._state_msg: dict[str, Any] | None = None
        self._alarm_q: deque[Any] = deque(maxlen=1000)  # alarms, and (kind, message) pairs
        self._units = measurement_units()
        self._cmd_q: queue.Queue[Any] = queue.Queue(100)
        self._threads: list[threading.Thread] = []
        self._subs: list[Any] = []
        self.client = self._make_client()

    # ------------------------------------------------------------------ client

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id or f"edge-inspect-{self.station.id}",
            protocol=mqtt.MQTTv5,
        )
        c.will_set(
            self.enc.topic("status"),
            self.enc.encode("status", self._status_msg("offline")),
            qos=1,
            retain=True,
        )
        self._credentials(c)
        c.reconnect_delay_set(min_delay=1, max_delay=5)
        c.max_inflight_messages_set(self.cfg.max_inflight)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    def _credentials(self, c: mqtt.Client) -> None:
        login(self.cfg, c)

    def _status_msg(self, status: str) -> dict[str, Any]:
        return {
            "schema": STATUS_SCHEMA,
            "version": 1,
            "station": self.station.id,
            "status": status,
            "time": _now(),
            "software": __version__,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.policy.warn_at_start()
        bus = self.pipeline.bus
        self._subs.append(bus.subscribe("verdict", lambda *_: self._wake.set(), name="mqtt-wake"))
        self._subs.append(
            bus.subscribe(["alarm", "state", "deviation"], self._on_bus, name="mqtt-events")
        )
        self._subs.append(bus.subscribe("verdict", self._on_measured, name="mqtt-measurements"))
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        for target, nm in ((self._forward, "mqtt-forward"), (self._command_loop, "mqtt-commands")):
            t = threading.Thread(target=target, name=nm, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, drain_s: float = 3.0) -> None:
        end = time.monotonic() + drain_s
        while (
            self.connected
            and time.monotonic() < end
            and (self.outbox.count() - self.acks.waiting("json") - len(self._acked)) > 0
        ):
            self._wake.set()
            time.sleep(0.02)
        for s in self._subs:
            s.close()
        self._stop.set()
        self._wake.set()
        self._cmd_q.put(None)
        for t in self._threads:
            t.join(5)
        self._take_acks()
        self._flush_acks()
        if self.connected:
            info = self.client.publish(
                self.enc.topic("status"),
                self.enc.encode("status", self._status_msg("offline")),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self.outbox.close()

    def status(self) -> dict[str, Any]:
        held = self.outbox.count()
        if not self.connected:
            detail = (
                f"broker {self.cfg.host}:{self.cfg.port} unreachable ({self.last_error}); "
                f"{held} results held in the outbox"
            )
        elif self.cfg.commands.enabled and not self.listening:
            detail = self._sub_error or "connected; subscribing to the command topics"
        else:
            detail = ""
        return {
            # up: results flow and, where commands are on, the appliance hears them
            "up": not detail,
            "detail": detail,
            "broker": f"{self.cfg.host}:{self.cfg.port}",
            "outbox": held,
            "backlog": self.fwd.backlog,
            "in_flight": len(self._mids),
            "published": self.published,
            "acked": self.acked,
            "disconnects": self.disconnects,
            "commands": {
                "listening": self.listening,
                "authenticated_broker": self.policy.trusted,
                "broker_check": self.check.status(),
                "accepted": self.commands.accepted,
                "refused": dict(self.refusals.total),
                "refusals_not_audited": self.refusals.not_audited,
                "retained_ignored": self.retained_ignored,
                "dropped": self.commands_dropped,
            },
        }

    # ------------------------------------------------------------------ callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refusal = f"connection refused: {reason_code}"
            self.last_error = self._refusal
            log.error("MQTT broker refused the connection: %s", reason_code)
            self._offline_alarm()
            return
        if self.cfg.commands.enabled:
            # retainAsPublished: a retained command is seen as retained, and then ignored;
            # noLocal: never our own answers. "online" waits for the broker's answer
            # (_on_subscribe): a command sent as soon as the MES sees it is heard.
            opts = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True)
            _rc, self._sub_mid = client.subscribe([(f, opts) for f in self.enc.command_filters()])
            self.check.on_connect()
        else:
            self._announce_online(client)
        self._reconnected.set()
        self._refusal = ""
        self.connected = True
        self.last_error = ""
        if self.alarms.is_active("MQTT_OFFLINE"):
            self.alarms.clear("MQTT_OFFLINE")
        log.info("MQTT connected to %s:%s", self.cfg.host, self.cfg.port)
        self._publish_counters()
        self._wake.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._sub_mid:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        self.listening = not refused
        self._sub_error = (
            f"the broker refused the command subscription ({', '.join(refused)})" if refused else ""
        )
        if refused:
            log.error("MQTT: %s: MES commands will not reach this appliance", self._sub_error)
        self._announce_online(client)

    def _announce_online(self, client: mqtt.Client) -> None:
        client.publish(
            self.enc.topic("status"),
            self.enc.encode("status", self._status_msg("online")),
            qos=1,
            retain=True,
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        self.listening = False
        self.last_error = self._refusal or f"disconnected: {reason_code}"
        if was:
            self.disconnects += 1
            log.warning("MQTT disconnected: %s; results are held in the outbox", reason_code)
        if not self._stop.is_set():
            self._offline_alarm()

    def _on_connect_fail(self, client, userdata) -> None:
        self.last_error = "broker unreachable"
        self._offline_alarm()

    def _offline_alarm(self) -> None:
        a = self.alarms.raise_(
            "MQTT_OFFLINE",
            f"MQTT broker {self.cfg.host}:{self.cfg.port} unreachable: results held in the outbox",
            "major",
            False,
        )
        if a.count == 1:
            log.warning("%s (%s)", a.message, self.last_error)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        failed = bool(reason_code is not None and getattr(reason_code, "is_failure", False))
        self._ack_notes.append((mid, failed))
        self._wake.set()

    def _take_acks(self) -> None:
        while self._ack_notes:
            mid, failed = self._ack_notes.popleft()
            seq = self._mids.pop(mid, None)
            if seq is None:
                continue  # status, counters, alarms, answers
            if failed:  # the broker refused it (e.g. quota): hand it out again later
                self.fwd.handed.discard(seq)
                self.fwd.backlog_next = min(self.fwd.backlog_next, seq)
                self.fwd.backlog_last = max(self.fwd.backlog_last, seq)
                continue
            self._acked.append(seq)
            self.acked += 1

    def _on_message(self, client, userdata, msg) -> None:
        route = self.enc.command_route(msg.topic)
        if route is None:
            return
        if msg.retain:  # left on the broker: it would be replayed at every connect
            self.retained_ignored += 1
            self._quiet_log(
                "retained",
                "MQTT retained command on %s ignored (%d so far): commands are published "
                "with retain false; clear it with an empty retained message",
                msg.topic,
                self.retained_ignored,
            )
            return
        try:
            self._cmd_q.put_nowait((route, msg.payload, msg.properties))
        except queue.Full:
            self.commands_dropped += 1
            self._quiet_log(
                "dropped",
                "MQTT command queue full: %s dropped (%d so far)",
                msg.topic,
                self.commands_dropped,
            )

    # ------------------------------------------------------------------ forwarding

    def _forward(self) -> None:
        last_counters = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            self._take_acks()
            self._flush_acks()
            if not self.connected:
                continue
            try:
                if self._reconnected.is_set():
                    self._reconnected.clear()
                    self.fwd.on_connect()
                    log.info("MQTT replaying a backlog of %d results", self.fwd.backlog)
                rows = self.fwd.next_rows()
                for r in rows:
                    msg = json.loads(r.payload)
                    msg["seq"] = r.seq
                    if not self.connected:
                        break
                    info = self.client.publish(
                        self.enc.topic(r.kind), self.enc.encode(r.kind, msg), qos=1
                    )
                    if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                        self._mids[info.mid] = r.seq  # the client keeps and resends it
                        self.fwd.handed.add(r.seq)
                        self.published += 1
                    else:  # not queued by the client: pick it up again after a reconnect
                        log.warning("MQTT publish of seq %d not queued: %s", r.seq, info.rc)
                        break
                if rows or self.fwd.backlog:
                    self._wake.set()  # more may be waiting (rate limit or window)
                self._flush_alarms()
                if time.monotonic() - last_counters >= self.cfg.counters_interval_s:
                    self._publish_counters()
                    last_counters = time.monotonic()
            except Exception:
                log.exception("MQTT forwarding failed; retrying")
                time.sleep(0.2)

    def _flush_acks(self) -> None:
        acked, self._acked = self._acked, []
        if not acked:
            return
        try:
            self.acks.delete("json", acked)
        except Exception as exc:  # full disk: kept, deleted later (or sent again: de-dup by id)
            log.error("cannot delete %d acked outbox rows: %s", len(acked), exc)
            self._acked.extend(acked)
            self.alarms.raise_("OUTBOX_FAILED", f"outbox cannot be updated: {exc}", "major", False)
            return
        for s in acked:
            self.fwd.handed.discard(s)
        if self.alarms.is_active("OUTBOX_FAILED"):
            self.alarms.clear("OUTBOX_FAILED")

    # ------------------------------------------------------------------ events

    def _on_bus(self, topic: str, ev: dict[str, Any]) -> None:
        if topic == "state":
            self._state_msg = ev
            if self.connected:
                self.client.publish(
                    self.enc.topic("state"), self.enc.encode("state", ev), qos=1, retain=True
                )
        elif topic == "alarm":
            msg = {
                "schema": ALARM_SCHEMA,
                "version": 1,
                "station": self.station.id,
                "time": _now(),
                **ev,
            }
            self._alarm_q.append(msg)
            self._wake.set()
        elif topic == "deviation":  # a process-control alert: QoS 1, queued like alarms
            msg = {"schema": DEVIATION_SCHEMA, "version": 1, "station": self.station.id, **ev}
            self._alarm_q.append(("deviation", msg))
            self._wake.set()

    def _on_measured(self, _topic: str, item: Any) -> None:
        """Every item's measurements for a historian (QoS 0, not stored and forwarded: the
        durable copy is in the item's `result` message)."""
        m = item.measurements
        if not m or not self.connected:
            return
        msg = {
            "schema": MEASUREMENTS_SCHEMA,
            "version": 1,
            "station": self.station.id,
            "id": item.id,
            "item_seq": item.seq,
            "batch": item.batch,
            "recipe": item.recipe,
            "time": _now(),
            "verdict": item.verdict.value,
            "measurements": m,
            "units": {k: self._units.get(k.rsplit(".", 1)[-1], "") for k in m},
        }
        self.client.publish(
            self.enc.topic("measurements"), self.enc.encode("measurements", msg), qos=0
        )

    def _flush_alarms(self) -> None:
        while self._alarm_q and self.connected:
            msg = self._alarm_q.popleft()
            kind = "alarm"
            if isinstance(msg, tuple):
                kind, msg = msg
            self.client.publish(self.enc.topic(kind), self.enc.encode(kind, msg), qos=1)

    def _publish_counters(self) -> None:
        s = self.pipeline.stats.snapshot()
        msg = {
            "schema": COUNTERS_SCHEMA,
            "version": 1,
            "station": self.station.id,
            "time": _now(),
            "batch": self.pipeline.batch.id if self.pipeline.batch else None,
            "recipe": self.pipeline.recipe.name,
            "inspected": s["items"],
            "passed": s["passed"],
            "rejected": s["rejected"],
            "by_reason": s["by_reason"],
            "deadline_misses": s["deadline_misses"],
            "rate_per_min": s["rate_per_min"],
            "p50_ms": s["p50_ms"],
            "p99_ms": s["p99_ms"],
            "outbox": self.outbox.count(),
        }
        self.client.publish(
            self.enc.topic("counters"), self.enc.encode("counters", msg), qos=1, retain=True
        )
        if self._state_msg is not None:
            self.client.publish(
                self.enc.topic("state"),
                self.enc.encode("state", self._state_msg),
                qos=1,
                retain=True,
            )

    # ------------------------------------------------------------------ commands

    def _command_loop(self) -> None:
        while True:
            try:
                job = self._cmd_q.get(timeout=1.0)
            except queue.Empty:
                self.refusals.flush()
                continue
            if job is None:
                self.refusals.flush(force=True)
                return
            (identity, name), payload, props = job
            claimed_user = None
            for k, v in getattr(props, "UserProperty", None) or []:
                if k == "user" and v:
                    claimed_user = str(v)[:64]
            if self.check.running:  # the first commands after start wait for the broker check
                self.check.wait(5.0)
            sender = Sender(identity, self.policy.trusted, claimed_user)
            resp = self.commands.handle(name, bytes(payload), sender)
            rprops = Properties(PacketTypes.PUBLISH)
            corr = getattr(props, "CorrelationData", None)
            if corr is not None:
                rprops.CorrelationData = corr
            topic = getattr(props, "ResponseTopic", None) or self.enc.response_topic(identity, name)
            try:
                self.client.publish(topic, json.dumps(resp).encode(), qos=1, properties=rprops)
            except Exception:
                log.exception("cannot answer MQTT command %s", name)


def login(cfg: Any, c: mqtt.Client) -> None:
    """The appliance's login on a client: user name and password file, TLS and its certificate."""
    if cfg.username:
        pw = read_secret(cfg.password_file) if cfg.password_file else None
        c.username_pw_set(cfg.username, pw)
    tls = cfg.tls
    if tls is not None:
        c.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        c.tls_insecure_set(tls.insecure)


class _QuietLog:
    """A warning per kind at most every `every_s` seconds (the count is in the message)."""

    def __init__(self, every_s: float = 10.0):
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def __call__(self, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) >= self.every_s:
            self._last[kind] = now
            log.warning(msg, *args)


def build(app: Any) -> MqttPublisher | None:
    """Component factory: the JSON publisher, or None when `mqtt.enabled` is false or
    `mqtt.encoding` is `sparkplug` alone."""
    if not app.cfg.mqtt.enabled or app.cfg.mqtt.encoding == "sparkplug":
        return None
    return MqttPublisher(app)
