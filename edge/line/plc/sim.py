"""A simulated PLC: a real Modbus TCP server (pymodbus) in front of a conveyor model.

The conveyor is the physical truth the tests check the appliance against:

- the photo-eye registers each product with the encoder count of its trigger;
- the product travels `gate_distance_mm` to the reject gate at the belt speed;
- the gate's default is REJECT: a product is let through only if an ACCEPT for its
  encoder count was latched before it reached the gate. A late, lost or missing
  verdict is physically rejected;
- each rejection is confirmed on the input registers (unless air pressure is low or
  confirmation is switched off for a test), and bin-full / air-pressure-low inputs can
  be set by tests.

The register map is the one in `edge.line.plc.modbus`. The data store is our own
context object, so the map is addressed exactly as a client addresses it (from 0).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edge.config import EncoderConfig
from edge.line.gate import BeltSpeed
from edge.line.plc import modbus as m
from edge.line.plc.base import VERDICT_ACCEPT, u32_words, words_u32

log = logging.getLogger(__name__)


@dataclass
class Product:
    encoder: int
    t_trigger: float
    t_gate: float
    result: tuple[int, int, int, float] | None = None  # seq, verdict, reason, t_received
    outcome: str | None = None  # "accepted" | "rejected"


@dataclass
class ConveyorCounts:
    products: int = 0
    accepted: int = 0
    rejected: int = 0
    confirmed: int = 0
    late_results: int = 0  # a result latched after its product had passed the gate
    unmatched_results: int = 0  # a result for no known product
    rejected_without_result: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class Conveyor:
    """Moves products from the photo-eye to the gate; the gate rejects unless told to accept."""

    #: products past the gate kept for inspection by tests and benches (bounded: a soak runs for hours)
    KEEP_PAST_GATE = 5000

    def __init__(self, enc: EncoderConfig, belt_mm_s: float | None = None, bin_capacity: int = 0):
        self.enc = enc
        self._past_gate: deque[int] = deque()
        self.gate_counts = enc.gate_distance_mm * enc.counts_per_mm
        self.speed = BeltSpeed(belt_mm_s * enc.counts_per_mm if belt_mm_s else None)
        self.bin_capacity = bin_capacity
        self.products: dict[int, Product] = {}  # by encoder count at trigger
        self.accepts_received: set[int] = set()  # item seqs whose ACCEPT the PLC latched
        self.counts = ConveyorCounts()
        self.confirm_rejects = True  # tests switch it off: a gate that fires but never confirms
        self.bin_full = False
        self.air_low = False
        self.confirmed_seq = 0
        self.bin_count = 0
        self._heap: list[tuple[float, int]] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sim-conveyor", daemon=True)
        self._thread.start()

    def photo_eye(self, encoder: int, t_trigger: float) -> None:
        """A product passed the camera's photo-eye (independent of any PLC link)."""
        self.speed.observe(t_trigger, encoder)
        v = self.speed.counts_per_s() or self.enc.pitch_mm * self.enc.counts_per_mm  # 1 pitch/s
        p = Product(encoder, t_trigger, t_trigger + self.gate_counts / v)
        with self._cv:
            self.products[encoder] = p
            self.counts.products += 1
            heapq.heappush(self._heap, (p.t_gate, encoder))
            self._cv.notify()

    def latch(self, seq: int, encoder: int, verdict: int, reason: int) -> bool:
        """Take a result for the product triggered at `encoder`; False if it came too late."""
        now = time.monotonic()
        with self._cv:
            p = self.products.get(encoder)
            if p is None:
                self.counts.unmatched_results += 1
                return True
            if p.outcome is not None or now > p.t_gate:
                self.counts.late_results += 1
                return False
            p.result = (seq, verdict, reason, now)
            if verdict == VERDICT_ACCEPT:
                self.accepts_received.add(seq)
            return True

    def outcome(self, encoder: int) -> str | None:
        with self._cv:
            p = self.products.get(encoder)
            return p.outcome if p else None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until every product has reached the gate."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cv:
                if not self._heap:
                    return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(2)

    def _run(self) -> None:
        while True:
            with self._cv:
                if self._stop:
                    return
                now = time.monotonic()
                if not self._heap or self._heap[0][0] > now:
                    wait = (self._heap[0][0] - now) if self._heap else 0.5
                    self._cv.wait(min(max(wait, 0.0005), 0.5))
                    continue
                _, enc = heapq.heappop(self._heap)
                p = self.products[enc]
                self._at_gate(p)
                self._past_gate.append(enc)
                if len(self._past_gate) > self.KEEP_PAST_GATE:
                    old = self.products.pop(self._past_gate.popleft(), None)
                    if old is not None and old.result is not None:
                        self.accepts_received.discard(old.result[0])

    def _at_gate(self, p: Product) -> None:
        accept = p.result is not None and p.result[1] == VERDICT_ACCEPT
        if accept:
            p.outcome = "accepted"
            self.counts.accepted += 1
            return
        p.outcome = "rejected"
        self.counts.rejected += 1
        if p.result is None:
            self.counts.rejected_without_result += 1
        self.bin_count += 1
        if self.bin_capacity and self.bin_count >= self.bin_capacity:
            self.bin_full = True
        if self.confirm_rejects and not self.air_low:
            self.counts.confirmed += 1
            if p.result is not None:
                self.confirmed_seq = max(self.confirmed_seq, p.result[0])


