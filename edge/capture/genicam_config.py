"""The `source: {type: genicam}` section: an industrial camera (GigE Vision, USB3 Vision).

Kept beside the source it configures; `edge.config` puts it in the source union. Every
value that the camera itself checks (pixel formats it offers, exposure bounds, trigger
sources) is checked again when the camera is opened, with the camera's own list in the
error message.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: GenICam pixel formats the line can turn into an 8-bit BGR image (what the tools take).
PIXEL_FORMATS = (
    "Mono8",
    "Mono10",
    "Mono12",
    "Mono16",
    "RGB8",
    "BGR8",
    "BayerRG8",
    "BayerBG8",
    "BayerGR8",
    "BayerGB8",
)


class GenICamSource(BaseModel):
    """A GenICam camera through Aravis: opened by serial, user id, IP address or device id.

    `trigger` says who decides when a frame is taken:
    - `software`: the appliance is the line's trigger clock (`rate_per_min`); it fires the
      camera's TriggerSoftware and registers every item at its trigger, so a frame that does
      not come is a REJECT MISSING_VIEW for that item, never a missing item.
    - `line`: the encoder or photo eye pulses the camera's input line (`trigger_source`,
      `trigger_activation`); a gap in the frame ids is a lost frame, rejected likewise.
    - `free`: the camera runs at `rate_per_min` frames a minute (set-up, not production).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["genicam"] = "genicam"
    impl: ClassVar[str] = "edge.capture.genicam:GenICamCapture"
    serial: str | None = Field(None, description="DeviceSerialNumber, as `edge camera list` shows")
    user_id: str | None = Field(None, description="DeviceUserID written into the camera")
    address: str | None = Field(None, description="IP address of a GigE Vision camera")
    device_id: str | None = Field(None, description="Aravis device id (vendor-model-serial)")
    pixel_format: str = "Mono8"
    exposure_us: float | None = Field(None, gt=0, description="None: leave the camera's value")
    gain: float | None = Field(None, ge=0, description="None: leave the camera's value")
    trigger: Literal["software", "line", "free"] = "software"
    trigger_source: str = Field("Line0", description="input line for `trigger: line`")
    trigger_activation: str = Field(
        "RisingEdge", description="RisingEdge | FallingEdge | AnyEdge | LevelHigh | LevelLow"
    )
    rate_per_min: float = Field(
        600.0, gt=0, description="software trigger clock, or the free-running frame rate"
    )
    items: int | None = Field(None, ge=0, description="stop after N triggers (None: run forever)")
    frame_timeout_ms: float = Field(
        80.0,
        gt=0,
        description="a frame later than this after its trigger is missing (keep it below the "
        "pitch, so the alarm comes within one pitch)",
    )
    lost_after: int = Field(
        3, ge=1, description="consecutive missing frames before the camera is reopened"
    )
    reconnect_backoff_s: tuple[float, float] = (0.5, 5.0)
    buffers: int = Field(16, ge=2, le=256, description="frame buffers queued to the stream")
    packet_size: int | None = Field(
        None,
        ge=576,
        le=16384,
        description="GevSCPSPacketSize; None: negotiated (jumbo if the path allows)",
    )
    packet_delay_ns: int | None = Field(
        None, ge=0, description="GevSCPD inter-packet delay (several cameras on one link)"
    )
    socket_buffer_mb: float | None = Field(
        None, gt=0, description="receive socket buffer for the stream (None: Aravis's automatic)"
    )
    packet_resend: bool = True
    name: str | None = Field(None, description="camera name in records and metrics")

    @model_validator(mode="after")
    def _check(self) -> GenICamSource:
        chosen = [k for k in ("serial", "user_id", "address", "device_id") if getattr(self, k)]
        if len(chosen) > 1:
            raise ValueError(f"give one of serial, user_id, address, device_id (got {chosen})")
        if self.pixel_format not in PIXEL_FORMATS:
            raise ValueError(
                f"pixel_format {self.pixel_format!r} is not supported (supported: "
                f"{', '.join(PIXEL_FORMATS)})"
            )
        lo, hi = self.reconnect_backoff_s
        if not 0 < lo <= hi:
            raise ValueError("reconnect_backoff_s must be (low, high) with 0 < low <= high")
        return self

    def selector(self) -> str:
        """How the camera is named in messages: the one key that picks it."""
        for k in ("serial", "user_id", "address", "device_id"):
            v = getattr(self, k)
            if v:
                return f"{k}={v}"
        return "the first camera found"

    @property
    def label(self) -> str:
        return (
            self.name or self.serial or self.user_id or self.address or self.device_id or "camera"
        )
