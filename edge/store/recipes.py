"""Controlled documents in SQLite: recipe and product versions, and challenge runs.

The home of the `documents` and `challenge_runs` tables. A document is one `kind`
(`recipe`, `product`) and `name` (recipe name, product GTIN) in numbered versions, each
`draft`, `approved` or `retired`; the database allows one approved version per name (a
partial unique index), so no bug can leave two in force. Content is canonical JSON with
its SHA-256, the hash every item records. The rules of the life cycle (who may approve,
what approval checks, the audit diff) live in `edge.recipes`; this module only speaks SQL.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from edge.store.db import Database


def canonical(content: dict[str, Any]) -> str:
    """The one text form of a document: sorted keys, no spaces (its hash is stable)."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(content).encode("utf-8")).hexdigest()


def _row(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["content"] = json.loads(d["content"])
    return d


def versions(db: Database, kind: str, name: str) -> list[dict[str, Any]]:
    rows = db.conn.execute(
        "SELECT * FROM documents WHERE kind = ? AND name = ? ORDER BY version", (kind, name)
    ).fetchall()
    return [_row(r) for r in rows]


def get(db: Database, kind: str, name: str, version: int) -> dict[str, Any] | None:
    r = db.conn.execute(
        "SELECT * FROM documents WHERE kind = ? AND name = ? AND version = ?",
        (kind, name, version),
    ).fetchone()
    return _row(r) if r else None


def approved(db: Database, kind: str, name: str) -> dict[str, Any] | None:
    r = db.conn.execute(
        "SELECT * FROM documents WHERE kind = ? AND name = ? AND status = 'approved'",
        (kind, name),
    ).fetchone()
    return _row(r) if r else None


def names(db: Database, kind: str) -> list[str]:
    rows = db.conn.execute(
        "SELECT DISTINCT name FROM documents WHERE kind = ? ORDER BY name", (kind,)
    ).fetchall()
    return [r[0] for r in rows]


def by_hash(db: Database, kind: str, name: str, sha256: str) -> dict[str, Any] | None:
    r = db.conn.execute(
        "SELECT * FROM documents WHERE kind = ? AND name = ? AND sha256 = ?"
        " ORDER BY version DESC LIMIT 1",
        (kind, name, sha256),
    ).fetchone()
    return _row(r) if r else None


def add(
    db: Database,
    kind: str,
    name: str,
    content: dict[str, Any],
    by: str,
    status: str = "draft",
    note: str = "",
) -> int:
    """Store a new version (the next number) and return its number."""
    now = time.time()
    with db.transaction() as c:
        row = c.execute(
            "SELECT COALESCE(MAX(version), 0) FROM documents WHERE kind = ? AND name = ?",
            (kind, name),
        ).fetchone()
        version = int(row[0]) + 1
        approved_now = status == "approved"
        if approved_now:
            c.execute(
                "UPDATE documents SET status = 'retired', retired_utc = ?"
                " WHERE kind = ? AND name = ? AND status = 'approved'",
                (now, kind, name),
            )
        c.execute(
            "INSERT INTO documents (kind, name, version, status, content, sha256, created_by,"
            " created_utc, approved_by, approved_utc, ever_approved, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                name,
                version,
                status,
                canonical(content),
                content_hash(content),
                by,
                now,
                by if approved_now else None,
                now if approved_now else None,
                int(approved_now),
                note,
            ),
        )
    return version


def set_approved(db: Database, kind: str, name: str, version: int, by: str) -> None:
    """Make `version` the approved one; the version approved before it is retired."""
    now = time.time()
    with db.transaction() as c:
        c.execute(
            "UPDATE documents SET status = 'retired', retired_utc = ?"
            " WHERE kind = ? AND name = ? AND status = 'approved'",
            (now, kind, name),
        )
        c.execute(
            "UPDATE documents SET status = 'approved', approved_by = ?, approved_utc = ?,"
            " retired_utc = NULL, ever_approved = 1 WHERE kind = ? AND name = ? AND version = ?",
            (by, now, kind, name, version),
        )


def set_retired(db: Database, kind: str, name: str, version: int) -> None:
    with db.transaction() as c:
        c.execute(
            "UPDATE documents SET status = 'retired', retired_utc = ?"
            " WHERE kind = ? AND name = ? AND version = ?",
            (time.time(), kind, name, version),
        )


# ---------------------------------------------------------------------- challenge runs


def add_challenge_run(db: Database, run: dict[str, Any]) -> int:
    """Record one challenge run (every unit's expected and actual verdict and reasons)."""
    with db.transaction() as c:
        cur = c.execute(
            "INSERT INTO challenge_runs (ts_utc, gtin, lot, recipe, recipe_version, passed, units,"
            " results, by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                run.get("gtin"),
                run.get("lot"),
                run["recipe"],
                run.get("recipe_version"),
                int(bool(run["passed"])),
                int(run["units"]),
                json.dumps(run["results"], separators=(",", ":")),
                run.get("by"),
            ),
        )
        return int(cur.lastrowid)


def challenge_run(db: Database, run_id: int) -> dict[str, Any] | None:
    r = db.conn.execute("SELECT * FROM challenge_runs WHERE id = ?", (run_id,)).fetchone()
    if r is None:
        return None
    d = dict(r)
    d["results"] = json.loads(d["results"])
    d["passed"] = bool(d["passed"])
    return d


def recent_challenge_runs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    rows = db.conn.execute(
        "SELECT id FROM challenge_runs ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [d for d in (challenge_run(db, int(r[0])) for r in rows) if d is not None]


def challenge_results(db: Database, batch_id: str) -> dict[str, Any]:
    """The batch record's challenge section: {"status": "not run" | "passed" | "failed",
    "runs": [run, ...]}: the run that let the batch start, then the repeats during it (same
    lot, while the batch was open), oldest first; the status is the last run's."""
    b = db.conn.execute(
        "SELECT lot, started_at, ended_at, challenge_id FROM batches WHERE id = ?", (batch_id,)
    ).fetchone()
    if b is None:
        return {"status": "not run", "runs": []}
    ids = [int(b["challenge_id"])] if b["challenge_id"] is not None else []
    ids += [
        int(r[0])
        for r in db.conn.execute(
            "SELECT id FROM challenge_runs WHERE lot = ? AND ts_utc >= ? AND ts_utc <= ?"
            " ORDER BY id",
            (b["lot"], b["started_at"], b["ended_at"] if b["ended_at"] is not None else 1e18),
        )
        if int(r[0]) not in ids
    ]
    runs = [r for r in (challenge_run(db, i) for i in ids) if r is not None]
    if not runs:
        return {"status": "not run", "runs": []}
    return {"status": "passed" if runs[-1]["passed"] else "failed", "runs": runs}
