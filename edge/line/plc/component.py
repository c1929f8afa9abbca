"""The PLC output: recorded verdicts to the reject gate, line-stop conditions back to the line.

Threads: one bus subscriber writes verdicts (result registers, then the strobe); one
poller sends the heartbeat, reads confirmation / bin-full / air-pressure-low, keeps the
line-stop coil in step and reconnects a lost link.

Fail-safe rules kept here:
- while the link is down no item can PASS (a tracker guard), every item in flight is
  rejected with PLC_LINK_LOST, and the PLC's own default at the gate rejects them;
- a PASS the PLC did not take (write failed, link down, or too late for the gate) is
  amended to REJECT in the record and re-published: the appliance never reports PASS
  for an item the PLC did not receive.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from edge.domain import REASON_NUMBERS, Item, Reason, Verdict
from edge.line.gate import GateTracker, belt_mm_s, encoder_config
from edge.line.plc.base import (
    VERDICT_ACCEPT,
    VERDICT_REJECT,
    PLCAdapter,
    PLCError,
    PLCInputs,
    Result,
    ResultRefused,
    open_adapter,
)
from edge.record import item_row

log = logging.getLogger(__name__)

#: Alarms that stay latched until a reset (the others clear when their input clears).
LATCHED = ("REJECT_NOT_CONFIRMED", "CONSECUTIVE_REJECTS")


class PLCOutput:
    name = "plc"

    def __init__(
        self,
        pipeline: Any,
        cfg: Any,
        adapter: PLCAdapter,
        *,
        sim: Any = None,
        gate: GateTracker | None = None,
        confirm_grace_ms: float = 250.0,
    ):
        self.pipeline = pipeline
        self.cfg = cfg  # the PLC config
        self.adapter = adapter
        self.sim = sim
        self.gate = gate
        self.alarms = pipeline.alarms
        self.confirm_grace_s = confirm_grace_ms / 1000.0
        self.link_up = False
        self.link_error = "not connected yet"
        self.line_stop_latched = False
        self._line_stop_written: bool | None = None
        self._io = threading.Lock()
        self._state = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: deque[tuple[int, float]] = deque()  # (item seq, confirm due) for rejects
        self._lat: deque[float] = deque(maxlen=5000)  # trigger -> PLC write, ms (recent)
        self._consecutive = 0
        self._hb = 0
        self._last_hb = 0.0
        self._conn = None
        self.written = 0
        self.amended = 0
        self.late_for_gate = 0
        self.lost_links = 0
        self.unconfirmed = 0
        self.inputs = PLCInputs()
        self._poller: threading.Thread | None = None
        self._subs: list[Any] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        p = self.pipeline
        if self.sim is not None:
            self.sim.start()
            p.deadline_hooks.append(self._photo_eye)
        if self.gate is not None:
            p.deadline_hooks.append(self.gate)
        p.tracker.pass_guard = self._pass_guard
        self._conn = p.db.connect()
        self._try_connect()
        self._subs.append(p.bus.subscribe("verdict", self._on_verdict, name="plc"))
        self._subs.append(p.bus.subscribe("alarm", self._on_alarm, name="plc-alarms"))
        self._poller = threading.Thread(target=self._poll, name="plc-poll", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        for s in self._subs:
            s.close()
        self._stop.set()
        self._wake.set()
        if self._poller:
            self._poller.join(5)
        with self._io:
            self.adapter.close()
        if self.sim is not None:
            self.sim.close()
        if self._conn is not None:
            self._conn.close()

    def status(self) -> dict[str, Any]:
        lat = np.fromiter(self._lat, float) if self._lat else None
        return {
            "up": self.link_up,
            "detail": "" if self.link_up else f"link lost: {self.link_error}",
            "adapter": self.adapter.describe(),
            "written": self.written,
            "amended": self.amended,
            "late_for_gate": self.late_for_gate,
            "lost_links": self.lost_links,
            "unconfirmed_rejects": self.unconfirmed,
            "pending_confirmations": len(self._pending),
            "line_stop": self.line_stop_latched,
            "bin_full": self.inputs.bin_full,
            "air_low": self.inputs.air_low,
            "write_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat is not None else None,
            "write_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat is not None else None,
            "in_flight_to_gate": self.gate.in_flight() if self.gate else None,
        }

    def latencies_ms(self) -> list[float]:
        return list(self._lat)

    def reset_line_stop(self) -> bool:
        """Operator reset: clears latched alarms and the request, if no condition remains."""
        for code in LATCHED:
            self.alarms.clear(code)
        if any(a.line_stop for a in self.alarms.active()):
            return False
        self.line_stop_latched = False
        self._wake.set()
        return True

    # ------------------------------------------------------------------ hooks

    def _photo_eye(self, item: Item) -> None:
        """The simulated belt sees every product at the camera, whatever the PLC link does."""
        self.sim.conveyor.photo_eye(item.encoder, item.t_trigger)

    def _pass_guard(self, item: Item) -> str | None:
        return None if self.link_up else Reason.PLC_LINK_LOST.value

    # ------------------------------------------------------------------ verdicts

    def _on_verdict(self, _topic: str, item: Item) -> None:
        slot = self.gate.done(item.id) if self.gate else None
        self._count_consecutive(item)
        if not self.link_up:
            if item.verdict is Verdict.PASS:
                self._amend(item, Reason.PLC_LINK_LOST.value)
            return  # the PLC rejects at the gate by default
        now = time.monotonic()
        if item.verdict is Verdict.PASS and slot and slot.latest_write and now > slot.latest_write:
            self.late_for_gate += 1
            self._amend(item, Reason.TIMEOUT.value)
        reject = item.verdict is Verdict.REJECT
        reason = REASON_NUMBERS.get(item.reasons[0], 0) if reject and item.reasons else 0
        r = Result(
            item.seq,
            item.encoder,
            VERDICT_REJECT if reject else VERDICT_ACCEPT,
            reason,
            slot.t_gate if slot else None,
        )
        try:
            with self._io:
                self.adapter.write_result(r)
        except ResultRefused:  # too late: the gate's default rejected the item
            if item.verdict is Verdict.PASS:
                self.late_for_gate += 1
                self._amend(item, Reason.TIMEOUT.value)
            return
        except PLCError as exc:
            if item.verdict is Verdict.PASS:
                self._amend(item, Reason.PLC_LINK_LOST.value)
            self._link_lost(exc)
            return
        t = time.monotonic()
        self.written += 1
        self._lat.append((t - item.t_trigger) * 1000.0)
        if reject:
            due = (slot.t_gate if slot and slot.t_gate else t) + self.confirm_grace_s
            self._pending.append((item.seq, due))

    def _count_consecutive(self, item: Item) -> None:
        limit = self.pipeline.recipe.consecutive_rejects_stop
        if item.verdict is Verdict.PASS:
            self._consecutive = 0
            return
        self._consecutive += 1
        if limit and self._consecutive >= limit:
            self.alarms.raise_(
                "CONSECUTIVE_REJECTS",
                f"{self._consecutive} rejects in a row (recipe limit {limit})",
                "major",
                True,
            )

    def _amend(self, item: Item, reason: str) -> None:
        """A recorded PASS the gate did not get: record and re-publish it as REJECT."""
        item.verdict, item.reasons = Verdict.REJECT, [reason]
        msg = item_row(item, self.pipeline.cfg.station.id)["message"]
        msg["amended"] = True
        outbox = self.pipeline.cfg.mqtt.enabled
        try:
            with self.pipeline.db.transaction(self._conn) as c:
                c.execute(
                    "UPDATE items SET verdict = 'REJECT', reasons = ? WHERE id = ?",
                    (json.dumps([reason]), item.id),
                )
                if outbox:
                    c.execute(
                        "INSERT INTO outbox (kind, item_id, payload, created_utc)"
                        " VALUES ('result', ?, ?, ?)",
                        (item.id, json.dumps(msg, separators=(",", ":")), time.time()),
                    )
        except Exception as exc:  # disk full, I/O error: the recorder holds it, never lost
            log.error("amending %s failed: %s; held until records can be written", item.id, exc)
            self.alarms.raise_("RECORD_FAILED", f"cannot record amendment: {exc}", "critical", True)
            self.pipeline.recorder.hold_amendment(item.id, reason, msg)
        self.amended += 1
        st = self.pipeline.stats  # the counters saw a PASS: move it to the rejects
        with st._lock:
            st.passed -= 1
            st.rejected += 1
            st.by_reason[reason] += 1
        log.warning(
            "item %s: PASS not delivered to the PLC, recorded as REJECT %s", item.id, reason
        )
        self.pipeline.bus.publish("amend", item)

    # ------------------------------------------------------------------ link

    def _try_connect(self) -> bool:
        try:
            with self._io:
                self.adapter.close()
                self.adapter.connect()
                self.adapter.read_inputs()
                # a link that comes back asks for a line stop: items were rejected blind
                if self.line_stop_latched:
                    self.adapter.set_line_stop(True)
                    self._line_stop_written = True
        except PLCError as exc:
            self.link_error = str(exc)
            if not self.alarms.is_active("PLC_LINK_LOST"):
                self.alarms.raise_("PLC_LINK_LOST", f"PLC not reachable: {exc}", "critical", True)
                self.line_stop_latched = True
            return False
        with self._state:
            self.link_up = True
            self.link_error = ""
        self.alarms.clear("PLC_LINK_LOST")
        log.info("PLC link up (%s)", self.adapter.describe())
        return True

    def _link_lost(self, exc: Exception) -> None:
        with self._state:
            if not self.link_up:
                return
            self.link_up = False
            self.link_error = str(exc)
            self.lost_links += 1
        self.line_stop_latched = True
        self._line_stop_written = None
        self.alarms.raise_("PLC_LINK_LOST", f"PLC link lost: {exc}", "critical", True)
        failed = self.pipeline.tracker.fail_all(Reason.PLC_LINK_LOST.value)
        if self.gate:
            for it in failed:
                self.gate.done(it.id)
        log.error("PLC link lost (%s): %d items in flight rejected", exc, len(failed))

    # ------------------------------------------------------------------ poll

    def _on_alarm(self, _topic: str, ev: dict[str, Any]) -> None:
        if ev.get("event") == "raised" and ev.get("line_stop"):
            self.line_stop_latched = True
            self._wake.set()

    def _poll(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            if not self.link_up:
                if self._try_connect():
                    backoff = 0.1
                    continue
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            try:
                self._poll_once()
            except PLCError as exc:
                self._link_lost(exc)
                continue
            self._wake.wait(self.cfg.poll_s)
            self._wake.clear()

    def _poll_once(self) -> None:
        now = time.monotonic()
        with self._io:
            inputs = self.adapter.read_inputs()
            if now - self._last_hb >= self.cfg.heartbeat_s:
                self._hb += 1
                self.adapter.heartbeat(self._hb)
                self._last_hb = now
            want = self.line_stop_latched
            if want != self._line_stop_written:
                self.adapter.set_line_stop(want)
                self._line_stop_written = want
        self.inputs = inputs
        self._input_alarm(inputs.bin_full, "BIN_FULL", "reject bin full")
        self._input_alarm(inputs.air_low, "AIR_PRESSURE_LOW", "reject gate air pressure low")
        while self._pending and self._pending[0][0] <= inputs.confirmed_seq:
            self._pending.popleft()
        while self._pending and self._pending[0][1] < now:
            seq, _ = self._pending.popleft()
            self.unconfirmed += 1
            self.alarms.raise_(
                "REJECT_NOT_CONFIRMED",
                f"reject of item seq {seq} not confirmed by the gate",
                "critical",
                True,
            )

    def _input_alarm(self, on: bool, code: str, text: str) -> None:
        if on and not self.alarms.is_active(code):
            self.alarms.raise_(code, text, "critical", True)
        elif not on and self.alarms.is_active(code):
            self.alarms.clear(code)


def build(app: Any) -> PLCOutput | None:
    """Component factory: the PLC output for `cfg.plc`, or None when no PLC is configured."""
    cfg = app.cfg
    pcfg = cfg.plc
    if pcfg.type == "none":
        return None
    gate = GateTracker.from_config(cfg)
    sim = None
    kw: dict[str, Any] = {}
    if pcfg.type == "sim":
        from edge.config import EncoderConfig
        from edge.line.plc.sim import SimulatedPLC

        enc = encoder_config(cfg) or EncoderConfig()
        sim = SimulatedPLC(
            enc,
            host=pcfg.host,
            port=pcfg.port,
            belt_mm_s=belt_mm_s(cfg),
            bin_capacity=pcfg.bin_capacity,
        )
        kw = {"host": sim.host, "port": sim.port}
    adapter = open_adapter(pcfg, **kw)
    return PLCOutput(
        app.pipeline,
        pcfg,
        adapter,
        sim=sim,
        gate=gate,
        confirm_grace_ms=cfg.tracking.confirm_grace_ms,
    )
