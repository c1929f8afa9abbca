"""GenICam cameras through Aravis (GigE Vision, USB3 Vision): find, open, configure, read.

Only this module touches the Aravis API (PyGObject). It turns the camera's answers into
plain Python: `CameraInfo` for discovery, `Grab` for one buffer, `CameraError` with a
message that says what to do. PyGObject releases the interpreter lock inside Aravis calls,
so a thread waiting for a frame does not hold up the inspection threads.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from edge.capture.genicam_config import GenICamSource

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the Aravis GObject bindings: apt-get install gir1.2-aravis-0.8 "
    "libgirepository1.0-dev libcairo2-dev pkg-config, then pip install 'edge-inspect[genicam]'"
)

_BAYER = {  # GenICam names the 2x2 tile from its first row; OpenCV from its second
    "BayerRG8": cv2.COLOR_BayerBG2BGR,
    "BayerBG8": cv2.COLOR_BayerRG2BGR,
    "BayerGR8": cv2.COLOR_BayerGB2BGR,
    "BayerGB8": cv2.COLOR_BayerGR2BGR,
}
_MONO_SHIFT = {"Mono10": 2, "Mono12": 4, "Mono16": 8}  # to 8 bits, LSB-aligned in 16


class CameraError(RuntimeError):
    """The camera cannot be used as configured; the message names the fix."""


class CameraNotFound(CameraError):
    """No camera matches; worth retrying (it may be powering up or re-cabled)."""


def aravis() -> Any:
    """The Aravis module, or a CameraError that says how to install it."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise CameraError(f"Aravis is not available ({exc}): {INSTALL_HINT}") from None
    return Aravis


def available() -> str | None:
    """None when Aravis can be used here, else why not."""
    try:
        aravis()
    except CameraError as exc:
        return str(exc)
    return None


@dataclass
class CameraInfo:
    device_id: str
    vendor: str
    model: str
    serial: str
    address: str
    protocol: str
    physical_id: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def list_cameras() -> list[CameraInfo]:
    """Every camera Aravis can see now (GigE Vision discovery takes about a second)."""
    arv = aravis()
    arv.update_device_list()
    out = []
    for i in range(arv.get_n_devices()):
        out.append(
            CameraInfo(
                device_id=arv.get_device_id(i) or "",
                vendor=arv.get_device_vendor(i) or "",
                model=arv.get_device_model(i) or "",
                serial=arv.get_device_serial_nbr(i) or "",
                address=arv.get_device_address(i) or "",
                protocol=arv.get_device_protocol(i) or "",
                physical_id=arv.get_device_physical_id(i) or "",
            )
        )
    return out


def _message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


def find_camera(cfg: GenICamSource) -> str:
    """The Aravis device id of the camera `cfg` names, or CameraNotFound listing what is there."""
    arv = aravis()
    cams = list_cameras()
    if cfg.device_id:
        hits = [c for c in cams if c.device_id == cfg.device_id]
    elif cfg.serial:
        hits = [c for c in cams if c.serial == cfg.serial]
    elif cfg.address:
        hits = [c for c in cams if c.address == cfg.address]
        if not hits:  # a camera on another subnet answers to its address, not to discovery
            try:
                arv.Camera.new(cfg.address)
                return cfg.address  # Aravis opens a GigE Vision camera by its address too
            except Exception:
                pass
    elif cfg.user_id:
        hits = [c for c in cams if _user_id(c.device_id) == cfg.user_id]
    else:
        hits = cams[:1]
    if not hits:
        seen = ", ".join(f"{c.device_id} ({c.address or c.physical_id})" for c in cams) or "none"
        raise CameraNotFound(f"camera {cfg.selector()} not found (cameras seen: {seen})")
    return hits[0].device_id


def _user_id(device_id: str) -> str | None:
    try:
        cam = aravis().Camera.new(device_id)
        dev = cam.get_device()
        for feature in ("DeviceUserID", "DeviceUserName"):
            if cam.is_feature_available(feature):
                return dev.get_string_feature_value(feature)
    except Exception:
        return None
    return None


@dataclass
class Grab:
    """One buffer off the stream: an image, or why there is none."""

    image: np.ndarray | None
    frame_id: int
    device_ts_ns: int
    system_ts_ns: int
    error: str | None = None


def to_bgr(data: bytes, width: int, height: int, pixel_format: str) -> np.ndarray:
    """The camera's pixels as the 8-bit BGR image the tools take."""
    if pixel_format == "Mono8":
        grey = np.frombuffer(data, np.uint8, width * height).reshape(height, width)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if pixel_format in _MONO_SHIFT:
        wide = np.frombuffer(data, "<u2", width * height).reshape(height, width)
        grey = (wide >> _MONO_SHIFT[pixel_format]).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if pixel_format in ("RGB8", "BGR8"):
        rgb = np.frombuffer(data, np.uint8, width * height * 3).reshape(height, width, 3)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if pixel_format == "RGB8" else rgb.copy()
    if pixel_format in _BAYER:
        raw = np.frombuffer(data, np.uint8, width * height).reshape(height, width)
        return cv2.cvtColor(raw, _BAYER[pixel_format])
    raise CameraError(f"pixel format {pixel_format} cannot be converted")


