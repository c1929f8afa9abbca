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
    """The component: polls every camera source, raises and clears camera alarms.

    A station with several views watches each view's camera; its alarms carry the view's
    name (`CAMERA_RESENDS_LEFT`), so one camera clearing never hides another's fault. One
    camera keeps the plain codes."""

    name = "camera"

    def __init__(self, app: Any, cfg: CameraHealthConfig):
        self.app = app
        self.pipeline = getattr(app, "pipeline", app)
        views = getattr(self.pipeline, "view_sources", None) or {}
        cams = {v: s for v, s in views.items() if hasattr(s, "health")}
        #: view name (None: the station's one camera) -> its source
        self.cameras: dict[str | None, Any] = cams or {None: self.pipeline.source}
        self.source = next(iter(self.cameras.values()))
        self.cfg = cfg
        self.alarms = self.pipeline.alarms
        self.looks: dict[str | None, dict[str, Any]] = {}
        self._prev: dict[str | None, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        Metrics.of(app).registry.register(_CameraCollector(self))

    @property
    def last(self) -> dict[str, Any]:
        """The last look at the first camera (the only one, on most stations)."""
        with self._lock:
            return dict(self.looks.get(next(iter(self.cameras)), {}))

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
            looks = {v: dict(h) for v, h in self.looks.items()}
        if list(self.cameras) == [None]:
            last = looks.get(None, {})
            return {"up": bool(last.get("connected")), **last}
        cams = {
            v: {"up": bool(looks.get(v, {}).get("connected")), **looks.get(v, {})}
            for v in self.cameras
        }
        return {"up": all(c["up"] for c in cams.values()), "cameras": cams}

    # ------------------------------------------------------------------ polling

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.poll_s):
            try:
                self.poll()
            except Exception:
                log.exception("camera health poll failed")

    def poll(self) -> dict[str, Any]:
        """One look at every camera: read it, compare with the last look, judge. Returns the
        look at the first camera (the only one, on most stations)."""
        out: dict[str, Any] = {}
        for view, src in self.cameras.items():
            try:
                h = self._look(view, src)
            except Exception:  # one camera's failing read must not blind the others
                log.exception("camera health of view %s failed", view)
                continue
            out = out or h
        return out

    def _look(self, view: str | None, src: Any) -> dict[str, Any]:
        device = src.poll_device() if hasattr(src, "poll_device") else {}
        h = dict(src.health())
        h["device"] = device
        h["t"] = time.monotonic()
        if view is not None:
            h["view"] = view
        with self._lock:
            prev = self._prev.get(view)
            self._prev[view], self.looks[view] = h, h
        if prev is not None:
            self._judge(view, src, prev, h)
        return h

    def _alarm(
        self, view: str | None, code: str, on: bool, message: str, severity: str = "major"
    ) -> None:
        if view is not None:
            code = f"{code}_{view.upper()}"
        if on:
            self.alarms.raise_(code, message, severity, False)
        elif self.alarms.is_active(code):
            self.alarms.clear(code)

    def _judge(self, view: str | None, src: Any, prev: dict[str, Any], h: dict[str, Any]) -> None:
        c, cam = self.cfg, h.get("camera", "camera")
        if view is not None:
            cam = f"{cam} (view {view})"
        d = {k: h.get(k, 0) - prev.get(k, 0) for k in _COUNTERS}
        received = max(1, h.get("received_packets", 0) - prev.get("received_packets", 0))
        resend_ratio = d["resent_packets"] / received
        loss_ratio = d["missing_packets"] / received
        self._alarm(
            view,
            "CAMERA_RESENDS",
            resend_ratio > c.max_resend_ratio or loss_ratio > c.max_packet_loss_ratio,
            f"camera {cam}: {d['resent_packets']} packets resent and {d['missing_packets']} "
            f"lost of {received} in {c.poll_s:g} s: check the cable, the NIC's receive "
            "buffers, the packet size and the inter-packet delay",
        )
        lost = d["missing"] + d["incomplete"] + d["dropped"] + d["late"]
        self._alarm(
            view,
            "CAMERA_FRAMES_LOST",
            lost > c.max_lost_frames,
            f"camera {cam}: {lost} frames lost, late or incomplete in {c.poll_s:g} s",
        )
        dev = h.get("device") or {}
        temp = dev.get("temperature_c")
        if temp is not None:
            self._alarm(
                view,
                "CAMERA_TEMPERATURE",
                temp >= c.max_temperature_c,
                f"camera {cam} at {temp:.1f} °C (limit {c.max_temperature_c:g} °C): "
                "check its cooling before the image noise rises",
                "maintenance",
            )
        drift = self._settings_drift(src, dev)
        self._alarm(
            view,
            "CAMERA_SETTINGS_DRIFT",
            bool(drift),
            f"camera {cam} is not at its configured {', '.join(drift)}: images will drift",
        )
        expected = self._expected_fps(src)
        if expected and h.get("connected") and prev.get("connected"):
            fps = float(h.get("fps") or 0.0)
            self._alarm(
                view,
                "CAMERA_FPS_LOW",
                fps < c.min_fps_ratio * expected,
                f"camera {cam} delivers {fps:.1f} frames/s of {expected:.1f} expected",
            )
        self._trend(str(h.get("camera", "camera")), h, resend_ratio, temp)

    @staticmethod
    def _expected_fps(src: Any) -> float | None:
        scfg = getattr(src, "cfg", None)
        if getattr(scfg, "trigger", None) in ("software", "free"):
            return float(scfg.rate_per_min) / 60.0
        return None  # a hardware trigger follows the line: no rate to expect

    def _settings_drift(self, src: Any, dev: dict[str, Any]) -> list[str]:
        scfg = getattr(src, "cfg", None)
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
        looks = []
        for view, src in self.h.cameras.items():
            with self.h._lock:
                st = dict(self.h.looks.get(view) or {})
            looks.append(st or dict(src.health()))
        families: dict[str, Any] = {}
        for key, text in _COUNTERS.items():
            families[key] = CounterMetricFamily(f"edge_camera_{key}", text, labels=["camera"])
        gauge_text = {
            "connected": "1 while the camera is open and streaming",
            "frame_rate": "frames per second the camera delivered (10 s)",
            "temperature_celsius": "DeviceTemperature, where exposed",
            "exposure_microseconds": "exposure read back from the camera",
            "gain": "gain read back from the camera",
        }
        gauges = {
            k: GaugeMetricFamily(f"edge_camera_{k}", text, labels=["camera"])
            for k, text in gauge_text.items()
        }
        used: set[str] = set()
        for st in looks:
            cam = str(st.get("camera", "camera"))
            for key in _COUNTERS:
                families[key].add_metric([cam], float(st.get(key, 0) or 0))
            dev = st.get("device") or {}
            values = {
                "connected": float(bool(st.get("connected"))),
                "frame_rate": st.get("fps"),
                "temperature_celsius": dev.get("temperature_c"),
                "exposure_microseconds": dev.get("exposure_us"),
                "gain": dev.get("gain"),
            }
            for key, value in values.items():
                if value is not None:
                    gauges[key].add_metric([cam], float(value))
                    used.add(key)
        yield from families.values()
        yield from (g for k, g in gauges.items() if k in used)


def build(app: Any) -> CameraHealth | None:
    p = getattr(app, "pipeline", None)
    sources = list((getattr(p, "view_sources", None) or {}).values())
    sources = sources or [getattr(p, "source", None)]
    cfg = app.cfg.ops.camera
    if not cfg.enabled or not any(s is not None and hasattr(s, "health") for s in sources):
        return None
    return CameraHealth(app, cfg)
