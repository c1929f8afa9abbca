"""Modbus TCP adapter (pymodbus), and the register map the simulated PLC serves.

Addresses are protocol (PDU) addresses, starting at 0:

| table             | addr | meaning                                               |
|-------------------|------|-------------------------------------------------------|
| holding registers | 0    | appliance heartbeat counter (the PLC watches it move) |
|                   | 1-2  | item sequence (u32, high word first)                  |
|                   | 3-4  | encoder count at the item's trigger (u32)             |
|                   | 5    | verdict: 1 accept, 2 reject                           |
|                   | 6    | reason code number (edge.domain.REASON_NUMBERS)       |
| coils             | 0    | ACCEPT strobe: PLC latches HR1-6, clears the coil;    |
|                   |      | a strobe for an item past the gate is answered with   |
|                   |      | exception 07 (negative acknowledge): not latched      |
|                   | 1    | REJECT strobe: idem                                   |
|                   | 2    | line-stop request                                     |
| discrete inputs   | 0    | reject bin full                                       |
|                   | 1    | air pressure low                                      |
| input registers   | 0-1  | item sequence of the last confirmed reject (u32)      |
|                   | 2    | confirmed rejects (u16, wraps)                        |
|                   | 3    | PLC heartbeat counter                                 |
|                   | 4    | results latched (u16, wraps)                          |

The result registers go out in one write, and only then the strobe: the PLC never
latches a half-written or stale result.
"""

from __future__ import annotations

import logging
from typing import Any

from edge.line.plc.base import (
    LATE_RESULT_EXCEPTION,
    VERDICT_ACCEPT,
    PLCAdapter,
    PLCError,
    PLCInputs,
    Result,
    ResultRefused,
    u32_words,
    words_u32,
)

log = logging.getLogger(__name__)
# pymodbus logs every lost connection with a frame dump; we raise PLCError with the cause instead
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

HR_HEARTBEAT = 0
HR_RESULT = 1  # 6 words: seq(2), encoder(2), verdict, reason
CO_ACCEPT = 0
CO_REJECT = 1
CO_LINE_STOP = 2
DI_BIN_FULL = 0
DI_AIR_LOW = 1
IR_CONFIRMED_SEQ = 0
IR_CONFIRMED_COUNT = 2
IR_PLC_HEARTBEAT = 3
IR_RECEIVED = 4
HR_COUNT, CO_COUNT, DI_COUNT, IR_COUNT = 7, 3, 2, 5


class ModbusAdapter(PLCAdapter):
    name = "modbus"

    def __init__(self, cfg: Any, *, host: str | None = None, port: int | None = None):
        from pymodbus.client import ModbusTcpClient

        self.cfg = cfg
        self.host = host or cfg.host
        self.port = port or cfg.port
        self.unit = getattr(cfg, "unit", 1)
        self.client = ModbusTcpClient(
            self.host,
            port=self.port,
            timeout=cfg.timeout_s,
            retries=0,
            reconnect_delay=0,
            reconnect_delay_max=0,
        )

    def connect(self) -> None:
        self.close()  # a socket left from a lost link would look connected
        try:
            ok = self.client.connect()
        except Exception as exc:
            raise PLCError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        if not ok:
            raise PLCError(f"cannot connect to {self.host}:{self.port}")

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass

    def _call(self, what: str, fn: Any, *a: Any, **kw: Any) -> Any:
        try:
            rr = fn(*a, device_id=self.unit, **kw)
        except Exception as exc:  # ConnectionException, ModbusIOException, socket errors
            raise PLCError(f"{what}: {exc}") from exc
        if rr.isError():
            raise PLCError(f"{what}: PLC answered with {rr}")
        return rr

    def write_result(self, r: Result) -> None:
        words = [*u32_words(r.seq), *u32_words(r.encoder), r.verdict, r.reason]
        self._call("write result registers", self.client.write_registers, HR_RESULT, words)
        coil = CO_ACCEPT if r.verdict == VERDICT_ACCEPT else CO_REJECT
        try:
            rr = self.client.write_coil(coil, True, device_id=self.unit)
        except Exception as exc:
            raise PLCError(f"write strobe: {exc}") from exc
        if rr.isError():
            if getattr(rr, "exception_code", None) == LATE_RESULT_EXCEPTION:
                raise ResultRefused(f"item seq {r.seq}: the PLC refused the result (past the gate)")
            raise PLCError(f"write strobe: PLC answered with {rr}")

    def heartbeat(self, n: int) -> None:
        self._call("write heartbeat", self.client.write_register, HR_HEARTBEAT, n & 0xFFFF)

    def set_line_stop(self, on: bool) -> None:
        self._call("write line-stop", self.client.write_coil, CO_LINE_STOP, bool(on))

    def read_inputs(self) -> PLCInputs:
        di = self._call("read inputs", self.client.read_discrete_inputs, 0, count=DI_COUNT)
        ir = self._call("read input registers", self.client.read_input_registers, 0, count=IR_COUNT)
        regs = ir.registers
        return PLCInputs(
            confirmed_seq=words_u32(regs[0], regs[1]),
            confirmed_count=regs[IR_CONFIRMED_COUNT],
            bin_full=bool(di.bits[DI_BIN_FULL]),
            air_low=bool(di.bits[DI_AIR_LOW]),
            plc_heartbeat=regs[IR_PLC_HEARTBEAT],
            received=regs[IR_RECEIVED],
        )

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, "host": self.host, "port": self.port, "unit": self.unit}
