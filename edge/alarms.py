"""Active alarms: raised and cleared by the line, acknowledged by operators."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.bus import Bus


@dataclass
class Alarm:
    code: str  # e.g. CAMERA_STALL, PLC_LINK_LOST, BIN_FULL
    message: str
    severity: str = "major"  # critical | major | minor | maintenance
    line_stop: bool = False
    raised_utc: float = field(default_factory=time.time)
    cleared_utc: float | None = None
    acked_by: str | None = None
    acked_utc: float | None = None
    count: int = 1

    @property
    def active(self) -> bool:
        return self.cleared_utc is None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["active"] = self.active
        return d


class Alarms:
    """One alarm per code at a time; re-raising an active one only counts it."""

    def __init__(self, bus: Bus | None = None):
        self.bus = bus
        self._active: dict[str, Alarm] = {}
        self._history: list[Alarm] = []
        self._lock = threading.Lock()

    def raise_(
        self, code: str, message: str, severity: str = "major", line_stop: bool = False
    ) -> Alarm:
        with self._lock:
            a = self._active.get(code)
            if a is not None:
                a.count += 1
                a.message = message
                return a
            a = Alarm(code, message, severity, line_stop)
            self._active[code] = a
            self._history.append(a)
            del self._history[:-500]
        self._emit("raised", a)
        return a

    def clear(self, code: str) -> Alarm | None:
        with self._lock:
            a = self._active.pop(code, None)
            if a is None:
                return None
            a.cleared_utc = time.time()
        self._emit("cleared", a)
        return a

    def ack(self, code: str, user: str) -> Alarm | None:
        with self._lock:
            a = self._active.get(code)
            if a is None:
                return None
            a.acked_by, a.acked_utc = user, time.time()
        self._emit("acked", a)
        return a

    def is_active(self, code: str) -> bool:
        return code in self._active

    def active(self) -> list[Alarm]:
        with self._lock:
            return list(self._active.values())

    def history(self) -> list[Alarm]:
        with self._lock:
            return list(self._history)

    def _emit(self, event: str, a: Alarm) -> None:
        if self.bus is not None:
            self.bus.publish("alarm", {"event": event, **a.to_dict()})
