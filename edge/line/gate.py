"""Encoder tracking to the reject gate.

Each item is registered at its trigger with the encoder count of the trigger. The gate
sits `gate_distance_mm` downstream; the verdict must reach the PLC before the item gets
there, less a safety margin and the time the PLC write itself takes. The belt speed is
measured from the triggers' encoder counts (or configured), so a belt that speeds up
shortens the deadline: the fail-safe follows the encoder, not only the wall clock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from edge.config import AppConfig, EncoderConfig
from edge.domain import Item, count_delta


class BeltSpeed:
    """Belt speed in encoder counts per second: configured, or measured between triggers."""

    def __init__(self, fixed_counts_s: float | None = None, smoothing: float = 0.2):
        self.fixed = fixed_counts_s
        self.smoothing = smoothing
        self._last: tuple[float, int] | None = None
        self._est: float | None = None
        self._lock = threading.Lock()

    def observe(self, t: float, encoder: int) -> None:
        with self._lock:
            if self._last is not None:
                dt, dc = t - self._last[0], count_delta(encoder, self._last[1])
                if dt > 1e-4 and dc > 0:
                    v = dc / dt
                    self._est = (
                        v if self._est is None else self._est + self.smoothing * (v - self._est)
                    )
            self._last = (t, encoder)

    def counts_per_s(self) -> float | None:
        if self.fixed is not None:
            return self.fixed
        with self._lock:
            return self._est


@dataclass(slots=True)
class GateSlot:
    """Where an item in flight is due: at the gate (t_gate) and its last safe write time."""

    item_id: str
    seq: int
    encoder: int
    t_trigger: float
    t_gate: float | None  # when it reaches the gate
    deadline: float | None  # last moment its verdict may be final
    latest_write: float | None  # last moment the PLC may still take it (gate less margin)


def encoder_config(cfg: AppConfig) -> EncoderConfig | None:
    if cfg.tracking.encoder is not None:
        return cfg.tracking.encoder
    return getattr(cfg.source, "encoder", None)


def belt_mm_s(cfg: AppConfig) -> float | None:
    """Configured belt speed, or a paced simulator's nominal one; None: measure it."""
    if cfg.tracking.belt_mm_s is not None:
        return cfg.tracking.belt_mm_s
    src = cfg.source
    if src.type == "simulator" and src.realtime:
        return src.rate_per_min / 60.0 * src.encoder.pitch_mm
    return None


class GateTracker:
    """Items in flight to the gate, a FIFO keyed by item id; also the pipeline deadline hook."""

    def __init__(
        self, enc: EncoderConfig, belt_mm_s: float | None = None, write_budget_ms: float = 5.0
    ):
        self.enc = enc
        self.gate_counts = enc.gate_distance_mm * enc.counts_per_mm
        self.margin_counts = enc.safety_margin_mm * enc.counts_per_mm
        self.pitch_counts = enc.pitch_mm * enc.counts_per_mm
        self.speed = BeltSpeed(belt_mm_s * enc.counts_per_mm if belt_mm_s else None)
        self.write_budget_s = write_budget_ms / 1000.0
        self._slots: OrderedDict[str, GateSlot] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: AppConfig) -> GateTracker | None:
        enc = encoder_config(cfg)
        if enc is None:
            return None
        return cls(enc, belt_mm_s(cfg), cfg.tracking.write_budget_ms)

    def travel_s(self) -> float | None:
        v = self.speed.counts_per_s()
        return None if not v else self.gate_counts / v

    def pitch_s(self) -> float | None:
        v = self.speed.counts_per_s()
        return None if not v else self.pitch_counts / v

    def __call__(self, item: Item) -> float | None:
        """Deadline hook: the last moment a verdict for `item` may still reach the gate."""
        self.speed.observe(item.t_trigger, item.encoder)
        v = self.speed.counts_per_s()
        t_gate = deadline = latest = None
        if v:
            t_gate = item.t_trigger + self.gate_counts / v
            latest = t_gate - self.margin_counts / v
            deadline = latest - self.write_budget_s
        with self._lock:
            self._slots[item.id] = GateSlot(
                item.id, item.seq, item.encoder, item.t_trigger, t_gate, deadline, latest
            )
            while len(self._slots) > 100_000:  # never grows without bound
                self._slots.popitem(last=False)
        return deadline

    def slot(self, item_id: str) -> GateSlot | None:
        with self._lock:
            return self._slots.get(item_id)

    def done(self, item_id: str) -> GateSlot | None:
        """The item's verdict is at the PLC (or it was failed): it leaves the FIFO."""
        with self._lock:
            return self._slots.pop(item_id, None)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._slots)
