"""Camera health: frame rate, lost frames, packet resends and loss, temperature, settings drift.

A camera link degrades in steps: packets are lost and resent (frames still complete),
then frames come late or incomplete (items reject), then the camera is gone. This
component polls the source every `poll_s` and alarms at the first step, so the
technician hears about a failing cable, an overloaded NIC or a camera warming up
before the inspection itself suffers. It also feeds the maintenance trends (temperature,
resend ratio, frame rate: predicted hours to their limits) and exports Prometheus
gauges on the appliance's metrics registry. Brightness drift is trended per camera by
the maintenance component from the images themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.ops.config import CameraHealthConfig
from edge.ops.metrics import Metrics, component

log = logging.getLogger(__name__)

#: source counters exported as Prometheus counters (name, help)
_COUNTERS = {
    "frames": "frames delivered and matched to an item",
    "missing": "items rejected because their frame did not come",
    "incomplete": "frames that came with packets missing",
    "late": "frames that came after their item was rejected (discarded)",
    "unmatched": "frames no trigger asked for (discarded)",
    "dropped": "frames lost on the way (frame id gaps)",
    "reconnects": "times the camera was reopened",
    "trigger_errors": "software trigger commands that failed",
    "resent_packets": "stream packets the camera sent again on request",
    "missing_packets": "stream packets never received",
    "resend_requests": "packet resend requests sent to the camera",
}


class CameraHealth:
    """The component: polls the camera source, raises and clears camera alarms."""

    name = "camera"

    def __init__(self, app: Any, cfg: CameraHealthConfig):
        self.app = app
        self.pipeline = getattr(app, "pipeline", app)
        self.source = self.pipeline.source
        self.cfg = cfg
        self.alarms = self.pipeline.alarms
        self.last: dict[str, Any] = {}
        self._prev: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        Metrics.of(app).registry.register(_CameraCollector(self))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="camera-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def status(self) -> dict[str, Any]:
        with self._lock:
            last = dict(self.last)
        return {"up": bool(last.get("connected")), **last}

    # ------------------------------------------------------------------ polling

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.poll_s):
            try:
                self.poll()
            except Exception:
                log.exception("camera health poll failed")

    def poll(self) -> dict[str, Any]:
        """One look at the camera: read it, compare with the last look, judge."""
        device = self.source.poll_device() if hasattr(self.source, "poll_device") else {}
        h = dict(self.source.health())
        h["device"] = device
        h["t"] = time.monotonic()
        with self._lock:
            prev, self._prev, self.last = self._prev, h, h
        if prev is not None:
            self._judge(prev, h)
        return h

    def _alarm(self, code: str, on: bool, message: str, severity: str = "major") -> None:
        if on:
            self.alarms.raise_(code, message, severity, False)
        elif self.alarms.is_active(code):
            self.alarms.clear(code)

    def _judge(self, prev: dict[str, Any], h: dict[str, Any]) -> None:
        c, cam = self.cfg, h.get("camera", "camera")
        d = {k: h.get(k, 0) - prev.get(k, 0) for k in _COUNTERS}
        received = max(1, h.get("received_packets", 0) - prev.get("received_packets", 0))
        resend_ratio = d["resent_packets"] / received
        loss_ratio = d["missing_packets"] / received
        self._alarm(
            "CAMERA_RESENDS",
            resend_ratio > c.max_resend_ratio or loss_ratio > c.max_packet_loss_ratio,
            f"camera {cam}: {d['resent_packets']} packets resent and {d['missing_packets']} "
            f"lost of {received} in {c.poll_s:g} s: check the cable, the NIC's receive "
            "buffers, the packet size and the inter-packet delay",
        )
        lost = d["missing"] + d["incomplete"] + d["dropped"] + d["late"]
        self._alarm(
            "CAMERA_FRAMES_LOST",
            lost > c.max_lost_frames,
            f"camera {cam}: {lost} frames lost, late or incomplete in {c.poll_s:g} s",
        )
        dev = h.get("device") or {}
        temp = dev.get("temperature_c")
        if temp is not None:
            self._alarm(
                "CAMERA_TEMPERATURE",
                temp >= c.max_temperature_c,
                f"camera {cam} at {temp:.1f} °C (limit {c.max_temperature_c:g} °C): "
                "check its cooling before the image noise rises",
                "maintenance",
            )
        drift = self._settings_drift(dev)
        self._alarm(
            "CAMERA_SETTINGS_DRIFT",
            bool(drift),
            f"camera {cam} is not at its configured {', '.join(drift)}: images will drift",
        )
        expected = self._expected_fps()
        if expected and h.get("connected") and prev.get("connected"):
            fps = float(h.get("fps") or 0.0)
            self._alarm(
                "CAMERA_FPS_LOW",
                fps < c.min_fps_ratio * expected,
                f"camera {cam} delivers {fps:.1f} frames/s of {expected:.1f} expected",
            )
        self._trend(cam, h, resend_ratio, temp)

    def _expected_fps(self) -> float | None:
        scfg = getattr(self.source, "cfg", None)
        if getattr(scfg, "trigger", None) in ("software", "free"):
            return float(scfg.rate_per_min) / 60.0
        return None  # a hardware trigger follows the line: no rate to expect

    def _settings_drift(self, dev: dict[str, Any]) -> list[str]:
        scfg = getattr(self.source, "cfg", None)
        out = []
        for key, label in (("exposure_us", "exposure"), ("gain", "gain")):
            want, have = getattr(scfg, key, None), dev.get(key)
            if want is None or have is None:
                continue
            if abs(have - want) > self.cfg.settings_tolerance * max(abs(want), 1e-9):
                out.append(f"{label} ({have:g} instead of {want:g})")
        return out

    def _trend(self, cam: str, h: dict[str, Any], resend_ratio: float, temp: Any) -> None:
        m = component(self.app, "maintenance")
        if m is None or not hasattr(m, "add"):
            return
        t = h["t"]
        if temp is not None:
            m.add("camera_temperature_c", cam, t, float(temp))
        m.add("camera_resend_ratio", cam, t, resend_ratio)
        if h.get("connected"):
            m.add("camera_fps", cam, t, float(h.get("fps") or 0.0))


class _CameraCollector(Collector):
    def __init__(self, health: CameraHealth):
        self.h = health

    def collect(self) -> Iterator[Any]:
        st = self.h.last or dict(self.h.source.health())
        cam = str(st.get("camera", "camera"))
        for key, text in _COUNTERS.items():
            fam = CounterMetricFamily(f"edge_camera_{key}", text, labels=["camera"])
            fam.add_metric([cam], float(st.get(key, 0) or 0))
            yield fam
        gauges = {
            "connected": (
                "1 while the camera is open and streaming",
                float(bool(st.get("connected"))),
            ),
            "frame_rate": ("frames per second the camera delivered (10 s)", st.get("fps")),
        }
        dev = st.get("device") or {}
        gauges["temperature_celsius"] = (
            "DeviceTemperature, where exposed",
            dev.get("temperature_c"),
        )
        gauges["exposure_microseconds"] = (
            "exposure read back from the camera",
            dev.get("exposure_us"),
        )
        gauges["gain"] = ("gain read back from the camera", dev.get("gain"))
        for key, (text, value) in gauges.items():
            if value is None:
                continue
            fam = GaugeMetricFamily(f"edge_camera_{key}", text, labels=["camera"])
            fam.add_metric([cam], float(value))
            yield fam


def build(app: Any) -> CameraHealth | None:
    source = getattr(getattr(app, "pipeline", None), "source", None)
    cfg = app.cfg.ops.camera
    if not cfg.enabled or source is None or not hasattr(source, "health"):
        return None
    return CameraHealth(app, cfg)
