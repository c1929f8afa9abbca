"""The primary host as the edge node sees it: Sparkplug 3.0 STATE messages, read strictly.

`spBv1.0/STATE/<host id>` carries `{"online": bool, "timestamp": ms}` (UTF-8 JSON, retained).
A host's offline (its Will, or published on a clean stop) carries the timestamp of its
online; a new host session a newer one. So an older STATE, or an online with the
timestamp of an offline already seen, is a replay (a bridge, a broker's old retained
message) and changes nothing; nor does a malformed one. Each is counted and logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("edge.publish.sparkplug")


@dataclass(frozen=True, slots=True)
class HostState:
    online: bool
    timestamp: int


def parse_state(data: bytes) -> HostState:
    """Exactly `{"online": bool, "timestamp": int}`; anything else raises ValueError saying why."""
    try:
        msg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not UTF-8 JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise ValueError("not a JSON object")
    online, ts = msg.get("online"), msg.get("timestamp")
    if not isinstance(online, bool):
        raise ValueError("'online' must be true or false")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise ValueError("'timestamp' must be a non-negative integer (ms since the epoch)")
    return HostState(online, ts)


class PrimaryHost:
    """Whether the configured primary host is online (always, with none configured)."""

    def __init__(self, host_id: str | None, quiet: Callable[..., Any]):
        self.id = host_id
        self.online = host_id is None
        self.malformed = 0
        self.stale = 0
        self._quiet = quiet
        self._ts = -1  # the newest STATE seen, across sessions
        self._said_offline = False

    @property
    def topic(self) -> str | None:
        return None if self.id is None else f"spBv1.0/STATE/{self.id}"

    def new_session(self) -> None:
        """Offline until its (retained) STATE says otherwise in this MQTT session."""
        if self.id is not None:
            self.online = False

    def _taken(self) -> str:
        return "online" if self.online else "offline"

    def on_state(self, payload: bytes) -> None:
        try:
            st = parse_state(payload)
        except ValueError as exc:
            self.malformed += 1
            self._quiet(
                "state",
                "Sparkplug STATE of primary host %s malformed (%s): ignored, the host is still "
                "taken as %s",
                self.id,
                exc,
                self._taken(),
            )
            return
        if st.timestamp < self._ts or (
            st.timestamp == self._ts and st.online and self._said_offline
        ):
            self.stale += 1
            self._quiet(
                "stale",
                "Sparkplug STATE of primary host %s replayed (online %s, timestamp %d; the last "
                "one: %s, %d): ignored, the host is still taken as %s",
                self.id,
                st.online,
                st.timestamp,
                "offline" if self._said_offline else "online",
                self._ts,
                self._taken(),
            )
            return
        self._ts = st.timestamp
        self._said_offline = not st.online
        if st.online != self.online:
            log.info("Sparkplug primary host %s %s", self.id, "online" if st.online else "offline")
        self.online = st.online
