"""CPU priority of the processes beside the line (web UI, training and evaluation jobs).

Training and evaluation jobs run under SCHED_IDLE on Linux: they get a core only when no
other thread wants it. The web process runs at `nice` 12 by default, not SCHED_IDLE:
with both under SCHED_IDLE, a training job starved the web process, and the line's p50
doubled (measured with bench/web_load.py --training; the mechanism was not pinned down).
Where SCHED_IDLE is unavailable, `nice` is the fallback.

The line's own process never calls this.
"""

from __future__ import annotations

import contextlib
import os


def run_in_background(nice: int = 19, idle: bool = True) -> str:
    """Lower the calling process (and the threads it starts later); returns the policy set."""
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            with contextlib.suppress(OSError):
                os.nice(nice)  # SCHED_IDLE ignores it; it documents intent in `ps`
            return "idle"
        except OSError:
            pass
    with contextlib.suppress(OSError):
        os.nice(nice)
        return f"nice {nice}"
    return "unchanged"
