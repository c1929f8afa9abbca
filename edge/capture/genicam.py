"""An industrial camera as the line's source: GenICam through Aravis (GigE Vision, USB3 Vision).

Three threads share one camera, each doing one thing, so a camera that vanishes never
holds up the line's clock (a GigE Vision command to a dead camera blocks for seconds):

* the capture thread (`frames()`) keeps the trigger clock, matches frames to triggers by
  the camera's frame id, and owns the current connection;
* the trigger thread fires TriggerSoftware commands;
* the connector thread opens the camera, and reopens it with backoff after it is lost.

With a software trigger every item exists from its trigger on: a frame that does not
arrive within `frame_timeout_ms` makes that item a REJECT MISSING_VIEW, and the
CAMERA_NO_FRAME alarm is raised at that moment (within one pitch when the timeout is
below the pitch). While the camera is away the clock goes on and every item rejects.
Frames are matched by frame id, per connection: a late frame is discarded and counted,
never attached to the next item; a frame no trigger asked for forces a reconnect.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edge.capture import aravis
from edge.capture.base import Source
from edge.capture.genicam_config import GenICamSource
from edge.domain import Frame, Reason

log = logging.getLogger(__name__)

ALARM = "CAMERA_NO_FRAME"
_WRAP16 = 65535  # GigE Vision 1.x block ids run 1..65535, then 1 again (0 is never used)


@dataclass
class _Trigger:
    k: int  # trigger count since the source started: the item's encoder value
    t: float  # monotonic time of the trigger
    gen: int  # connection it was fired on
    wall_ns: int = 0  # host clock when it was sent (Aravis stamps arrivals with this clock)


@dataclass
class _Link:
    """One connection to the camera: frame ids are only comparable within it."""

    cam: aravis.Camera
    gen: int
    base: tuple[int, int] | None = None  # (unwrapped frame id, trigger count) that match
    last_raw: int | None = None
    last_fid: int = 0
    misses: int = 0  # consecutive missing frames
    failed: str | None = None  # why this connection must be dropped
    seen_16bit: bool = True

    def unwrap(self, raw: int) -> int:
        if self.last_raw is None:
            self.last_raw, self.last_fid = raw, raw
            return raw
        if raw > _WRAP16:
            self.seen_16bit = False
        d = raw - self.last_raw
        if self.seen_16bit and d < -_WRAP16 // 2:
            d += _WRAP16
        self.last_raw = raw
        self.last_fid += d
        return self.last_fid


@dataclass
class _Counters:
    triggers: int = 0
    frames: int = 0
    missing: int = 0  # items rejected for want of a frame
    incomplete: int = 0  # buffers that came with missing packets
    late: int = 0  # frames that came after their item was rejected (discarded)
    unmatched: int = 0  # frames no trigger asked for (discarded)
    dropped: int = 0  # gaps in the frame ids
    trigger_errors: int = 0
    reconnects: int = 0
    clock_slips: int = 0  # the trigger clock was held up longer than a pitch
    stream: dict[str, int] = field(default_factory=dict)  # totals of closed connections


class GenICamCapture(Source):
    """Frames from one GenICam camera; see the module docstring for the threads."""

    def __init__(self, cfg: GenICamSource):
        why = aravis.available()
        if why:
            raise RuntimeError(why)
        super().__init__(cfg)
        self.label = cfg.label
        self.counters = _Counters()
        self.last_error: str | None = None
        self._link: _Link | None = None  # owned by the capture thread
        self._offer: queue.Queue[aravis.Camera] = queue.Queue(1)  # connector -> capture
        self._want = threading.Event()  # capture -> connector: open one
        self._fatal: Exception | None = None
        self._gen = 0
        self._triggers: queue.Queue[Any] = queue.Queue()
        self._failed_gen: dict[int, str] = {}
        self._frame_times: deque[float] = deque(maxlen=512)
        self._threads: list[threading.Thread] = []
        self._health_cache: dict[str, Any] = {}
        #: hardware trigger or free run: a reopened camera missed triggers nobody counted,
        #: so its counts start a new epoch (`Frame.count_epoch`); the software clock keeps one
        self._epoch = 0
        #: one per camera: a station with several views names the view (`bind`)
        self.alarm_code = ALARM

    # ------------------------------------------------------------------ threads

    def _start(self) -> None:
        self._want.set()
        for target, name in ((self._connector, "camera-connect"), (self._trigger, "camera-trig")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _connector(self) -> None:
        lo, hi = self.cfg.reconnect_backoff_s
        backoff = lo
        while not self.stopped:
            if not self._want.wait(0.1):
                continue
            try:
                cam = aravis.Camera(self.cfg)
                if self.cfg.trigger == "software":
                    try:
                        cam.probe_fid = cam.probe()
                    except Exception:
                        threading.Thread(target=cam.close, daemon=True).start()
                        raise
            except aravis.CameraNotFound as exc:
                log.warning("%s; retrying in %.1f s", exc, backoff)
                self._no_frame(f"{exc}; retrying in {backoff:.1f} s")
                if self.wait(backoff):
                    return
                backoff = min(hi, backoff * 2)
                continue
            except aravis.CameraError as exc:
                self._fatal = exc  # the config does not fit this camera: retrying cannot help
                return
            except Exception as exc:  # a camera that vanished half-way through the set-up
                self._no_frame(f"camera {self.cfg.selector()} set-up failed: {exc}")
                if self.wait(backoff):
                    return
                backoff = min(hi, backoff * 2)
                continue
            if self.stopped:  # the line stopped while the camera was being opened
                cam.close()
                return
            backoff = lo
            self._want.clear()
            self._offer.put(cam)
            log.info("camera %s connected (%s)", self.label, cam.device_id)

    def _trigger(self) -> None:
        while True:
            job = self._triggers.get()
            if job is None:
                return
            cam, gen = job
            if gen in self._failed_gen or self.stopped:
                continue  # that connection is gone: a command to it would block for seconds
            try:
                cam.software_trigger()
            except Exception as exc:
                self.counters.trigger_errors += 1
                self._failed_gen[gen] = f"trigger failed: {getattr(exc, 'message', exc)}"

    # ------------------------------------------------------------------ connection

    def _adopt(self) -> _Link | None:
        """Take a freshly opened camera from the connector; drop a failed connection."""
        link = self._link
        if link is not None:
            why = link.failed or self._failed_gen.get(link.gen)
            if why is None and link.cam.control_lost:
                why = "control connection lost (no heartbeat answer)"
            if why is not None:
                self._drop(link, why)
                link = None
        if link is None:
            try:
                cam = self._offer.get_nowait()
            except queue.Empty:
                return None
            self._gen += 1
            link = self._link = _Link(cam, self._gen)
            probe = getattr(cam, "probe_fid", None)
            if probe is not None:
                link.unwrap(probe)  # the next trigger's frame is the one after the probe's
            if self.counters.reconnects or self.counters.frames or self.counters.missing:
                self.counters.reconnects += 1
        return link

    def _drop(self, link: _Link, why: str) -> None:
        self.last_error = why
        self._failed_gen.setdefault(link.gen, why)
        log.warning("camera %s: %s; reconnecting", self.label, why)
        self._no_frame(f"camera {self.label}: {why}; reconnecting")
        totals = dict(self.counters.stream)
        for k, v in link.cam.stream_stats().items():
            totals[k] = totals.get(k, 0) + v
        self.counters.stream = totals  # replaced whole: health() may be reading the old one
        self._link = None
        # closing a camera that is gone waits on network timeouts: not on the line's thread
        threading.Thread(target=link.cam.close, name="camera-close", daemon=True).start()
        self._want.set()

    def _no_frame(self, message: str) -> None:
        self.last_error = message
        if self.alarms is not None:
            self.alarms.raise_(self.alarm_code, message, "critical", False)

    def _frame_ok(self) -> None:
        if self.alarms is not None and self.alarms.is_active(self.alarm_code):
            self.alarms.clear(self.alarm_code)

    # ------------------------------------------------------------------ frames

    def frames(self) -> Iterator[Frame]:
        self._start()
        try:
            if self.cfg.trigger == "software":
                yield from self._software()
            else:
                yield from self._streamed()
        finally:
            self._shutdown()

    def _missing(self, k: int, t: float, why: str, reason: str = Reason.MISSING_VIEW.value):
        self.counters.missing += 1
        return Frame(
            image=None,
            t_trigger=t,
            encoder=k,
            source=self.label,
            name=f"{self.label}#t{k}",
            error=why,
            reason=reason,
            count_epoch=self._epoch,
        )

    def _frame(self, g: aravis.Grab, k: int, t: float) -> Frame:
        if g.image is None:
            self.counters.incomplete += 1
            return self._missing(k, t, g.error or "incomplete frame", Reason.IMAGE_ERROR.value)
        self.counters.frames += 1
        self._frame_times.append(time.monotonic())
        self._frame_ok()
        return Frame(
            image=g.image,
            t_trigger=t,
            encoder=k,
            source=self.label,
            name=f"{self.label}#t{k}/f{g.frame_id}",
            frame_id=g.frame_id,
            device_ts_ns=g.device_ts_ns,
            count_epoch=self._epoch,
        )

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _software(self) -> Iterator[Frame]:
        c = self.cfg
        period = 60.0 / c.rate_per_min
        timeout = c.frame_timeout_ms / 1000.0
        pending: deque[_Trigger] = deque()
        while not self.stopped and self._offer.empty():  # the clock starts with the camera
            self._check_fatal()
            self.wait(0.02)
        t0 = time.monotonic()
        k = 0
        while not self.stopped:
            self._check_fatal()
            link = self._adopt()
            now = time.monotonic()
            more = c.items is None or k < c.items
            if now > t0 + (k + 1) * period:  # held up for more than a pitch: no burst of
                t0 = now - k * period  # triggers a camera could not follow; the clock moves on
                self.counters.clock_slips += 1
            if more and now >= t0 + k * period:
                k += 1
                self.counters.triggers += 1
                if link is None:
                    why = self.last_error or f"camera {c.selector()} not connected"
                    self._no_frame(why)
                    yield self._missing(k, now, why)
                    continue
                if link.base is None:
                    link.base = (link.last_fid + 1, k)
                pending.append(_Trigger(k, now, link.gen, time.time_ns()))
                self._triggers.put((link.cam, link.gen))
            while pending and (now > pending[0].t + timeout or pending[0].gen != self._gen):
                tr = pending.popleft()
                why = f"no frame within {c.frame_timeout_ms:g} ms of trigger {tr.k}"
                if tr.gen == self._gen and self._link is not None:
                    self._link.misses += 1
                    if self._link.misses >= c.lost_after:
                        self._link.failed = f"{self._link.misses} frames missing in a row"
                self._no_frame(f"camera {self.label}: {why}")
                yield self._missing(tr.k, tr.t, why)
            if not more and not pending:
                return
            wake = t0 + k * period if more else float("inf")
            if pending:
                wake = min(wake, pending[0].t + timeout)
            if link is None or link.failed:
                self.wait(max(0.0, min(wake - time.monotonic(), 0.05)))
                continue
            try:
                g = link.cam.pop(max(0.0005, wake - time.monotonic()))
            except Exception as exc:
                link.failed = f"stream failed: {exc}"
                continue
            if g is not None:
                yield from self._match(link, g, pending, k)

    def _match(self, link: _Link, g: aravis.Grab, pending: deque[_Trigger], k: int) -> list[Frame]:
        """The item this frame belongs to, by frame id (and the items it shows were lost)."""
        fid = link.unwrap(g.frame_id)
        if link.base is None:
            self.counters.unmatched += 1
            link.failed = "a frame came that no trigger of this connection asked for"
            return []
        want = link.base[1] + (fid - link.base[0])
        if want > k:
            self.counters.unmatched += 1
            link.failed = f"frame {g.frame_id} is ahead of the triggers sent: out of step"
            return []
        tr = next((p for p in pending if p.k == want and p.gen == link.gen), None)
        if tr is None:
            self.counters.late += 1  # its item was already rejected: never give it to another
            return []
        if g.system_ts_ns and g.system_ts_ns < tr.wall_ns:
            self.counters.unmatched += 1  # it began to arrive before its trigger was sent
            link.failed = f"frame {g.frame_id} arrived before trigger {tr.k}: out of step"
            return []
        out = []
        while pending[0] is not tr:  # frames come in order: the earlier ones are lost
            lost = pending.popleft()
            self.counters.dropped += 1
            out.append(self._missing(lost.k, lost.t, f"frame of trigger {lost.k} lost"))
        pending.popleft()
        link.misses = 0
        out.append(self._frame(g, tr.k, tr.t))
        return out

    def _streamed(self) -> Iterator[Frame]:
        """Hardware (line) trigger or free run: each frame is an item; id gaps are lost items."""
        c = self.cfg
        k = 0
        quiet_since = time.monotonic()
        frame_period = 60.0 / c.rate_per_min
        first_gen: int | None = None
        while not self.stopped and (c.items is None or k < c.items):
            self._check_fatal()
            link = self._adopt()
            if link is None:
                self.wait(0.05)
                quiet_since = time.monotonic()
                continue
            try:
                g = link.cam.pop(0.1)
            except Exception as exc:
                link.failed = f"stream failed: {exc}"
                continue
            now = time.monotonic()
            if g is None:
                if c.trigger == "free" and now - quiet_since > max(
                    1.0, c.lost_after * frame_period
                ):
                    link.failed = f"no frame for {now - quiet_since:.1f} s while free-running"
                continue
            quiet_since = now
            if first_gen is None:
                first_gen = link.gen
            elif link.base is None and link.gen != first_gen:
                self._epoch += 1  # the first frame of a reopened camera: a new count epoch
            fid = link.unwrap(g.frame_id)
            if link.base is not None:
                gap = fid - link.base[0] - 1
                if gap < 0:
                    self.counters.late += 1
                    continue
                for _ in range(gap):  # frames lost on the way: each was an item under the lens
                    self.counters.dropped += 1
                    if c.trigger == "line":
                        k += 1
                        yield self._missing(
                            k, now, f"frame lost (frame id gap before {g.frame_id})"
                        )
            link.base = (fid, k)
            k += 1
            self.counters.triggers += 1
            yield self._frame(g, k, now)  # the trigger's own time is the camera's: arrival here

    def _shutdown(self) -> None:
        self._stop.set()
        self._triggers.put(None)
        for t in self._threads:
            t.join(1.0)
        link, self._link = self._link, None
        if link is not None:
            totals = dict(self.counters.stream)
            for k, v in link.cam.stream_stats().items():
                totals[k] = totals.get(k, 0) + v
            self.counters.stream = totals
            link.cam.close()
        try:
            self._offer.get_nowait().close()
        except queue.Empty:
            pass

    # ------------------------------------------------------------------ live changes, health

    def set_exposure(
        self, exposure_us: float | None, gain: float | None = None, *, at_connect: bool = False
    ) -> dict[str, Any]:
        """Exposure and gain on the running camera (a recipe or product change); returns what
        the camera reports it now runs (read back, not what was asked). CameraError when it
        refuses a value or is not connected. `at_connect`: a camera not connected yet (a
        restart) takes the values when it is opened (a refusal there is a camera fault)."""
        link = self._link
        if link is None and at_connect:
            pairs = (("exposure_us", exposure_us), ("gain", gain))
            keep = {k: v for k, v in pairs if v is not None}
            self.cfg = self.cfg.model_copy(update=keep)
            return {"exposure_us": exposure_us, "gain": gain}
        if link is None:
            raise aravis.CameraError(f"camera {self.label} is not connected")
        # a reconnect opens the camera from the config, and the settings-drift alarm compares
        # the camera with it: the config takes the values first, and keeps the old on refusal
        old = self.cfg
        keep = {k: v for k, v in (("exposure_us", exposure_us), ("gain", gain)) if v is not None}
        self.cfg = self.cfg.model_copy(update=keep)
        try:
            link.cam.set_exposure(exposure_us, gain)
        except Exception:
            self.cfg = old
            raise
        got = link.cam.settings()
        return {k: got.get(k) for k in ("exposure_us", "gain")}

    def fps(self, horizon_s: float = 10.0) -> float:
        now = time.monotonic()
        times = [t for t in list(self._frame_times) if now - t <= horizon_s]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    def poll_device(self) -> dict[str, Any]:
        """Read what the camera reports (temperature, exposure, gain): network traffic, so
        called by the health component every few seconds, never per frame."""
        link = self._link
        out: dict[str, Any] = {}
        if link is not None and not link.failed:
            try:
                out = dict(link.cam.settings())
                out["temperature_c"] = link.cam.read_float("DeviceTemperature")
            except Exception as exc:
                out = {"error": str(exc)}
        self._health_cache = out
        return out

    def health(self) -> dict[str, Any]:
        c = self.counters
        link = self._link
        stream = dict(c.stream)
        if link is not None:
            for k, v in link.cam.stream_stats().items():
                stream[k] = stream.get(k, 0) + v
        return {
            "camera": self.label,
            "connected": link is not None and not link.failed,
            "device_id": link.cam.device_id if link else None,
            "trigger": self.cfg.trigger,
            "fps": round(self.fps(), 2),
            "triggers": c.triggers,
            "frames": c.frames,
            "missing": c.missing,
            "incomplete": c.incomplete,
            "late": c.late,
            "unmatched": c.unmatched,
            "dropped": c.dropped,
            "trigger_errors": c.trigger_errors,
            "reconnects": c.reconnects,
            "clock_slips": c.clock_slips,
            "resent_packets": stream.get("n_resent_packets", 0),
            "missing_packets": stream.get("n_missing_packets", 0),
            "resend_requests": stream.get("n_resend_requests", 0),
            "received_packets": stream.get("n_received_packets", 0),
            "last_error": self.last_error,
            "device": dict(self._health_cache),
        }

    def describe(self) -> dict[str, Any]:
        return {"type": "genicam", **self.health()}
