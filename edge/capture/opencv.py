"""Cameras through OpenCV: USB index, video file, RTSP/HTTP URL, or a GStreamer pipeline.

A camera that is missing or drops out is reopened with exponential backoff between the
configured bounds; the loop sleeps with `Source.wait()`, so `stop()` ends it at once. A
video file ends the stream at its last frame. Frames carry monotonic timestamps and
a running trigger count as their encoder value (free-running cameras have no encoder).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2

from edge.capture.base import Source
from edge.config import GStreamerSource, OpenCVSource
from edge.domain import Frame

log = logging.getLogger(__name__)

_STREAM_TIMEOUT_MS = 5000  # open/read timeout for network streams (FFmpeg backend)


class _VideoSource(Source):
    """Open -> read until failure -> back off -> reopen, until stop() or end of file."""

    source_name = "opencv"

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.reconnects = 0
        self.frames_read = 0
        self.last_error: str | None = None

    # subclasses say how to open, and whether the end of the stream is final
    def _open(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _is_file(self) -> bool:
        return False

    def _label(self) -> str:
        return self.source_name

    def _try_open(self) -> cv2.VideoCapture | None:
        try:
            cap = self._open()
        except cv2.error as exc:
            self.last_error = f"open failed: {exc}"
            return None
        if not cap.isOpened():
            cap.release()
            self.last_error = f"cannot open {self._label()}"
            return None
        return cap

    def frames(self) -> Iterator[Frame]:
        lo, hi = self.cfg.reconnect_backoff_s
        backoff = lo
        cap: cv2.VideoCapture | None = None
        try:
            while not self.stopped:
                if cap is None:
                    cap = self._try_open()
                    if cap is None:
                        if self._is_file() and self.frames_read:
                            return
                        log.warning("%s; retrying in %.1f s", self.last_error, backoff)
                        self.reconnects += 1
                        if self.wait(backoff):
                            return
                        backoff = min(hi, backoff * 2)
                        continue
                ok, img = cap.read()
                if not ok or img is None:
                    cap.release()
                    cap = None
                    if self._is_file():
                        return  # end of the video file
                    self.last_error = f"read failed on {self._label()}"
                    log.warning("%s; reconnecting", self.last_error)
                    continue
                backoff = lo
                self.frames_read += 1
                yield Frame(
                    image=img,
                    t_trigger=time.monotonic(),
                    encoder=self.frames_read,
                    source=self.source_name,
                    name=f"{self._label()}#{self.frames_read}",
                )
        finally:
            if cap is not None:
                cap.release()

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.cfg.type,
            "source": self._label(),
            "frames": self.frames_read,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }


class OpenCVCapture(_VideoSource):
    """USB camera (device index), video file, or RTSP/HTTP URL."""

    source_name = "opencv"

    def __init__(self, cfg: OpenCVSource):
        super().__init__(cfg)

    def _target(self) -> int | str:
        d = self.cfg.device
        if isinstance(d, str) and d.isdigit():
            return int(d)
        return d

    def _is_file(self) -> bool:
        t = self._target()
        return isinstance(t, str) and "://" not in t and Path(t).is_file()

    def _label(self) -> str:
        t = self._target()
        if isinstance(t, int):
            return f"camera {t}"
        return t.split("@")[-1] if "://" in t else t  # never log URL credentials

    def _open(self) -> cv2.VideoCapture:
        t = self._target()
        if isinstance(t, str) and "://" in t:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, _STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, _STREAM_TIMEOUT_MS,
            ]  # fmt: skip
            cap = cv2.VideoCapture(t, cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(t)
        c = self.cfg
        if cap.isOpened():
            if c.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
            if c.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
            if c.fps:
                cap.set(cv2.CAP_PROP_FPS, c.fps)
        return cap


def gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


class GStreamerCapture(_VideoSource):
    """Any GStreamer pipeline ending in appsink (Jetson CSI cameras: nvarguscamerasrc ...)."""

    source_name = "gstreamer"

    def __init__(self, cfg: GStreamerSource):
        if not gstreamer_available():
            raise RuntimeError(
                "this OpenCV build has no GStreamer support: install an OpenCV built with "
                "GStreamer (e.g. the Jetson/distribution package) or use an 'opencv' source"
            )
        super().__init__(cfg)

    def _label(self) -> str:
        return self.cfg.pipeline.split("!")[0].strip() or "gstreamer"

    def _open(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.cfg.pipeline, cv2.CAP_GSTREAMER)
