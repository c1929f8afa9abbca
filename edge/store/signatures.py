"""Electronic signatures: who signed what, when, meaning what, and why.

The home of the `signatures` table. A signature is taken by the web layer (password
again and a reason, `edge.web.deps.esign`) and recorded here and in the audit trail,
whose entry hash it carries.
"""

from __future__ import annotations

from typing import Any

from edge.store.db import Database


def add(db: Database, sig: dict[str, Any]) -> None:
    """Record a signature: username, full_name, meaning, target, reason, ts_utc, audit_hash."""
    with db.transaction() as c:
        c.execute(
            "INSERT INTO signatures (username, full_name, meaning, target, reason, ts_utc,"
            " audit_hash) VALUES (:username, :full_name, :meaning, :target, :reason, :ts_utc,"
            " :audit_hash)",
            sig,
        )


def for_target(db: Database, target: str) -> list[dict[str, Any]]:
    """Every signature on one record (e.g. `batch:<id>`, `model:<name>/<version>`), in order."""
    rows = db.conn.execute(
        "SELECT * FROM signatures WHERE target = ? ORDER BY id", (target,)
    ).fetchall()
    return [dict(r) for r in rows]