class Camera:
    """One opened, configured and streaming camera. Close it to release the device."""

    def __init__(self, cfg: GenICamSource, device_id: str | None = None):
        self.cfg = cfg
        arv = self.arv = aravis()
        self.device_id = device_id or find_camera(cfg)
        try:
            self.cam = arv.Camera.new(self.device_id)
        except Exception as exc:
            raise CameraNotFound(f"cannot open camera {self.device_id}: {_message(exc)}") from None
        self.device = self.cam.get_device()
        self.serial = self.cam.get_device_serial_number() or ""
        self.model = self.cam.get_model_name() or ""
        self.control_lost = False
        self.device.connect("control-lost", self._on_control_lost)
        self.stream: Any = None
        self.acquiring = False
        try:
            self._configure()
            self._open_stream()
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up

    def _on_control_lost(self, *_a: Any) -> None:
        self.control_lost = True

    def _choose(self, feature: str, wanted: str) -> None:
        """Set an enumeration, or say which entries the camera offers."""
        offered = list(self.cam.dup_available_enumerations_as_strings(feature) or [])
        if wanted not in offered:
            raise CameraError(
                f"{feature} {wanted!r} is not offered by camera {self.device_id} "
                f"(offered: {', '.join(offered) or 'none'})"
            )
        self.device.set_string_feature_value(feature, wanted)

    def _configure(self) -> None:
        c, cam = self.cfg, self.cam
        self.stop_acquisition()
        offered = list(cam.dup_available_pixel_formats_as_strings() or [])
        if c.pixel_format not in offered:
            raise CameraError(
                f"pixel format {c.pixel_format!r} is not offered by camera {self.device_id} "
                f"(offered: {', '.join(offered)})"
            )
        cam.set_pixel_format_from_string(c.pixel_format)
        if c.exposure_us is not None or c.gain is not None:
            self.set_exposure(c.exposure_us, c.gain)
        if c.trigger == "free":
            cam.clear_triggers()
            if cam.is_frame_rate_available():
                cam.set_frame_rate(c.rate_per_min / 60.0)
        elif c.trigger == "software":
            if not cam.is_software_trigger_supported():
                raise CameraError(f"camera {self.device_id} has no software trigger")
            cam.set_trigger("Software")
        else:
            self._check_trigger_source(c.trigger_source)
            cam.set_trigger(c.trigger_source)  # FrameStart, TriggerMode On
            self._choose("TriggerActivation", c.trigger_activation)
        cam.set_acquisition_mode(self.arv.AcquisitionMode.CONTINUOUS)
        if cam.is_gv_device():
            if c.packet_size is not None:
                cam.gv_set_packet_size(c.packet_size)
            else:
                try:
                    cam.gv_auto_packet_size()
                except Exception as exc:
                    log.info("packet size negotiation failed on %s: %s", self.device_id, exc)
            if c.packet_delay_ns is not None:
                cam.gv_set_packet_delay(c.packet_delay_ns)

    def _check_trigger_source(self, source: str) -> None:
        offered = list(self.cam.dup_available_trigger_sources() or [])
        if source not in offered:
            raise CameraError(
                f"TriggerSource {source!r} is not offered by camera {self.device_id} "
                f"(offered: {', '.join(offered) or 'none'})"
            )

    def set_exposure(self, exposure_us: float | None, gain: float | None) -> None:
        """Exposure and gain within the camera's bounds (a value outside them is an error)."""
        cam = self.cam
        if exposure_us is not None:
            if cam.is_exposure_auto_available():  # a fixed exposure, or images drift with the scene
                cam.set_exposure_time_auto(self.arv.Auto.OFF)
            lo, hi = cam.get_exposure_time_bounds()
            if not lo <= exposure_us <= hi:
                raise CameraError(f"exposure {exposure_us:g} us outside {lo:g}..{hi:g} us")
            cam.set_exposure_time(float(exposure_us))
        if gain is not None:
            if cam.is_gain_auto_available():
                cam.set_gain_auto(self.arv.Auto.OFF)
            lo, hi = cam.get_gain_bounds()
            if not lo <= gain <= hi:
                raise CameraError(f"gain {gain:g} outside {lo:g}..{hi:g}")
            cam.set_gain(float(gain))

    def _open_stream(self) -> None:
        c = self.cfg
        self.stream = self.cam.create_stream(None, None)
        if self.cam.is_gv_device():
            opt = self.arv.GvStreamPacketResend
            self.stream.set_property("packet-resend", opt.ALWAYS if c.packet_resend else opt.NEVER)
            if c.socket_buffer_mb:
                self.stream.set_property("socket-buffer", self.arv.GvStreamSocketBuffer.FIXED)
                self.stream.set_property("socket-buffer-size", int(c.socket_buffer_mb * 2**20))
        payload = self.cam.get_payload()
        for _ in range(c.buffers):
            self.stream.push_buffer(self.arv.Buffer.new_allocate(payload))
        self.cam.start_acquisition()
        self.acquiring = True

    # ------------------------------------------------------------------ use

    def software_trigger(self) -> None:
        self.cam.software_trigger()

    def probe(self, timeout_s: float = 2.0, settle_s: float = 0.15) -> int:
        """One software trigger whose frame is awaited and discarded: the camera streams, and
        its frame ids continue from the id returned (the next trigger's frame is id + 1).

        Frames already on their way (a camera may send one before its trigger mode took
        effect) are drained first, and the probe's frame must have arrived after the probe
        trigger was sent: a stray frame taken for it would shift every later match by one.
        """
        while self.pop(settle_s) is not None:
            pass
        sent_ns = time.time_ns()
        self.software_trigger()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            g = self.pop(end - time.monotonic())
            if g is not None and g.system_ts_ns >= sent_ns:
                if self.pop(settle_s) is not None:
                    raise CameraError(
                        f"camera {self.device_id} sent two frames for one software trigger: "
                        "it is not in trigger mode"
                    )
                return g.frame_id
        raise CameraNotFound(
            f"camera {self.device_id} opened but sent no frame for a test trigger in {timeout_s:g} s"
        )

    def pop(self, timeout_s: float) -> Grab | None:
        """The next buffer, or None when none came within `timeout_s`."""
        buf = self.stream.timeout_pop_buffer(max(1, int(timeout_s * 1e6)))
        if buf is None:
            return None
        try:
            fid, dts, sts = buf.get_frame_id(), buf.get_timestamp(), buf.get_system_timestamp()
            status = buf.get_status()
            if status != self.arv.BufferStatus.SUCCESS:
                return Grab(None, fid, dts, sts, f"incomplete frame: {status.value_nick}")
            data = buf.get_image_data()
            img = to_bgr(data, buf.get_image_width(), buf.get_image_height(), self.cfg.pixel_format)
            return Grab(img, fid, dts, sts)
        except CameraError as exc:
            return Grab(None, buf.get_frame_id(), buf.get_timestamp(), 0, str(exc))
        finally:
            self.stream.push_buffer(buf)

    def stream_stats(self) -> dict[str, int]:
        """Aravis's stream counters (completed buffers, missing and resent packets, ...)."""
        s = self.stream
        if s is None:
            return {}
        out = {}
        for i in range(s.get_n_infos()):
            name = s.get_info_name(i)
            try:
                out[name] = int(s.get_info_uint64(i))
            except Exception:
                continue
        return out

    def read_float(self, feature: str) -> float | None:
        """A float feature (DeviceTemperature, ...) if the camera has it."""
        try:
            if self.cam.is_feature_available(feature):
                return float(self.cam.get_float(feature))
        except Exception:
            return None
        return None

    def settings(self) -> dict[str, Any]:
        """What the camera says it is doing now (read back, not what was asked)."""
        cam = self.cam
        out: dict[str, Any] = {"pixel_format": cam.get_pixel_format_as_string()}
        if cam.is_exposure_time_available():
            out["exposure_us"] = cam.get_exposure_time()
        if cam.is_gain_available():
            out["gain"] = cam.get_gain()
        for f in ("TriggerMode", "TriggerSource", "TriggerActivation"):
            try:
                out[f] = self.device.get_string_feature_value(f)
            except Exception:
                out[f] = None
        if cam.is_gv_device():
            out["packet_size"] = cam.gv_get_packet_size()
            out["packet_delay_ns"] = cam.gv_get_packet_delay()
        return out

    def stop_acquisition(self) -> None:
        try:
            self.cam.stop_acquisition()
        except Exception as exc:
            log.debug("stop acquisition on %s: %s", self.device_id, exc)
        self.acquiring = False

    def close(self) -> None:
        """Stop and release; a camera that is gone makes this slow (GVCP timeouts), not fail."""
        if self.acquiring:
            self.stop_acquisition()
        self.stream = None
        self.cam = None
        self.device = None


def snap(cfg: GenICamSource, timeout_s: float = 5.0) -> tuple[Grab, Camera]:
    """One frame from the camera `cfg` names (software trigger unless it is set otherwise)."""
    cam = Camera(cfg)
    try:
        end = time.monotonic() + timeout_s
        if cfg.trigger == "software":
            cam.software_trigger()
        while time.monotonic() < end:
            g = cam.pop(min(0.5, end - time.monotonic()))
            if g is not None and g.image is not None:
                return g, cam
        raise CameraError(f"no frame from camera {cam.device_id} within {timeout_s:g} s")
    except Exception:
        cam.close()
        raise
