"""The PLC adapter interface and its registry by config `type`.

Every adapter carries the same few signals, whatever the wire (Modbus, OPC UA, GPIO):
the result of one item (sequence, verdict, reason number, encoder count at trigger),
written BEFORE the accept/reject strobe so the PLC never latches a stale result; a
heartbeat; a line-stop request; and the inputs read back (reject confirmation,
bin full, air pressure low). Any failure raises PLCError: the caller decides what a
lost link means (fail-safe rejects and a line-stop alarm), never the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge import plugins
from edge.line.plc.config import PLCConfig

#: Verdict codes written to the PLC. 0 never means anything: a cleared register is no result.
VERDICT_ACCEPT = 1
VERDICT_REJECT = 2

#: adapter classes by config `type`, as each config class names its own (`impl`)
ADAPTERS: dict[str, str] = plugins.table(PLCConfig)


class PLCError(Exception):
    """The PLC did not take a write or answer a read (link down, Modbus exception, timeout)."""


class ResultRefused(PLCError):
    """The PLC answered but refused a result: its item had already passed the gate.

    The link is fine; the item was rejected by the gate's default, and is reported so.
    """


#: Modbus exception code a PLC answers a late strobe with (NEGATIVE ACKNOWLEDGE).
LATE_RESULT_EXCEPTION = 0x07


@dataclass(slots=True)
class PLCInputs:
    confirmed_seq: int = 0  # item sequence of the last reject the gate confirmed
    confirmed_count: int = 0  # confirmed rejects (wraps at 65536)
    bin_full: bool = False
    air_low: bool = False
    plc_heartbeat: int = 0
    received: int = 0  # results the PLC latched (wraps at 65536)


@dataclass(slots=True)
class Result:
    seq: int
    encoder: int
    verdict: int  # VERDICT_ACCEPT | VERDICT_REJECT
    reason: int  # edge.domain.REASON_NUMBERS, 0 for none
    t_gate: float | None = None  # monotonic time the item reaches the gate, when known


class PLCAdapter:
    """Base class. Blocking calls, one caller at a time (the component serialises them)."""

    name = "plc"

    def connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def write_result(self, r: Result) -> None:
        """Result registers first, then the accept or reject strobe."""
        raise NotImplementedError

    def heartbeat(self, n: int) -> None:
        raise NotImplementedError

    def set_line_stop(self, on: bool) -> None:
        raise NotImplementedError

    def read_inputs(self) -> PLCInputs:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"type": self.name}


def u32_words(v: int) -> list[int]:
    v &= 0xFFFFFFFF
    return [v >> 16, v & 0xFFFF]


def words_u32(hi: int, lo: int) -> int:
    return ((hi & 0xFFFF) << 16) | (lo & 0xFFFF)


def open_adapter(cfg: Any, **kw: Any) -> PLCAdapter:
    cls = plugins.load("plc", ADAPTERS, cfg.type)
    return cls(cfg, **kw)
