"""The appliance's PackML state machine (ISA-TR88.00.02)."""

from __future__ import annotations

import jsonschema
import pytest

from edge.line.packml import InvalidCommand, PackML, State
from edge.publish.encoding import load_schema


def test_reset_and_start_bring_the_line_to_execute_through_the_acting_states():
    seen = []
    m = PackML(seen.append)
    m.command("reset")
    assert m.state is State.IDLE
    m.command("start")
    assert m.state is State.EXECUTE
    assert [s["state"] for s in seen] == ["Resetting", "Idle", "Starting", "Execute"]
    for s in seen:
        jsonschema.validate(s, load_schema("state"))


def test_hold_and_unhold_return_to_execute():
    m = PackML()
    m.command("reset")
    m.command("start")
    m.command("hold", "fault:BIN_FULL")
    assert m.state is State.HELD and m.history[-2]["cause"] == "fault:BIN_FULL"
    m.command("unhold")
    assert m.state is State.EXECUTE


def test_a_command_not_allowed_in_the_state_is_refused_and_changes_nothing():
    m = PackML()
    with pytest.raises(InvalidCommand, match="'start' is not allowed in state Stopped"):
        m.command("start")
    assert m.state is State.STOPPED


def test_abort_from_anywhere_needs_clear_then_reset():
    m = PackML()
    m.command("reset")
    m.command("start")
    m.command("abort")
    assert m.state is State.ABORTED
    assert not m.try_command("reset")
    m.command("clear")
    assert m.state is State.STOPPED
    m.command("reset")
    assert m.state is State.IDLE


def test_complete_then_reset_for_the_next_batch():
    m = PackML()
    for c in ("reset", "start", "complete"):
        m.command(c)
    assert m.state is State.COMPLETE
    m.command("reset")
    assert m.state is State.IDLE


def test_suspend_and_stop():
    m = PackML()
    for c in ("reset", "start", "suspend"):
        m.command(c)
    assert m.state is State.SUSPENDED
    m.command("unsuspend")
    assert m.state is State.EXECUTE
    m.command("stop")
    assert m.state is State.STOPPED
