"""A reject gate wired straight to the appliance through Linux GPIO (gpiod >= 2).

With no PLC in between the appliance times the gate itself: a REJECT pulses the reject
output when the item reaches the gate (its encoder slot's `t_gate`), or at once when the
gate time is unknown. There are no inputs to read back (no confirmation, bin or air
signals): use a PLC for those. Weakness to know: a dead appliance cannot reject, so wire
the gate fail-safe (`active_low` with an accept-when-energised valve) where possible.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any

from edge.line.plc.base import VERDICT_REJECT, PLCAdapter, PLCError, PLCInputs, Result


class GpioAdapter(PLCAdapter):
    name = "gpio"

    def __init__(self, cfg: Any, **_: Any):
        self.cfg = cfg
        self.request: Any = None
        self._heap: list[tuple[float, int]] = []
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def connect(self) -> None:
        try:
            import gpiod
            from gpiod.line import Direction, Value
        except ImportError as exc:
            raise PLCError("gpiod is not installed (pip install edge-inspect[gpio])") from exc
        self._values = (Value.ACTIVE, Value.INACTIVE)
        lines = [self.cfg.reject_line] + (
            [self.cfg.line_stop_line] if self.cfg.line_stop_line is not None else []
        )
        try:
            self.request = gpiod.request_lines(
                self.cfg.chip,
                consumer="edge-inspect",
                config={
                    tuple(lines): gpiod.LineSettings(
                        direction=Direction.OUTPUT,
                        active_low=self.cfg.active_low,
                        output_value=Value.INACTIVE,
                    )
                },
            )
        except OSError as exc:
            raise PLCError(f"cannot open {self.cfg.chip}: {exc}") from exc
        self._closed = False
        self._thread = threading.Thread(target=self._pulser, name="gpio-gate", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self.request is not None:
            try:
                self.request.release()
            except Exception:
                pass
        self.request = None

    def _set(self, line: int, on: bool) -> None:
        if self.request is None:
            raise PLCError("GPIO not open")
        try:
            self.request.set_value(line, self._values[0] if on else self._values[1])
        except OSError as exc:
            raise PLCError(f"GPIO line {line}: {exc}") from exc

    def write_result(self, r: Result) -> None:
        if self.request is None:
            raise PLCError("GPIO not open")
        if r.verdict != VERDICT_REJECT:
            return
        with self._cv:
            heapq.heappush(self._heap, (r.t_gate or time.monotonic(), r.seq))
            self._cv.notify()

    def _pulser(self) -> None:
        while True:
            with self._cv:
                if self._closed:
                    return
                now = time.monotonic()
                if not self._heap or self._heap[0][0] > now:
                    self._cv.wait(min((self._heap[0][0] - now) if self._heap else 0.5, 0.5))
                    continue
                heapq.heappop(self._heap)
            try:
                self._set(self.cfg.reject_line, True)
                time.sleep(self.cfg.pulse_ms / 1000.0)
                self._set(self.cfg.reject_line, False)
            except PLCError:
                return

    def heartbeat(self, n: int) -> None:
        if self.request is None:
            raise PLCError("GPIO not open")

    def set_line_stop(self, on: bool) -> None:
        if self.cfg.line_stop_line is not None:
            self._set(self.cfg.line_stop_line, on)

    def read_inputs(self) -> PLCInputs:
        if self.request is None:
            raise PLCError("GPIO not open")
        return PLCInputs()
