"""systemd notify protocol: READY=1 once the line runs, WATCHDOG=1 only while it makes progress.

The ping is not a timer: each one is earned. Frames must arrive and the tools must
turn them into verdicts; when the pipeline hangs (a stuck worker, a dead recorder, a
camera gone) the pings stop, `STATUS=` says why, and systemd (`WatchdogSec=`) restarts
the service. Meanwhile the tracker keeps rejecting every item at its deadline.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import sdnotify

from edge.ops.config import WatchdogConfig
from edge.ops.progress import Progress

log = logging.getLogger(__name__)


class Notifier:
    """sd_notify(3) through the sdnotify package; a no-op outside systemd (no $NOTIFY_SOCKET)."""

    def __init__(self) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET") or None
        self._n: sdnotify.SystemdNotifier | None = None
        if self.address:
            try:
                self._n = sdnotify.SystemdNotifier(debug=True)
            except OSError as exc:
                log.warning("cannot reach the systemd notify socket: %s", exc)

    @property
    def enabled(self) -> bool:
        return self._n is not None and self._n.socket is not None

    def notify(self, *fields: str) -> bool:
        if not self.enabled:
            return False
        try:
            self._n.notify("\n".join(fields))  # type: ignore[union-attr]
            return True
        except OSError as exc:  # systemd gone or socket full: never take the line down for it
            log.warning("sd_notify failed: %s", exc)
            return False

    def close(self) -> None:
        if self.enabled:
            self._n.socket.close()  # type: ignore[union-attr]
            self._n = None


def watchdog_interval(default_s: float) -> float:
    """A third of systemd's WatchdogSec (from $WATCHDOG_USEC), so one late check is no restart."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
        return min(max(int(usec) / 3e6, 0.02), 10.0)
    return default_s


class Watchdog:
    name = "watchdog"

    def __init__(self, app: Any, cfg: WatchdogConfig, notifier: Notifier | None = None):
        self.app = app
        self.pipeline = getattr(app, "pipeline", app)
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self.progress = Progress.of(app)
        self.interval_s = watchdog_interval(cfg.interval_s)
        self.pings = 0
        self.ready = False
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.notifier.notify("STOPPING=1", "STATUS=stopping")
        if self._thread is not None:
            self._thread.join(5)
        self.notifier.close()

    def status(self) -> dict[str, Any]:
        return {
            "up": self.ready and self.problem is None,
            "systemd": self.notifier.enabled,
            "interval_s": round(self.interval_s, 3),
            "pings": self.pings,
            "detail": self.problem or ("ok" if self.ready else "starting"),
        }

    def _status_line(self) -> str:
        s = self.pipeline.stats.snapshot()
        alarms = len(self.pipeline.alarms.active())
        return (
            f"STATUS=inspecting {s['rate_per_min']:.0f}/min, {s['items']} items, "
            f"{s['deadline_misses']} deadline misses, {alarms} active alarms"
        )

    def check(self) -> str | None:
        return self.progress.hung_reason(self.cfg.no_verdict_timeout_s, self.cfg.no_frame_timeout_s)

    def _run(self) -> None:
        # READY once the pipeline's threads run (the appliance starts components first)
        while not self._stop.is_set() and not getattr(self.pipeline, "_threads", None):
            self._stop.wait(0.02)
        if self._stop.is_set():
            return
        self.ready = True
        self.notifier.notify("READY=1", f"MAINPID={os.getpid()}", "STATUS=line started")
        while not self._stop.wait(self.interval_s):
            problem = self.check()
            if problem is None:
                if self.problem is not None:
                    log.warning("line makes progress again; watchdog pings resume")
                self.problem = None
                fields = ["WATCHDOG=1"] if self.cfg.enabled else []
                if self.notifier.notify(*fields, self._status_line()) and fields:
                    self.pings += 1
            else:
                if self.problem is None:
                    # under systemd this restarts the service soon; outside it, it is information
                    level = logging.ERROR if self.notifier.enabled else logging.INFO
                    log.log(level, "line is not making progress (%s); watchdog pings stop", problem)
                self.problem = problem
                self.notifier.notify(f"STATUS=not making progress: {problem}")


def build(app: Any) -> Watchdog:
    """Always built: Type=notify needs READY=1 even with `ops.watchdog.enabled: false`."""
    return Watchdog(app, app.cfg.ops.watchdog)
