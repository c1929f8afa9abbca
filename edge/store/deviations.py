"""Deviation records: opened by process control, acknowledged, investigated, closed by QA.

A deviation alert (edge.spc) says the process left its validated state while items still
pass. In a GMP plant that is a quality event with a life: the operator acknowledges it at
the line, someone investigates (root cause, corrective action), QA closes it with an
electronic signature. Every step is also an audit-trail entry; the record is linked to its
batch and listed in the batch report.
"""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from edge.store.db import Database

STATES = ("open", "acknowledged", "investigated", "closed")
COLUMNS = (
    "id",
    "batch_id",
    "opened_utc",
    "measure",
    "rule",
    "item_id",
    "item_index",
    "since_index",
    "value",
    "lcl",
    "ucl",
    "centre",
    "cause",
    "action",
    "state",
    "acked_by",
    "acked_utc",
    "root_cause",
    "corrective_action",
    "closed_by",
    "closed_utc",
)


class DeviationError(ValueError):
    """A step that does not fit the record's state (said in plain words)."""


class Deviations:
    def __init__(self, db: Database, audit: Any = None):
        self.db = db
        self.audit = audit

    def open(self, d: Any) -> int:
        """Store a new deviation alert (an `edge.spc.monitor.Deviation`); its record id."""
        with self.db.transaction() as c:
            cur = c.execute(
                "INSERT INTO deviations (batch_id, opened_utc, measure, rule, item_id, item_index,"
                " since_index, value, lcl, ucl, centre, cause, action)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    d.batch,
                    time.time(),
                    d.measure,
                    d.rule,
                    d.item_id,
                    d.index,
                    d.since_index,
                    d.value,
                    d.limits[0],
                    d.limits[1],
                    d.centre,
                    d.cause,
                    d.action,
                ),
            )
            return int(cur.lastrowid)

    def get(self, rid: int) -> dict[str, Any]:
        row = self.db.conn.execute("SELECT * FROM deviations WHERE id = ?", (rid,)).fetchone()
        if row is None:
            raise DeviationError(f"no deviation record {rid}")
        return dict(row)

    def list(self, batch: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if batch is not None:
            where.append("batch_id = ?")
            args.append(batch)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        sql = "SELECT * FROM deviations" + (" WHERE " + " AND ".join(where) if where else "")
        return [dict(r) for r in self.db.conn.execute(sql + " ORDER BY id", args).fetchall()]

    def unresolved(self, batch: str, limit: int = 5) -> list[dict[str, Any]]:
        """A batch's deviations not yet investigated, newest first (what the HMI shows)."""
        rows = self.db.conn.execute(
            "SELECT id, measure, rule, item_id, item_index, since_index, value, lcl, ucl, cause,"
            " action, state, acked_by FROM deviations WHERE batch_id = ?"
            " AND state IN ('open', 'acknowledged') ORDER BY id DESC LIMIT ?",
            (batch, limit),
        ).fetchall()
        return [dict(r) for r in rows]

    def acknowledge(self, rid: int, by: str) -> dict[str, Any]:
        return self._step(rid, by, "open", "acknowledged", acked_by=by, acked_utc=time.time())

    def investigate(
        self, rid: int, by: str, root_cause: str, corrective_action: str
    ) -> dict[str, Any]:
        if not root_cause.strip() or not corrective_action.strip():
            raise DeviationError("an investigation needs a root cause and a corrective action")
        return self._step(
            rid,
            by,
            ("open", "acknowledged"),
            "investigated",
            root_cause=root_cause.strip(),
            corrective_action=corrective_action.strip(),
        )

    def close(self, rid: int, by: str) -> dict[str, Any]:
        """QA's closing step; the caller has taken the electronic signature first."""
        return self._step(rid, by, "investigated", "closed", closed_by=by, closed_utc=time.time())

    def _step(self, rid: int, by: str, from_: str | tuple[str, ...], to: str, **cols: Any):
        allowed = (from_,) if isinstance(from_, str) else from_
        old = self.get(rid)
        if old["state"] not in allowed:
            raise DeviationError(
                f"deviation {rid} is {old['state']}: it cannot be {to} "
                f"(it must be {' or '.join(allowed)})"
            )
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self.db.transaction() as c:
            c.execute(
                f"UPDATE deviations SET state = ?, {sets} WHERE id = ? AND state = ?",
                (to, *cols.values(), rid, old["state"]),
            )
        new = self.get(rid)
        if self.audit is not None:
            self.audit.record(
                by,
                f"deviation.{to}",
                target=f"deviation/{rid}",
                old={"state": old["state"]},
                new={k: new[k] for k in ("state", *cols)},
            )
        return new

    @staticmethod
    def export_csv(rows: list[dict[str, Any]]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_cell(r.get(k)) for k in COLUMNS])
        return buf.getvalue()

    @staticmethod
    def export_json(rows: list[dict[str, Any]]) -> str:
        return json.dumps(rows, indent=1)


def _cell(v: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v
