"""The `plc:` section: one config class per PLC adapter, each naming its implementation.

Kept beside the adapters it configures, and light (pydantic only): `edge.config` puts the
classes in the PLC union, and `edge.line.plc.base.open_adapter` imports the chosen
adapter's module (`impl`) only when the line starts with it, so a config for a GPIO
board validates on a workstation without the GPIO library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoPLC(_Strict):
    """No PLC: the line runs without a reject gate (a bench, a demo)."""

    type: Literal["none"] = "none"
    impl: ClassVar[str | None] = None  # nothing to open


class SimPLC(_Strict):
    """A simulated PLC: a real Modbus TCP server with a conveyor model, started in-process."""

    type: Literal["sim"] = "sim"
    impl: ClassVar[str] = "edge.line.plc.modbus:ModbusAdapter"  # the simulated PLC speaks Modbus
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    unit: int = 1
    timeout_s: float = 0.5
    heartbeat_s: float = 0.5
    poll_s: float = Field(0.02, gt=0, description="input poll period (link loss detection)")
    bin_capacity: int = Field(0, ge=0, description="rejects until the bin reports full (0: never)")


class ModbusPLC(_Strict):
    type: Literal["modbus"] = "modbus"
    impl: ClassVar[str] = "edge.line.plc.modbus:ModbusAdapter"
    host: str = "127.0.0.1"
    port: int = 502
    unit: int = 1
    timeout_s: float = 0.5
    heartbeat_s: float = 0.5
    poll_s: float = Field(0.02, gt=0, description="input poll period (link loss detection)")
    password_file: Path | None = None


class OpcUaPLC(_Strict):
    type: Literal["opcua"] = "opcua"
    impl: ClassVar[str] = "edge.line.plc.opcua:OpcUaAdapter"
    url: str = "opc.tcp://127.0.0.1:4840"
    namespace: str = "urn:edge-inspect"
    username: str | None = None
    password_file: Path | None = None
    timeout_s: float = 2.0
    heartbeat_s: float = 0.5
    poll_s: float = Field(0.05, gt=0)


class GpioPLC(_Strict):
    type: Literal["gpio"] = "gpio"
    impl: ClassVar[str] = "edge.line.plc.gpio:GpioAdapter"
    chip: str = "/dev/gpiochip0"
    reject_line: int = 17
    pulse_ms: float = 50.0
    active_low: bool = False
    line_stop_line: int | None = None
    heartbeat_s: float = 0.5
    poll_s: float = Field(0.05, gt=0)


PLCConfig = Annotated[
    Union[NoPLC, SimPLC, ModbusPLC, OpcUaPLC, GpioPLC], Field(discriminator="type")
]
