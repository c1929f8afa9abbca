"""The `ops:` section of the config. Small on purpose: every key has a safe default.

```yaml
ops:
  watchdog: {no_verdict_timeout_s: 10, no_frame_timeout_s: 30}
  maintenance:
    horizon_h: 72
    limits: {brightness: {low: 60}}
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WatchdogConfig(_Strict):
    """When the systemd watchdog stops being fed (and systemd restarts the service)."""

    enabled: bool = Field(True, description="send WATCHDOG=1 pings (READY=1 is always sent)")
    no_verdict_timeout_s: float = Field(
        10.0, gt=0, description="frames arrive but no inspected verdict for this long: hung"
    )
    no_frame_timeout_s: float | None = Field(
        30.0,
        gt=0,
        description="no frame for this long: camera gone (null for lines whose trigger stops)",
    )
    interval_s: float = Field(
        1.0, gt=0, description="check period without WATCHDOG_USEC (systemd sets it)"
    )


class TrendLimit(_Strict):
    """A limit on one trended measure: absolute, or relative to the commissioning baseline."""

    low: float | None = None
    high: float | None = None
    low_rel: float | None = Field(None, gt=0, description="fraction of the baseline")
    high_rel: float | None = Field(None, gt=0, description="multiple of the baseline")


def _default_limits() -> dict[str, TrendLimit]:
    return {
        "brightness": TrendLimit(low_rel=0.7, high_rel=1.3),  # lamp ageing, exposure drift
        "contrast": TrendLimit(low_rel=0.7),  # dirty window, fogging
        "sharpness": TrendLimit(low_rel=0.6),  # focus drift, dirt on the lens
        "inference_ms": TrendLimit(high_rel=2.0),  # thermal throttling, a competing load
        "gate_confirm_ms": TrendLimit(high_rel=2.0),  # a sticky reject valve
        "gate_actuations": TrendLimit(high=10_000_000),  # rated cycles of the reject valve
        "camera_temperature_c": TrendLimit(high=60.0),  # most industrial cameras: 50-65 °C max
        "camera_resend_ratio": TrendLimit(high=0.001),  # a link getting worse (cable, NIC)
        "camera_fps": TrendLimit(low_rel=0.9),  # the camera no longer keeps up
    }


class MaintenanceConfig(_Strict):
    enabled: bool = True
    sample_every: int = Field(10, ge=1, description="image measures on every Nth item")
    bucket_s: float = Field(
        600.0, ge=0, description="samples reduce to one median per bucket (0: every sample)"
    )
    window: int = Field(144, ge=5, le=2000, description="buckets in the trend window")
    min_points: int = Field(12, ge=3, description="buckets needed before predicting")
    min_tau: float = Field(
        0.3, ge=0, le=1, description="trend confidence (Kendall tau) needed to alarm"
    )
    horizon_h: float = Field(72.0, gt=0, description="alarm when a limit is this close")
    limits: dict[str, TrendLimit] = Field(default_factory=_default_limits)

    @model_validator(mode="after")
    def _fill_limits(self) -> MaintenanceConfig:
        self.limits = {**_default_limits(), **self.limits}
        return self


class CameraHealthConfig(_Strict):
    """Alarms on a GenICam camera's link and state, before the inspection suffers."""

    enabled: bool = True
    poll_s: float = Field(2.0, gt=0, description="how often the camera is read")
    max_resend_ratio: float = Field(
        0.001, ge=0, description="resent / received packets in a poll: the first sign of a bad link"
    )
    max_packet_loss_ratio: float = Field(0.0, ge=0, description="packets never received")
    max_lost_frames: int = Field(0, ge=0, description="frames lost, late or incomplete in a poll")
    max_temperature_c: float = Field(55.0, description="DeviceTemperature, where the camera has it")
    min_fps_ratio: float = Field(0.9, gt=0, le=1, description="of the trigger or frame rate")
    settings_tolerance: float = Field(
        0.01, ge=0, description="exposure or gain read back this far from the configured value"
    )


class OpsConfig(_Strict):
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    camera: CameraHealthConfig = Field(default_factory=CameraHealthConfig)
