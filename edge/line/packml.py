"""The appliance's PackML state machine (after ISA-TR88.00.02).

Wait states change only on a command; acting states (…ing) finish by themselves
("state complete") here, since the appliance has nothing slow to do in them. Faults
drive it too: a line-stop alarm holds the line while it executes. Every change is
published on the bus topic "state" (MQTT `state`, retained; the HMI shows it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)

STATE_SCHEMA = "edge-inspect/state"
STATE_VERSION = 1


class State(str, Enum):
    STOPPED = "Stopped"
    STARTING = "Starting"
    IDLE = "Idle"
    EXECUTE = "Execute"
    COMPLETING = "Completing"
    COMPLETE = "Complete"
    HOLDING = "Holding"
    HELD = "Held"
    UNHOLDING = "Unholding"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    UNSUSPENDING = "Unsuspending"
    STOPPING = "Stopping"
    ABORTING = "Aborting"
    ABORTED = "Aborted"
    CLEARING = "Clearing"
    RESETTING = "Resetting"


S = State

#: (state, command) -> acting state
COMMANDS: dict[tuple[State, str], State] = {
    (S.STOPPED, "reset"): S.RESETTING,
    (S.COMPLETE, "reset"): S.RESETTING,
    (S.IDLE, "start"): S.STARTING,
    (S.EXECUTE, "complete"): S.COMPLETING,
    (S.EXECUTE, "hold"): S.HOLDING,
    (S.SUSPENDED, "hold"): S.HOLDING,
    (S.HELD, "unhold"): S.UNHOLDING,
    (S.EXECUTE, "suspend"): S.SUSPENDING,
    (S.SUSPENDED, "unsuspend"): S.UNSUSPENDING,
    (S.ABORTED, "clear"): S.CLEARING,
}
_STOPPABLE = {
    S.IDLE,
    S.STARTING,
    S.EXECUTE,
    S.COMPLETING,
    S.COMPLETE,
    S.HOLDING,
    S.HELD,
    S.UNHOLDING,
    S.SUSPENDING,
    S.SUSPENDED,
    S.UNSUSPENDING,
    S.RESETTING,
}
for _s in _STOPPABLE:
    COMMANDS[(_s, "stop")] = S.STOPPING
for _s in State:
    if _s not in (S.ABORTING, S.ABORTED):
        COMMANDS[(_s, "abort")] = S.ABORTING

#: acting state -> the wait state it completes into
STATE_COMPLETE: dict[State, State] = {
    S.RESETTING: S.IDLE,
    S.STARTING: S.EXECUTE,
    S.COMPLETING: S.COMPLETE,
    S.HOLDING: S.HELD,
    S.UNHOLDING: S.EXECUTE,
    S.SUSPENDING: S.SUSPENDED,
    S.UNSUSPENDING: S.EXECUTE,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
    S.CLEARING: S.STOPPED,
}


class InvalidCommand(ValueError):
    pass


class PackML:
    def __init__(self, publish: Callable[[dict[str, Any]], None] | None = None):
        self.state = S.STOPPED
        self.publish = publish
        self.history: list[dict[str, Any]] = []
        self._lock = threading.RLock()

    def allowed(self) -> list[str]:
        return sorted(c for (s, c) in COMMANDS if s is self.state)

    def command(self, cmd: str, cause: str | None = None) -> State:
        """Apply a command; acting states complete at once. InvalidCommand if not allowed now."""
        with self._lock:
            target = COMMANDS.get((self.state, cmd))
            if target is None:
                raise InvalidCommand(
                    f"command {cmd!r} is not allowed in state {self.state.value}"
                    f" (allowed: {', '.join(self.allowed()) or 'none'})"
                )
            self._enter(target, cause or f"command:{cmd}")
            while self.state in STATE_COMPLETE:
                self._enter(STATE_COMPLETE[self.state], "state complete")
            return self.state

    def try_command(self, cmd: str, cause: str | None = None) -> bool:
        try:
            self.command(cmd, cause)
        except InvalidCommand:
            return False
        return True

    def message(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "schema": STATE_SCHEMA,
            "version": STATE_VERSION,
            "state": self.state.value,
            "previous": last.get("previous"),
            "cause": last.get("cause"),
            "time": last.get("time") or _now(),
        }

    def _enter(self, new: State, cause: str) -> None:
        old, self.state = self.state, new
        ev = {"previous": old.value, "state": new.value, "cause": cause, "time": _now()}
        self.history.append(ev)
        del self.history[:-200]
        log.info("PackML %s -> %s (%s)", old.value, new.value, cause)
        if self.publish is not None:
            self.publish(self.message())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class PackMLComponent:
    """Drives the state machine from batches and alarms; resets line-stop requests on reset."""

    name = "packml"

    def __init__(self, app: Any):
        self.app = app
        self.bus = app.pipeline.bus
        self.machine = PackML(lambda msg: self.bus.publish("state", msg))
        self._subs: list[Any] = []

    def start(self) -> None:
        self._subs.append(self.bus.subscribe(["alarm", "batch"], self._on_event, name="packml"))
        self.command("reset")
        if self.app.pipeline.batch is not None:
            self.command("start")

    def stop(self) -> None:
        self.machine.try_command("stop", "appliance stopped")
        time.sleep(0)  # let the last state reach the subscribers before they close
        for s in self._subs:
            s.close()

    def status(self) -> dict[str, Any]:
        return {"up": True, "state": self.machine.state.value, "allowed": self.machine.allowed()}

    def command(self, cmd: str, cause: str | None = None) -> State:
        state = self.machine.command(cmd, cause)
        if cmd in ("reset", "clear", "unhold"):
            for c in getattr(self.app, "components", []):
                reset = getattr(c, "reset_line_stop", None)
                if reset is not None:
                    reset()
        return state

    def _on_event(self, topic: str, ev: dict[str, Any]) -> None:
        m = self.machine
        if topic == "alarm" and ev.get("event") == "raised" and ev.get("line_stop"):
            if m.state is S.EXECUTE:
                m.try_command("hold", f"fault:{ev.get('code')}")
        elif topic == "batch" and ev.get("event") == "started":
            if m.state in (S.STOPPED, S.COMPLETE):
                m.try_command("reset", "batch started")
            m.try_command("start", f"batch {ev.get('id')} started")
        elif topic == "batch" and ev.get("event") == "stopped":
            m.try_command("complete", f"batch {ev.get('id')} stopped")


def build(app: Any) -> PackMLComponent:
    return PackMLComponent(app)
