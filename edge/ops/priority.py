"""CPU priority of the processes beside the line (web UI, training and evaluation jobs).

Training and evaluation jobs run under SCHED_IDLE on Linux: they get a core only when no
other thread wants it. The web process runs at `nice` 12 by default. Where SCHED_IDLE is
unavailable, `nice` is the fallback.

Jobs run in their own session (so that cancel can stop the whole process group). With the
kernel's autogroup scheduling (`kernel.sched_autogroup_enabled`, on by default in most
distributions, and in effect whenever the process is in the root CPU cgroup), every
session is a group of its own that competes with the line's session at equal weight, and
a task's SCHED_IDLE or nice only counts inside its group. A training job in its own
session then took half the CPU from the line whatever its policy: the line's p99 rose by
74 % (bench/web_load.py --training); with the group lowered it rose by 6 %. So a session
leader also lowers its autogroup. Under the systemd unit (CPUWeight= turns the CPU
controller on for the service) autogroups do not apply and SCHED_IDLE works as such.

The line's own process never calls this.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")


def lower_autogroup(nice: int = 19, path: Path = AUTOGROUP) -> bool:
    """Lower this session's autogroup, but only if this process leads its own session.

    A process inside the line's session must not do this: it would lower the line too."""
    if os.getsid(0) != os.getpid() or not path.exists():
        return False
    try:
        path.write_text(str(nice))
    except OSError:
        return False
    return True


def run_in_background(nice: int = 19, idle: bool = True) -> str:
    """Lower the calling process (and the threads it starts later); returns the policy set."""
    group = " + autogroup" if lower_autogroup(nice) else ""
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            with contextlib.suppress(OSError):
                os.nice(nice)  # SCHED_IDLE ignores it; it documents intent in `ps`
            return "idle" + group
        except OSError:
            pass
    with contextlib.suppress(OSError):
        os.nice(nice)
        return f"nice {nice}" + group
    return "unchanged" + group
