"""The audit trail: append-only, hash-chained records of every change (who, what, old, new, why, when).

Each entry carries the hash of the one before it, so editing or deleting any entry
breaks the chain from there on; `audit_head` holds the last id and hash so removing
the newest entries is detected too. SQLite triggers refuse UPDATE and DELETE as a
second layer (someone with the file can drop them; the chain still tells).
Times are UTC from the appliance clock, never from the browser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
from typing import Any

from edge.store import csv_safe
from edge.store.db import Database

log = logging.getLogger(__name__)

GENESIS = "0" * 64
FIELDS = ("id", "ts_utc", "user", "action", "target", "old", "new", "reason", "prev_hash", "hash")

_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _text(value: Any) -> str | None:
    """Old/new values are stored as text: strings as they are, anything else as sorted JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(row: dict[str, Any]) -> str:
    """SHA-256 over the entry's fields (without its own hash), in a fixed canonical form."""
    body = {k: row.get(k) for k in FIELDS if k != "hash"}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class AuditTrail:
    def __init__(self, db: Database):
        self.db = db
        conn = db.connect()
        try:
            for sql in _TRIGGERS:
                conn.execute(sql)
        finally:
            conn.close()

    def record(
        self,
        user: str,
        action: str,
        target: str | None = None,
        old: Any = None,
        new: Any = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Append one entry and return it (with its hash)."""
        if not user or not action:
            raise ValueError("an audit entry needs a user and an action")
        with self.db.transaction() as c:
            head = c.execute("SELECT last_id, last_hash FROM audit_head WHERE one = 1").fetchone()
            last_id, prev = (int(head[0]), head[1]) if head else (0, GENESIS)
            row: dict[str, Any] = {
                "id": last_id + 1,
                "ts_utc": utc_now(),
                "user": user,
                "action": action,
                "target": target,
                "old": _text(old),
                "new": _text(new),
                "reason": reason,
                "prev_hash": prev,
            }
            row["hash"] = entry_hash(row)
            c.execute(
                "INSERT INTO audit (id, ts_utc, user, action, target, old, new, reason, prev_hash,"
                " hash) VALUES (:id, :ts_utc, :user, :action, :target, :old, :new, :reason,"
                " :prev_hash, :hash)",
                row,
            )
            c.execute(
                "INSERT INTO audit_head (one, last_id, last_hash) VALUES (1, ?, ?)"
                " ON CONFLICT(one) DO UPDATE SET last_id = excluded.last_id,"
                " last_hash = excluded.last_hash",
                (row["id"], row["hash"]),
            )
        return row

    def hook(self, user: str, reason: str | None = None, target: str | None = None):
        """An `(action, details)` callable for code that takes an audit hook (model registry)."""

        def _hook(action: str, details: dict[str, Any]) -> None:
            t = target or "/".join(str(details[k]) for k in ("name", "version") if details.get(k))
            self.record(user, action, target=t or None, new=details, reason=reason)

        return _hook

    # ------------------------------------------------------------------ reading

    def entries(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        user: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        where, params = [], []
        for col, op, val in (
            ("ts_utc", ">=", since),
            ("ts_utc", "<=", until),
            ("user", "=", user),
            ("target", "=", target),
        ):
            if val is not None:
                where.append(f"{col} {op} ?")
                params.append(val)
        if action:
            where.append("action LIKE ?")
            params.append(action.replace("*", "%"))
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id " + ("DESC" if newest_first else "ASC")
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [dict(r) for r in self.db.conn.execute(sql, params).fetchall()]

    def verify(self) -> tuple[bool, list[str]]:
        """Walk the chain: every entry's hash, every link, no gaps, and the head at the end."""
        problems: list[str] = []
        conn = self.db.connect()
        try:
            prev, expect_id = GENESIS, 1
            for r in conn.execute("SELECT * FROM audit ORDER BY id"):
                row = dict(r)
                if row["id"] != expect_id:
                    problems.append(
                        f"entry {expect_id}"
                        + (f"..{row['id'] - 1}" if row["id"] - 1 > expect_id else "")
                        + " missing (deleted)"
                    )
                if row["prev_hash"] != prev:
                    problems.append(f"entry {row['id']}: does not link to the entry before it")
                if entry_hash(row) != row["hash"]:
                    problems.append(f"entry {row['id']}: content does not match its hash (edited)")
                prev, expect_id = row["hash"], row["id"] + 1
            head = conn.execute(
                "SELECT last_id, last_hash FROM audit_head WHERE one = 1"
            ).fetchone()
        finally:
            conn.close()
        last_id = expect_id - 1
        if head is None:
            if last_id:
                problems.append("the audit head record is missing")
        elif int(head[0]) != last_id or head[1] != prev:
            problems.append(
                f"the chain ends at entry {last_id} but the head says {head[0]}: "
                "newest entries deleted or head edited"
            )
        if problems:
            log.error("audit trail verification failed: %s", "; ".join(problems))
        return not problems, problems

    # ------------------------------------------------------------------ export

    def export_csv(self, rows: list[dict[str, Any]] | None = None) -> str:
        rows = self.entries() if rows is None else rows
        buf = io.StringIO()
        w = csv_safe.DictWriter(buf, fieldnames=list(FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
        return buf.getvalue()

    def export_json(self, rows: list[dict[str, Any]] | None = None) -> str:
        rows = self.entries() if rows is None else rows
        ok, problems = self.verify()
        return json.dumps(
            {"verified": ok, "problems": problems, "entries": rows}, indent=1, ensure_ascii=False
        )
