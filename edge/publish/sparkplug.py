"""The appliance as a Sparkplug B 3.0 edge node (`mqtt.encoding: sparkplug | both`).

Topics `spBv1.0/<group>/<type>/<edge node>[/<device>]`: the appliance is the edge node,
its inspection station the device. One MQTT session at a time, each a fresh client:

* CONNECT (clean start) carries the NDEATH as its Will, with `bdSeq` one more than the
  last session's (kept in the state directory, written before the CONNECT);
* NCMD, DCMD and, with a primary host, `spBv1.0/STATE/<host>` are subscribed before any
  birth; with a primary host nothing is born until its STATE says online (the newest
  timestamp wins; a malformed STATE is logged and ignored);
* NBIRTH (seq 0, the same bdSeq), DBIRTH, then every recorded result as one DDATA in
  outbox order, rows recorded before the birth marked historical; counters, rates,
  batch, recipe, state and alarms as DDATA when they change; `seq` 0..255 wrapping;
* `Node Control/Rebirth` = true: NBIRTH and DBIRTH again (same bdSeq), at most once per
  `rebirth_min_interval_s`, requests in between merged;
* the primary host going offline: NDEATH, disconnect, a new session that waits for it;
  results wait in the outbox (alarm SPARKPLUG_HOST_OFFLINE) and follow the next birth.

A session is a fresh paho client because the Will (bdSeq) changes at every CONNECT and
because a message paho would resend after a reconnect carries the last session's seq:
what was not acknowledged is read again from the outbox instead. An outbox row is
deleted after the broker's PUBACK (`result_qos: 1`, the default) or once written
(`result_qos: 0`, the spec's QoS); with `encoding: both` only when JSON has it too.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.publish.mqtt import _QuietLog, login
from edge.publish.outbox import Outbox, Row, shared_acks
from edge.publish.sparkplug_metrics import DeviceView, node_birth, result_metrics
from edge.publish.sparkplug_payload import (
    NAMESPACE,
    BdSeqStore,
    DataType,
    Metric,
    PayloadError,
    decode,
    encode,
)
from edge.publish.sparkplug_state import PrimaryHost

log = logging.getLogger(__name__)

REBIRTH = "Node Control/Rebirth"


class _Session(Exception):
    """Ends the current MQTT session (the loop starts a new one)."""


class SparkplugNode:
    name = "sparkplug"

    def __init__(self, app: Any):
        self.app = app
        self.cfg = app.cfg.mqtt
        self.sp = self.cfg.sparkplug
        st = app.cfg.station
        self.group, self.node, self.device = self.sp.ids(st)
        self.station = st
        self.pipeline = app.pipeline
        self.alarms = app.pipeline.alarms
        self.outbox = Outbox(app.pipeline.db)
        self.acks = shared_acks(app)
        self._skip = self.acks.has("sparkplug")
        self.bdseq = BdSeqStore(Path(app.cfg.records.state_dir) / "sparkplug-bdseq.json")
        self.view = DeviceView()
        self.seq = 0
        self.client: mqtt.Client | None = None
        self.connected = False
        self.born = False
        self._quiet = _QuietLog()
        self.host = PrimaryHost(self.sp.primary_host_id, self._quiet)
        self.last_error = "not connected yet"
        self.stats = {
            "sessions": 0,
            "births": 0,
            "rebirth_requests": 0,
            "published": 0,
            "acked": 0,
            "commands_ignored": 0,
            "host_offline": 0,
        }
        self._notes: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._mids: dict[int, int] = {}  # paho mid -> outbox seq (result DDATA only)
        self._acked: list[int] = []
        self._next = 1  # next outbox seq to hand out
        self._historical_upto = 0  # rows up to here were recorded before this birth
        self._tokens = 0.0
        self._t = time.monotonic()
        self._rebirth_asked = 0
        self._last_birth = 0.0
        self._dirty = True
        self._node_held: int | None = None
        self._state: str | None = None
        self._waiting_since: float | None = None
        self._subs: list[Any] = []
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ topics

    def topic(self, kind: str, device: bool = False) -> str:
        t = f"{NAMESPACE}/{self.group}/{kind}/{self.node}"
        return f"{t}/{self.device}" if device else t

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        bus = self.pipeline.bus
        self._subs.append(bus.subscribe("verdict", lambda *_: self._wake.set(), name="spb-wake"))
        self._subs.append(bus.subscribe(["alarm", "state"], self._on_bus, name="spb-events"))
        self._thread = threading.Thread(target=self._run, name="sparkplug", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 3.0) -> None:
        end = time.monotonic() + drain_s
        while self.born and time.monotonic() < end and self._unsent() > 0:
            self._wake.set()
            time.sleep(0.02)
        for s in self._subs:
            s.close()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self._flush_acks()
        self.outbox.close()

    def _unsent(self) -> int:
        return self.outbox.count() - self.acks.waiting("sparkplug") - len(self._acked)

    def status(self) -> dict[str, Any]:
        held = self.outbox.count()
        if self.born:
            detail = ""
        elif self.connected:
            detail = f"waiting for primary host {self.host.id} to be online; {held} results held"
        else:
            detail = (
                f"broker {self.cfg.host}:{self.cfg.port} unreachable ({self.last_error}); "
                f"{held} results held in the outbox"
            )
        return {
            "up": self.born,
            "detail": detail,
            "broker": f"{self.cfg.host}:{self.cfg.port}",
            "edge_node": f"{self.group}/{self.node}",
            "device": self.device,
            "primary_host": None
            if self.host.id is None
            else {"id": self.host.id, "online": self.host.online},
            "state_malformed": self.host.malformed,
            "state_stale": self.host.stale,
            "bdseq": self.bdseq.current,
            "seq": self.seq,
            "outbox": held,
            **self.stats,
        }

    # ------------------------------------------------------------------ paho callbacks (notes only)

    def _note(self, *n: Any) -> None:
        self._notes.append(n)
        self._wake.set()

    def _make_client(self, bdseq: int) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # never the JSON publisher's id: with `encoding: both` one would log the other out
            client_id=f"{self.cfg.client_id or 'edge-inspect'}-spb-{self.node}",
            protocol=mqtt.MQTTv5,
        )
        c.will_set(self.topic("NDEATH"), self._ndeath(bdseq), qos=1, retain=False)
        login(self.cfg, c)  # the same user, password file and TLS as the JSON publisher
        c.reconnect_delay_set(min_delay=3600, max_delay=3600)  # sessions are ours to renew
        c.max_inflight_messages_set(self.cfg.max_inflight)
        c.max_queued_messages_set(0)
        c.on_connect = lambda _c, _u, _f, rc, _p: self._note("connack", rc)
        c.on_subscribe = lambda _c, _u, _m, rcs, _p: self._note("suback", rcs)
        c.on_disconnect = lambda _c, _u, _f, rc, _p: self._note("disconnect", rc)
        c.on_publish = lambda _c, _u, mid, rc, _p: self._note("puback", mid, rc)
        c.on_message = lambda _c, _u, msg: self._note(
            "message", msg.topic, bytes(msg.payload), msg.retain
        )
        return c

    def _ndeath(self, bdseq: int) -> bytes:
        return encode([Metric("bdSeq", DataType.Int64, bdseq)], seq=None)

    # ------------------------------------------------------------------ sessions

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            ok = False
            try:
                ok = self._session()
            except Exception:
                log.exception("Sparkplug session failed; starting a new one")
            if self._stop.is_set():
                break
            self._stop.wait(0.2 if ok else backoff)
            backoff = 1.0 if ok else min(backoff * 2, 5.0)

    def _session(self) -> bool:
        """One MQTT session from CONNECT to its end; True when it ended in order."""
        bdseq = self.bdseq.next()
        c = self._make_client(bdseq)
        self._notes.clear()
        self.stats["sessions"] += 1
        try:
            c.connect(
                self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=True
            )
        except (OSError, ValueError) as exc:  # no CONNECT went out: its bdSeq is not used
            self.bdseq.undo()
            self.last_error = f"broker unreachable ({exc})"
            self._offline_alarm()
            return False
        c.loop_start()
        self.client = c
        try:
            self._await("connack", 10.0)
            c.subscribe([(self.topic("NCMD"), 1), (f"{self.topic('DCMD')}/+", 1)])
            self._await("suback", 10.0)
            if self.host.topic is not None:
                self.host.new_session()
                c.subscribe(self.host.topic, 1)
                self._await("suback", 10.0)
            self._serve(bdseq)
            return True
        except _Session as end:
            self.last_error = str(end)
            if not self._stop.is_set():
                self._offline_alarm()
            return False
        finally:
            if self._stop.is_set() and self.born:
                self._goodbye(c, bdseq)
            self.connected = self.born = False
            c.disconnect()
            c.loop_stop()
            self.client = None
            self._mids.clear()  # unacknowledged rows are read again from the outbox
            self._flush_acks()

    def _await(self, kind: str, timeout: float) -> None:
        """Handles notes until one of `kind` arrives; a refusal or a lost link ends the session."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self._stop.is_set():
            if self._handle_notes(until=kind):
                return
            self._wake.wait(0.05)
            self._wake.clear()
        raise _Session("stopped" if self._stop.is_set() else f"no {kind} from the broker")

    def _handle_notes(self, until: str | None = None) -> bool:
        found = False
        while self._notes:
            note = self._notes.popleft()
            kind = note[0]
            if kind == "connack":
                if note[1].is_failure:
                    raise _Session(f"connection refused: {note[1]}")
                self.connected = True
                self.last_error = ""
                if self.alarms.is_active("SPARKPLUG_OFFLINE"):
                    self.alarms.clear("SPARKPLUG_OFFLINE")
                log.info("Sparkplug edge node %s/%s connected", self.group, self.node)
            elif kind == "disconnect":
                was = self.born
                self.connected = self.born = False
                if was:
                    log.warning("Sparkplug session lost (%s); results are held", note[1])
                raise _Session(f"disconnected: {note[1]}")
            elif kind == "puback":
                seq = self._mids.pop(note[1], None)
                if seq is not None:
                    if getattr(note[2], "is_failure", False):  # refused: send it again
                        self._next = min(self._next, seq)
                    else:
                        self._acked.append(seq)
                        self.stats["acked"] += 1
            elif kind == "message":
                self._on_message(note[1], note[2], note[3])
            found = found or kind == until
        return found

    def _offline_alarm(self) -> None:
        a = self.alarms.raise_(
            "SPARKPLUG_OFFLINE",
            f"Sparkplug: MQTT broker {self.cfg.host}:{self.cfg.port} unreachable: results held "
            "in the outbox",
            "major",
            False,
        )
        if a.count == 1:
            log.warning("%s (%s)", a.message, self.last_error)

    def _serve(self, bdseq: int) -> None:
        """The connected session: wait for the host, birth, then results and changes."""
        last_counters = 0.0
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            self._handle_notes()
            self._flush_acks()
            if not self.host.online:
                if self.born:  # the spec: NDEATH, disconnect, and wait for it again
                    self.stats["host_offline"] += 1
                    log.warning(
                        "Sparkplug primary host %s went offline: NDEATH sent, results held in "
                        "the outbox until it is back",
                        self.host.id,
                    )
                    self._publish(self.topic("NDEATH"), self._ndeath(bdseq), qos=1, wait=True)
                    return
                self._host_wait_alarm()
                continue
            if not self.born or self._rebirth_due():
                self._birth(bdseq)
                last_counters = time.monotonic()
            self._forward()
            if self._dirty or time.monotonic() - last_counters >= self.cfg.counters_interval_s:
                self._publish_changes()
                last_counters = time.monotonic()

    def _host_wait_alarm(self) -> None:
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
            log.info("Sparkplug waiting for primary host %s to be online", self.host.id)
        waited = now - self._waiting_since
        if waited >= self.sp.host_offline_alarm_s:
            held = self.outbox.count()
            a = self.alarms.raise_(
                "SPARKPLUG_HOST_OFFLINE",
                f"Sparkplug primary host {self.host.id} not online for {waited:.0f} s: "
                f"{held} results held in the outbox",
                "major",
                False,
            )
            if a.count == 1:
                log.warning("%s", a.message)

    # ------------------------------------------------------------------ births

    def _rebirth_due(self) -> bool:
        if not self._rebirth_asked:
            return False
        return time.monotonic() - self._last_birth >= self.sp.rebirth_min_interval_s

    def _birth(self, bdseq: int) -> None:
        merged, self._rebirth_asked = self._rebirth_asked, 0
        if self.born and merged:
            log.info("Sparkplug rebirth on request (%d request(s) merged)", merged)
        first = not self.born
        self.seq = 0
        held = self.outbox.count()
        path = "/".join(
            (self.station.enterprise, self.station.site, self.station.area, self.station.line)
        )
        self._publish(
            self.topic("NBIRTH"), encode(node_birth(bdseq, self.station.id, path, held), seq=0)
        )
        self._node_held = held
        self._publish(
            self.topic("DBIRTH", True), encode(self.view.birth(self._values()), self._seq())
        )
        self.born = True
        self._dirty = False
        self._last_birth = time.monotonic()
        self.stats["births"] += 1
        self._waiting_since = None
        if self.alarms.is_active("SPARKPLUG_HOST_OFFLINE"):
            self.alarms.clear("SPARKPLUG_HOST_OFFLINE")
        if first:  # a new session: everything not acked is sent again, in order
            lo, hi = self.outbox.bounds()
            self._next = lo or 1
            self._historical_upto = hi or 0
            self._tokens, self._t = 0.0, time.monotonic()
            log.info(
                "Sparkplug born (bdSeq %d); %d results to send from the outbox",
                bdseq,
                max(0, (hi or 0) - (lo or 1) + 1),
            )

    def _seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def _publish(self, topic: str, payload: bytes, qos: int = 0, wait: bool = False) -> Any:
        c = self.client
        if c is None:
            raise _Session("no client")
        info = c.publish(topic, payload, qos=qos, retain=False)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise _Session(f"publish not queued: {info.rc}")
        if wait:
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        return info

    def _goodbye(self, c: mqtt.Client, bdseq: int) -> None:
        """A clean stop: DDEATH and NDEATH (the Will is not sent on a normal DISCONNECT)."""
        try:
            self._publish(self.topic("DDEATH", True), encode([], self._seq()))
            self._publish(self.topic("NDEATH"), self._ndeath(bdseq), qos=1, wait=True)
        except _Session:
            pass

    # ------------------------------------------------------------------ data

    def _values(self) -> dict[str, tuple[DataType, Any]]:
        p = self.pipeline
        return self.view.values(
            p.stats.snapshot(), p.batch, p.recipe, self._state, self.alarms.active()
        )

    def _forward(self) -> None:
        """Recorded results as DDATA, in outbox order, up to `max_inflight` unacknowledged."""
        room = self.cfg.max_inflight - len(self._mids)
        if room <= 0:
            return
        if self._next <= self._historical_upto:  # the backlog: at the replay rate
            now = time.monotonic()
            rate = self.cfg.replay_rate_per_s
            self._tokens = min(self._tokens + (now - self._t) * rate, max(rate, 1.0))
            self._t = now
            room = min(room, int(self._tokens))
        rows = self.outbox.read(self._next, None, room) if room > 0 else []
        for r in rows:
            self._next = r.seq + 1
            if r.seq in self._mids.values() or (self._skip is not None and self._skip(r.seq)):
                continue
            self._send_result(r)
            if r.seq <= self._historical_upto:
                self._tokens -= 1
        if rows:
            self._wake.set()  # more may be waiting

    def _send_result(self, r: Row) -> None:
        try:
            msg = json.loads(r.payload)
        except ValueError:
            log.error("outbox row %d is not JSON: sent as an empty result", r.seq)
            msg = {}
        metrics = result_metrics(r.seq, msg, historical=r.seq <= self._historical_upto)
        info = self._publish(
            self.topic("DDATA", True), encode(metrics, self._seq()), qos=self.sp.result_qos
        )
        self._mids[info.mid] = r.seq
        self.stats["published"] += 1
        if not metrics[0].historical:
            self.view.last_result = metrics

    def _publish_changes(self) -> None:
        self._dirty = False
        changed = self.view.changes(self._values())
        if changed:
            self._publish(self.topic("DDATA", True), encode(changed, self._seq()))
        held = self.outbox.count()
        if held != self._node_held:
            self._node_held = held
            metric = Metric("Outbox/Held", DataType.UInt64, held)
            self._publish(self.topic("NDATA"), encode([metric], self._seq()))

    def _flush_acks(self) -> None:
        acked, self._acked = self._acked, []
        if not acked:
            return
        try:
            self.acks.delete("sparkplug", acked)
        except Exception as exc:  # a full disk: kept and deleted later
            log.error("cannot delete %d acked outbox rows: %s", len(acked), exc)
            self._acked.extend(acked)

    # ------------------------------------------------------------------ incoming

    def _on_bus(self, topic: str, ev: dict[str, Any]) -> None:
        if topic == "state":
            self._state = ev.get("state")
        self._dirty = True
        self._wake.set()

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == self.host.topic:
            self.host.on_state(payload)
            return
        if retained:  # a retained command would be replayed at every connect
            self.stats["commands_ignored"] += 1
            self._quiet("retained", "Sparkplug retained command on %s ignored", topic)
            return
        try:
            metrics = decode(payload)
        except PayloadError as exc:
            self.stats["commands_ignored"] += 1
            self._quiet("badcmd", "Sparkplug command on %s ignored: %s", topic, exc)
            return
        if topic == self.topic("NCMD") and any(n == REBIRTH and v is True for n, _, v in metrics):
            self.stats["rebirth_requests"] += 1
            self._rebirth_asked += 1
            if self._rebirth_asked > 1:
                self._quiet(
                    "storm",
                    "Sparkplug rebirth requested %d times since the last birth: answered once "
                    "every %.1f s",
                    self._rebirth_asked,
                    self.sp.rebirth_min_interval_s,
                )
            return
        self.stats["commands_ignored"] += 1
        names = [n or f"alias {a}" for n, a, _ in metrics]
        self._quiet("cmd", "Sparkplug command on %s ignored (metrics %s)", topic, names)


def build(app: Any) -> SparkplugNode | None:
    """Component factory: the edge node when `mqtt.encoding` is `sparkplug` or `both`."""
    cfg = app.cfg.mqtt
    if not cfg.enabled or cfg.encoding == "json":
        return None
    return SparkplugNode(app)
