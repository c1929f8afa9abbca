"""The challenge again while a batch runs: every `challenge.every_min` minutes, and at the
first item after each shift start (`challenge.shifts`, local time).

A challenge that passed at batch start proves the inspection then; plants repeat it on an
interval or at shift change (a new crew, perhaps a lamp or camera touched) to prove it still
rejects what it must. A failure raises CHALLENGE_FAILED, a line-stop alarm: PackML holds the
batch out of EXECUTE (the packs since the last good challenge are in doubt), and the run is
recorded unit by unit like every challenge run; the batch is not ended by the appliance, the
operator and QA decide.

The shift check rides on the line's own items (a bus subscriber of its own): the challenge
runs at the first item triggered after a shift start, not at a wall-clock instant when the
line may be idle, and never on the line's threads.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


def shift_crossed(shifts: list[str], before: dt.datetime, now: dt.datetime) -> str | None:
    """The last shift start (HH:MM, local) in (before, now], None when none lies between."""
    if not shifts or now <= before:
        return None
    found = None
    day = before.date()
    while day <= now.date():
        for s in shifts:
            hh, mm = (int(x) for x in s.split(":"))
            t = dt.datetime.combine(day, dt.time(hh, mm), tzinfo=now.tzinfo)
            if before < t <= now:
                found = s  # shifts are sorted and days ascend: the last one wins
        day += dt.timedelta(days=1)
    return found


def local(epoch_s: float) -> dt.datetime:
    """An item's trigger time in the appliance's local time zone (shift times are local)."""
    return dt.datetime.fromtimestamp(epoch_s).astimezone()


class ChallengeSchedule:
    name = "challenge"

    def __init__(self, app: Any, every_s: float | None, shifts: list[str] | None = None):
        self.app = app
        self.every_s = every_s
        self.shifts = list(shifts or [])
        self.runs = 0
        self.last_shift: str | None = None
        self._last_item: dt.datetime | None = None
        self._due: str | None = None  # the shift whose challenge waits for the loop
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sub: Any = None

    def start(self) -> None:
        if self.shifts:
            self._sub = self.app.pipeline.bus.subscribe(
                "verdict", lambda _t, item: self.on_item(item), name="challenge-shift"
            )
        self._thread = threading.Thread(target=self._loop, name="challenge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._sub is not None:
            self._sub.close()
        if self._thread is not None:
            self._thread.join(30)

    def status(self) -> dict[str, Any]:
        return {
            "up": True,
            "every_s": self.every_s,
            "shifts": self.shifts,
            "last_shift": self.last_shift,
            "runs": self.runs,
            "last": self.app.changeover.summary(),
        }

    def on_item(self, item: Any) -> str | None:
        """A final item of the line: its trigger time after a shift start makes the challenge
        due (run by the schedule's thread). Returns the shift it made due, if any."""
        now = local(item.wall_trigger)
        before, self._last_item = self._last_item, now
        if before is None or getattr(item, "batch", None) is None:
            return None
        shift = shift_crossed(self.shifts, before, now)
        if shift is not None:
            self._due = shift
            self._wake.set()
        return shift

    def run_once(self, why: str = "interval") -> None:
        """Challenge the running batch now (nothing when no batch runs)."""
        p = self.app.pipeline
        batch = p.batch
        if batch is None:
            return
        res = self.app.changeover.run(batch, by=f"system:{why}")
        if res is None:
            return
        self.runs += 1
        if not res.passed:
            msg = f"{why} challenge failed in lot {batch.lot}: {res.why()}"
            p.alarms.raise_("CHALLENGE_FAILED", msg, "critical", True)
            audit = getattr(self.app, "audit", None)
            if audit is not None:
                audit.record(
                    "system",
                    "challenge.failed",
                    f"batch:{batch.id}",
                    new=res.summary(),
                    reason=f"{why} challenge: the batch is held",
                )
        elif p.alarms.is_active("CHALLENGE_FAILED"):
            p.alarms.clear("CHALLENGE_FAILED")

    def run_due(self) -> bool:
        """Run the challenge a shift start made due; True when one ran."""
        shift, self._due = self._due, None
        if shift is None:
            return False
        self.last_shift = shift
        self.run_once(f"shift {shift}")
        return True

    def _loop(self) -> None:
        next_at = time.monotonic() + self.every_s if self.every_s else None
        while not self._stop.is_set():
            timeout = max(0.0, next_at - time.monotonic()) if next_at is not None else None
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                ran = self.run_due()
                if next_at is not None and time.monotonic() >= next_at:
                    if not ran:
                        self.run_once()
                    next_at = time.monotonic() + self.every_s
            except Exception:
                log.exception("repeated challenge")


def build(app: Any) -> ChallengeSchedule | None:
    c = app.cfg.challenge
    if not c.every_min and not c.shifts:
        return None
    return ChallengeSchedule(app, c.every_min * 60.0 if c.every_min else None, c.shifts)
