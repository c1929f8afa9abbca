"""The alarm log: every raise, clear and acknowledgement, kept in the database.

The line's `Alarms` holds what is active now; this log is what a batch report and an
inspection need later, across restarts. It is written by its own bus subscriber, so an
alarm raised on an inspection thread never waits for the database.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from edge.bus import Bus
from edge.store.db import Database

log = logging.getLogger(__name__)

RESTART = "appliance restart"


class AlarmLog:
    def __init__(self, db: Database):
        self.db = db

    def subscribe(self, bus: Bus) -> None:
        """Start logging the bus's alarm events; first close what a previous run left open."""
        self.close_open(RESTART)
        bus.subscribe("alarm", self._on_event, name="alarm-log")

    def _on_event(self, _topic: str, ev: dict[str, Any]) -> None:
        who = ev.get("acked_by") if ev["event"] == "acked" else None
        self.append(ev["event"], ev, by=who)

    def append(self, event: str, a: dict[str, Any], by: str | None = None) -> None:
        ts = {"cleared": a.get("cleared_utc"), "acked": a.get("acked_utc")}.get(event)
        try:
            with self.db.transaction() as c:
                c.execute(
                    "INSERT INTO alarm_log (ts_utc, event, code, message, severity, line_stop,"
                    " raised_utc, by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        ts or a.get("raised_utc") or time.time(),
                        event,
                        a["code"],
                        a["message"],
                        a["severity"],
                        int(bool(a["line_stop"])),
                        a["raised_utc"],
                        by,
                    ),
                )
        except sqlite3.Error as exc:  # the active alarm is still shown; only its log line is lost
            log.error("alarm log not written (%s %s): %s", event, a.get("code"), exc)

    def close_open(self, why: str) -> int:
        """Alarms raised and never cleared (the process stopped) are closed as of now."""
        now = time.time()
        opened = self.db.conn.execute(
            "SELECT * FROM alarm_log r WHERE event = 'raised' AND NOT EXISTS (SELECT 1"
            " FROM alarm_log c WHERE c.event = 'cleared' AND c.code = r.code"
            " AND c.raised_utc = r.raised_utc)"
        ).fetchall()
        for r in opened:
            self.append("cleared", {**dict(r), "cleared_utc": now}, by=why)
        return len(opened)

    def history(self, since: float | None = None, until: float | None = None) -> list[dict]:
        """One dict per alarm occurrence raised in [since, until], oldest first."""
        rows = self.db.conn.execute(
            "SELECT * FROM alarm_log WHERE raised_utc >= ? AND raised_utc <= ? ORDER BY id",
            (since if since is not None else 0.0, until if until is not None else float("inf")),
        ).fetchall()
        out: dict[tuple[str, float], dict[str, Any]] = {}
        for r in rows:
            key = (r["code"], r["raised_utc"])
            a = out.setdefault(
                key,
                {
                    "code": r["code"],
                    "message": r["message"],
                    "severity": r["severity"],
                    "line_stop": bool(r["line_stop"]),
                    "raised_utc": r["raised_utc"],
                    "cleared_utc": None,
                    "cleared_by": None,
                    "acked_by": None,
                    "acked_utc": None,
                },
            )
            if r["event"] == "cleared":
                a["cleared_utc"], a["cleared_by"] = r["ts_utc"], r["by"]
            elif r["event"] == "acked":
                a["acked_by"], a["acked_utc"] = r["by"], r["ts_utc"]
        for a in out.values():
            a["active"] = a["cleared_utc"] is None
        return list(out.values())
