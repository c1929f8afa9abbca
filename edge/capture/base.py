"""The capture-source interface and its registry (the `source:` union's config classes).

A source yields Frames at trigger time, each with a monotonic timestamp and the
encoder count of its trigger. It must never block forever: `frames()` ends when the
source is exhausted or `stop()` is called; a camera that disappears reconnects with
backoff inside the source, and the pipeline raises a stall alarm meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from edge import plugins
from edge.config import SourceConfig
from edge.domain import Frame

#: source classes by config `type`, as each config class names its own (`impl`)
SOURCES: dict[str, str] = plugins.table(SourceConfig)


class Source:
    """Base class: subclasses implement `frames()` and check `self.stopped` between frames."""

    #: False for a source that runs as fast as it is consumed (offline replay): the pipeline
    #: then reads it just in time instead of rejecting what it cannot queue.
    paced: bool = True

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._stop = threading.Event()
        self.alarms: Any = None  # the line's Alarms, once bound: a camera raises its own

    def bind(self, alarms: Any, view: str | None = None) -> None:
        """The pipeline hands its alarms over, so a source can say at once what is wrong;
        on a station with several views, the view this camera is (its alarms name it)."""
        self.alarms = alarms
        if view is not None and hasattr(self, "alarm_code"):
            self.alarm_code = f"{self.alarm_code}_{view.upper()}"

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    def wait(self, seconds: float) -> bool:
        """Sleep that wakes on stop(); True if stopped."""
        return self._stop.wait(seconds)

    def describe(self) -> dict[str, Any]:
        return {"type": getattr(self.cfg, "type", "?")}

    def print_batch(self, batch: Any) -> None:
        """A batch started: a camera only looks, so nothing changes. The simulator is also
        the line's printer and prints the new batch's GTIN, lot and expiry from now on."""


def open_source(cfg: Any, **kw: Any) -> Source:
    cls = plugins.load("source", SOURCES, cfg.type)
    return cls(cfg, **kw)
