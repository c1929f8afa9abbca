"""The batch record's view of challenge-test results, read only.

The challenge test (known-bad and known-good units fed through the line at batch start)
writes its own table; this module only reads it for the batch record, and says "not run"
where the database has no such table yet or no run for the batch. When the challenge
test's store module lands, this read belongs there: keep `challenge_results`' return shape.
"""

from __future__ import annotations

import json
from typing import Any

from edge.store.db import Database

#: The table the challenge test records its runs in (one row per run).
TABLE = "challenge_runs"


def challenge_results(db: Database, batch_id: str) -> dict[str, Any]:
    """{"status": "not run" | "passed" | "failed", "runs": [row, ...]} for one batch.

    A row's columns are shown as they are (JSON text decoded), so the record carries every
    unit's expected and actual verdict whatever the table's exact columns are."""
    exists = db.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).fetchone()
    if not exists:
        return {"status": "not run", "runs": []}
    cols = {r["name"] for r in db.conn.execute(f"PRAGMA table_info({TABLE})")}
    if "batch_id" not in cols:
        return {"status": "not run", "runs": []}
    runs = []
    for r in db.conn.execute(
        f"SELECT * FROM {TABLE} WHERE batch_id = ? ORDER BY rowid", (batch_id,)
    ):
        run = {}
        for k, v in dict(r).items():
            if isinstance(v, str) and v[:1] in "[{":
                try:
                    v = json.loads(v)
                except ValueError:
                    pass
            run[k] = v
        runs.append(run)
    if not runs:
        return {"status": "not run", "runs": []}
    ok = [bool(r.get("passed", r.get("ok"))) for r in runs]
    return {"status": "passed" if ok[-1] else "failed", "runs": runs}
