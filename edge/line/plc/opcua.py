"""OPC UA adapter (asyncua, sync wrapper): the Modbus map's signals as nodes.

Nodes are string ids in the configured namespace, under `Edge.`:

| node                        | type    | direction  |
|-----------------------------|---------|------------|
| Edge.Heartbeat              | UInt16  | appliance  |
| Edge.Result.Seq             | UInt32  | appliance  |
| Edge.Result.Encoder         | UInt32  | appliance  |
| Edge.Result.Verdict         | UInt16  | appliance  (1 accept, 2 reject) |
| Edge.Result.Reason          | UInt16  | appliance  |
| Edge.Result.Accept / Reject | Boolean | appliance  (strobes, written last) |
| Edge.LineStop               | Boolean | appliance  |
| Edge.Gate.ConfirmedSeq      | UInt32  | PLC        |
| Edge.Gate.ConfirmedCount    | UInt16  | PLC        |
| Edge.Gate.BinFull           | Boolean | PLC        |
| Edge.Gate.AirLow            | Boolean | PLC        |
"""

from __future__ import annotations

import contextlib
from typing import Any

from edge.line.plc.base import VERDICT_ACCEPT, PLCAdapter, PLCError, PLCInputs, Result

NODES = {
    "heartbeat": ("Edge.Heartbeat", "UInt16"),
    "seq": ("Edge.Result.Seq", "UInt32"),
    "encoder": ("Edge.Result.Encoder", "UInt32"),
    "verdict": ("Edge.Result.Verdict", "UInt16"),
    "reason": ("Edge.Result.Reason", "UInt16"),
    "accept": ("Edge.Result.Accept", "Boolean"),
    "reject": ("Edge.Result.Reject", "Boolean"),
    "line_stop": ("Edge.LineStop", "Boolean"),
    "confirmed_seq": ("Edge.Gate.ConfirmedSeq", "UInt32"),
    "confirmed_count": ("Edge.Gate.ConfirmedCount", "UInt16"),
    "bin_full": ("Edge.Gate.BinFull", "Boolean"),
    "air_low": ("Edge.Gate.AirLow", "Boolean"),
}


class OpcUaAdapter(PLCAdapter):
    name = "opcua"

    def __init__(self, cfg: Any, **_: Any):
        self.cfg = cfg
        self.client: Any = None
        self.nodes: dict[str, Any] = {}

    def connect(self) -> None:
        from asyncua.sync import Client

        from edge.publish.secrets import read_secret

        self.close()
        c = None
        try:
            c = Client(self.cfg.url, timeout=self.cfg.timeout_s)
            if self.cfg.username:
                c.set_user(self.cfg.username)
                if self.cfg.password_file:
                    c.set_password(read_secret(self.cfg.password_file))
            c.connect()
            ns = c.get_namespace_index(self.cfg.namespace)
            self.nodes = {k: c.get_node(f"ns={ns};s={nid}") for k, (nid, _) in NODES.items()}
            self.client = c
        except Exception as exc:
            if c is not None:  # stops its event-loop thread, which would keep the process alive
                with contextlib.suppress(Exception):
                    c.disconnect()
            raise PLCError(f"cannot connect to {self.cfg.url}: {exc}") from exc

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.disconnect()
            except Exception:
                pass
        self.client = None

    def _write(self, key: str, value: Any) -> None:
        from asyncua import ua

        if self.client is None:
            raise PLCError("not connected")
        vtype = getattr(ua.VariantType, NODES[key][1])
        try:
            self.nodes[key].write_value(ua.DataValue(ua.Variant(value, vtype)))
        except Exception as exc:
            raise PLCError(f"write {NODES[key][0]}: {exc}") from exc

    def _read(self, key: str) -> Any:
        if self.client is None:
            raise PLCError("not connected")
        try:
            return self.nodes[key].read_value()
        except Exception as exc:
            raise PLCError(f"read {NODES[key][0]}: {exc}") from exc

    def write_result(self, r: Result) -> None:
        for key, v in (
            ("seq", r.seq),
            ("encoder", r.encoder),
            ("verdict", r.verdict),
            ("reason", r.reason),
        ):
            self._write(key, v)
        self._write("accept" if r.verdict == VERDICT_ACCEPT else "reject", True)

    def heartbeat(self, n: int) -> None:
        self._write("heartbeat", n & 0xFFFF)

    def set_line_stop(self, on: bool) -> None:
        self._write("line_stop", bool(on))

    def read_inputs(self) -> PLCInputs:
        return PLCInputs(
            confirmed_seq=int(self._read("confirmed_seq")),
            confirmed_count=int(self._read("confirmed_count")),
            bin_full=bool(self._read("bin_full")),
            air_low=bool(self._read("air_low")),
        )

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, "url": self.cfg.url}
