"""What the line has done lately, for the watchdog and /readyz: one cheap bus handler.

An "inspected" verdict is one the tools produced in time: items the tracker had to
reject (TIMEOUT) or that could not be queued (NOT_INSPECTED) are verdicts too, but
they are what a hung pipeline produces, so they do not count as progress.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from edge.domain import Item, Reason

_NOT_PROGRESS = {Reason.TIMEOUT.value, Reason.NOT_INSPECTED.value}


class Progress:
    def __init__(self, pipeline: Any):
        self.pipeline = pipeline
        self.created = time.monotonic()
        self.last_verdict_at: float | None = None
        self.last_inspected_at: float | None = None
        self.last_tool_errors: list[str] = []  # tools that failed on each of the last 3 items
        self._recent_errors: deque[list[str]] = deque(maxlen=3)
        self.models: dict[str, dict[str, str]] = {}  # model name -> {name, version, sha256}
        self._pending: float | None = None
        self._lock = threading.Lock()
        pipeline.bus.subscribe_sync("verdict", self._on_verdict)

    @classmethod
    def of(cls, app: Any) -> Progress:
        """The one Progress of an appliance (or pipeline), created on first use."""
        pipeline = getattr(app, "pipeline", app)
        with _ATTACH:
            p = getattr(pipeline, "_ops_progress", None)
            if p is None:
                p = cls(pipeline)
                pipeline._ops_progress = p
        return p

    def _on_verdict(self, _topic: str, item: Item) -> None:
        now = time.monotonic()
        self.last_verdict_at = now
        if _NOT_PROGRESS.intersection(item.reasons):
            return
        self.last_inspected_at = now
        errors = [r.tool for r in item.results if r.error]
        self._recent_errors.append(errors)
        # a tool is failing when it failed on each of the last few items, not on one odd image
        failing = set.intersection(*(set(e) for e in self._recent_errors))
        self.last_tool_errors = sorted(failing) if len(self._recent_errors) >= 3 else []
        for r in item.results:
            if r.model and r.model.get("name") not in self.models:
                with self._lock:
                    self.models[str(r.model.get("name"))] = dict(r.model)

    def hung_reason(
        self, no_verdict_timeout_s: float, no_frame_timeout_s: float | None
    ) -> str | None:
        """Why the line is not making progress, or None when it is."""
        p = self.pipeline
        now = time.monotonic()
        done = getattr(p, "_capture_done", None)
        if done is not None and done.is_set():
            return "capture has ended"
        dead = [t.name for t in getattr(p, "_threads", []) if not t.is_alive()]
        if dead:
            return f"threads stopped: {', '.join(dead)}"
        last_frame = getattr(p, "last_frame_at", now)
        if no_frame_timeout_s is not None and now - last_frame > no_frame_timeout_s:
            return f"no frame for {now - last_frame:.0f} s"
        with self._lock:
            # the oldest frame seen (at a check) that no inspected verdict has followed yet
            done_at = self.last_inspected_at or self.created
            if self._pending is not None and done_at >= self._pending:
                self._pending = None
            if self._pending is None and last_frame > done_at:
                self._pending = last_frame
            pending = self._pending
        if pending is not None and now - pending > no_verdict_timeout_s:
            return f"frames arrive but no inspected verdict for {now - pending:.0f} s"
        return None


_ATTACH = threading.Lock()
