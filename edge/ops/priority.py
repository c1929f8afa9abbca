"""CPU priority of the processes beside the line (web UI, training and evaluation jobs).

On Linux they run under SCHED_IDLE: they get a core only when no inspection thread wants
it, so a burst of HMI requests or a training epoch cannot delay a verdict. Plain `nice`
is not enough on a two-core box: a nice-19 process still takes a share of a busy core
(about 1.5% per competing thread by weight, but whole scheduler slices at a time), which
is what shows up in the line's p99. Where SCHED_IDLE is unavailable, `nice` is the
fallback.

The line's own process never calls this. The cost: these processes starve while the line
saturates the CPU; the HMI then answers late, which is the right order of things.
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
