"""Jobs beside the line (training, evaluation) take only the CPU the line leaves over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists() or not hasattr(os, "SCHED_IDLE"),
    reason="needs Linux with autogroup scheduling (CONFIG_SCHED_AUTOGROUP) and SCHED_IDLE",
)

PROBE = (
    "import os; from edge.ops.priority import run_in_background as r; "
    "print(r(19)); print(os.sched_getscheduler(0) == os.SCHED_IDLE); "
    "print(open('/proc/self/autogroup').read().strip())"
)


def probe(**popen) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, **popen)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_a_job_in_its_own_session_is_idle_inside_a_lowered_autogroup():
    """In its own session a job is an autogroup of its own, which by default competes with
    the line's at equal weight whatever the job's policy: it must lower the group too."""
    policy, idle, group = probe(start_new_session=True)
    assert (policy, idle) == ("idle + autogroup", "True")
    assert group.endswith(" nice 19"), group


def test_a_process_in_the_lines_session_never_lowers_the_lines_autogroup():
    # Empty in the kernel's default autogroup (the one PID 1 starts in), where a test
    # runner stays when nothing above it ever became a session leader.
    before = Path("/proc/self/autogroup").read_text()
    policy, idle, group = probe()
    assert (policy, idle) == ("idle", "True")
    assert Path("/proc/self/autogroup").read_text() == before
    assert group == before.strip()
