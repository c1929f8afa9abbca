"""The challenge again while a batch runs: every `challenge.every_min` minutes.

A challenge that passed at batch start proves the inspection then; plants repeat it on an
interval (or at shift change) to prove it still rejects what it must. A failure raises
CHALLENGE_FAILED (a line-stop alarm: the packs since the last good challenge are in doubt)
and is recorded like every challenge run; the batch is not ended by the appliance, the
operator and QA decide.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class ChallengeSchedule:
    name = "challenge"

    def __init__(self, app: Any, every_s: float):
        self.app = app
        self.every_s = every_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="challenge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def status(self) -> dict[str, Any]:
        return {
            "up": True,
            "every_s": self.every_s,
            "runs": self.runs,
            "last": self.app.changeover.summary(),
        }

    def run_once(self) -> None:
        """Challenge the running batch now (nothing when no batch runs)."""
        p = self.app.pipeline
        batch = p.batch
        if batch is None:
            return
        res = self.app.changeover.run(batch, by="system:schedule")
        if res is None:
            return
        self.runs += 1
        if not res.passed:
            msg = f"interval challenge failed in lot {batch.lot}: {res.why()}"
            p.alarms.raise_("CHALLENGE_FAILED", msg, "critical", True)
        elif p.alarms.is_active("CHALLENGE_FAILED"):
            p.alarms.clear("CHALLENGE_FAILED")

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except Exception:
                log.exception("interval challenge")


def build(app: Any) -> ChallengeSchedule | None:
    every = app.cfg.challenge.every_min
    return ChallengeSchedule(app, every * 60.0) if every else None