class _Context:
    """Our own data store for the pymodbus server: the register map of `edge.line.plc.modbus`."""

    def __init__(self, plc: SimulatedPLC):
        self.plc = plc
        self.old_simulator = True  # pymodbus: use this object as the data store as it is
        self.simdevices: list[Any] = []

    def device_ids(self) -> list[int]:
        return [0]

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1):
        return self.plc.read(func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values):
        return self.plc.write(func_code, address, list(values))


def _context_class() -> type:
    from pymodbus.datastore import ModbusServerContext

    class SimContext(_Context, ModbusServerContext):  # isinstance check in the server
        def __init__(self, plc: SimulatedPLC):
            _Context.__init__(self, plc)

    return SimContext


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class SimulatedPLC:
    """The Modbus server plus conveyor. `start()` / `kill()` the server; the belt keeps moving."""

    def __init__(
        self,
        enc: EncoderConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        belt_mm_s: float | None = None,
        bin_capacity: int = 0,
    ):
        self.host = host
        self.port = port or free_port(host)
        self.conveyor = Conveyor(enc, belt_mm_s, bin_capacity)
        self.hr = [0] * m.HR_COUNT
        self.coils = [False] * m.CO_COUNT
        self.latched = 0
        self.writes: deque[tuple[int, int]] = deque(maxlen=1000)  # (function code, address)
        self.line_stop_events: list[tuple[float, bool]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_evt: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._t0 = time.monotonic()

    # ------------------------------------------------------------- test handles

    @property
    def line_stop(self) -> bool:
        return self.coils[m.CO_LINE_STOP]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------- data store

    def _inputs(self) -> tuple[list[bool], list[int]]:
        c = self.conveyor
        di = [c.bin_full, c.air_low]
        hb = int((time.monotonic() - self._t0) * 10) & 0xFFFF
        ir = [*u32_words(c.confirmed_seq), c.counts.confirmed & 0xFFFF, hb, self.latched & 0xFFFF]
        return di, ir

    def read(self, fc: int, address: int, count: int):
        from pymodbus.constants import ExcCodes

        with self._lock:
            if fc == 1:
                table: list[Any] = self.coils
            elif fc == 2:
                table = self._inputs()[0]
            elif fc in (3, 6, 16):
                table = self.hr
            elif fc == 4:
                table = self._inputs()[1]
            elif fc in (5, 15):
                table = self.coils
            else:
                return ExcCodes.ILLEGAL_FUNCTION
            if address < 0 or address + count > len(table):
                return ExcCodes.ILLEGAL_ADDRESS
            return list(table[address : address + count])

    def write(self, fc: int, address: int, values: list[Any]):
        from pymodbus.constants import ExcCodes

        with self._lock:
            self.writes.append((fc, address))
            if fc in (5, 15):
                if address < 0 or address + len(values) > m.CO_COUNT:
                    return ExcCodes.ILLEGAL_ADDRESS
                for i, v in enumerate(values):
                    if not self._set_coil(address + i, bool(v)):
                        return ExcCodes.NEGATIVE_ACKNOWLEDGE  # too late: the gate rejected it
                return None
            if fc in (6, 16):
                if address < 0 or address + len(values) > m.HR_COUNT:
                    return ExcCodes.ILLEGAL_ADDRESS
                for i, v in enumerate(values):
                    self.hr[address + i] = int(v) & 0xFFFF
                return None
            return ExcCodes.ILLEGAL_FUNCTION

    def _set_coil(self, addr: int, on: bool) -> bool:
        if addr in (m.CO_ACCEPT, m.CO_REJECT):
            self.coils[addr] = False
            if on:  # rising strobe: latch the result registers, then clear the strobe
                r = self.hr[m.HR_RESULT : m.HR_RESULT + 6]
                seq, enc = words_u32(r[0], r[1]), words_u32(r[2], r[3])
                verdict = r[4] if addr == m.CO_ACCEPT else 2  # a REJECT strobe never accepts
                self.latched += 1
                return self.conveyor.latch(seq, enc, verdict, r[5])
            return True
        if addr == m.CO_LINE_STOP and self.coils[addr] != on:
            self.line_stop_events.append((time.monotonic(), on))
        self.coils[addr] = on
        return True

    # ------------------------------------------------------------- server

    def start(self, timeout: float = 10.0) -> SimulatedPLC:
        if self.running:
            return self
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(target=self._serve, name="sim-plc", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"simulated PLC did not start on {self.host}:{self.port}")
        if self._error is not None:
            raise RuntimeError(f"simulated PLC failed to start: {self._error}")
        return self

    def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer

        loop = asyncio.new_event_loop()
        self._loop = loop

        async def main() -> None:
            self._stop_evt = asyncio.Event()
            try:
                server = ModbusTcpServer(_context_class()(self), address=(self.host, self.port))
                await server.serve_forever(background=True)
            except BaseException as exc:
                self._error = exc
                self._started.set()
                return
            self._started.set()
            await self._stop_evt.wait()
            await server.shutdown()
            await asyncio.sleep(0)

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def kill(self) -> None:
        """Stop the Modbus server (the PLC stops answering); the conveyor keeps running."""
        loop, evt, t = self._loop, self._stop_evt, self._thread
        if loop is None or evt is None or t is None or not t.is_alive():
            return
        loop.call_soon_threadsafe(evt.set)
        t.join(5)

    def close(self) -> None:
        self.kill()
        self.conveyor.close()
