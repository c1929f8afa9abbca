"""Free space under the state directory, in steps: what to give up before the records.

A full disk must not take the records with it. As free space falls, the appliance gives
up evidence it can live without, one step at a time, each with its own alarm:

1. below `records.pass_images_min_free_mb`: pass samples are no longer kept (minor);
2. below `records.reject_images_min_free_mb`: reject images are no longer kept (major);
3. below `records.min_free_mb`: the database's own reserve is reached: a critical,
   line-stop alarm, and `/readyz` answers 503 (rows are still written while SQLite can).

Each step clears (and what it stopped resumes) only when free space is back above its
threshold by `records.disk_hysteresis_mb`, so images do not refill the disk the moment a
few megabytes are freed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 1024 * 1024


@dataclass(frozen=True)
class Step:
    code: str  # the alarm code
    attr: str  # the threshold's key under `records`
    severity: str
    line_stop: bool
    what: str  # what the step gives up, for the alarm text


STEPS = (
    Step("DISK_LOW_PASS_IMAGES", "pass_images_min_free_mb", "minor", False, "pass samples"),
    Step("DISK_LOW_REJECT_IMAGES", "reject_images_min_free_mb", "major", False, "reject images"),
    Step("DISK_LOW_RECORDS", "min_free_mb", "critical", True, "the database's reserve"),
)


def free_mb(path: str | Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / MB


class DiskGuard:
    """Checks free space at most every `interval_s` and keeps one alarm per step reached."""

    def __init__(
        self,
        path: str | Path,
        records: Any,
        alarms: Any,
        *,
        interval_s: float = 0.5,
        probe: Callable[[str | Path], float] = free_mb,
    ):
        self.path = Path(path)
        self.records = records
        self.alarms = alarms
        self.interval_s = interval_s
        self.probe = probe
        self.free: float | None = None
        self._below: set[str] = set()
        self._checked = 0.0
        self._lock = threading.Lock()

    def check(self, force: bool = False) -> float | None:
        """Free MB now (rate-limited); raises and clears the step alarms on the way."""
        now = time.monotonic()
        with self._lock:
            if not force and self.free is not None and now - self._checked < self.interval_s:
                return self.free
            self._checked = now
            try:
                free = self.probe(self.path)
            except OSError:
                free = None  # cannot tell: keep the last state
            if free is None:
                return self.free
            self.free = free
            hyst = self.records.disk_hysteresis_mb
            changes: list[tuple[Step, bool]] = []
            for step in STEPS:
                limit = getattr(self.records, step.attr)
                if step.code not in self._below and free < limit:
                    self._below.add(step.code)
                    changes.append((step, True))
                elif step.code in self._below and free >= limit + hyst:
                    self._below.discard(step.code)
                    changes.append((step, False))
        for step, raised in changes:
            if raised:
                limit = getattr(self.records, step.attr)
                self.alarms.raise_(
                    step.code,
                    f"free space {free:.0f} MB below records.{step.attr} ({limit:g} MB):"
                    f" {step.what} given up",
                    step.severity,
                    step.line_stop,
                )
            elif self.alarms.is_active(step.code):
                self.alarms.clear(step.code)
        return free

    def below(self, code: str) -> bool:
        return code in self._below

    @property
    def keep_pass_images(self) -> bool:
        return "DISK_LOW_PASS_IMAGES" not in self._below

    @property
    def keep_reject_images(self) -> bool:
        return "DISK_LOW_REJECT_IMAGES" not in self._below

    @property
    def records_at_risk(self) -> bool:
        return "DISK_LOW_RECORDS" in self._below
