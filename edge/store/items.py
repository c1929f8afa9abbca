"""Inspected items: the home of the `items` table's queries.

The recorder writes item rows (with their outbox messages, in the caller's transaction:
record before emit); the web pages and the batch record read them back here: the
technician's image search, what the line saw on an image, a measurement's series for a
control chart and the batch report's figures. JSON columns are encoded and decoded in
this module only.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from edge.store import labels

if TYPE_CHECKING:  # db.py delegates here; typing only, no import cycle at run time
    from edge.store.db import Database

_JSON_COLS = ("reasons", "findings", "codes", "tools", "models", "measurements")
_JSON_OBJECTS = ("tools", "measurements")  # the others are lists


def _encode_row(r: dict[str, Any]) -> dict[str, Any]:
    out = {"recipe_version": None, "recipe_sha256": None}  # rows of older writers lack them
    out.update((k, v) for k, v in r.items() if k != "message")
    for k in _JSON_COLS:
        empty: Any = {} if k in _JSON_OBJECTS else []
        out[k] = json.dumps(out.get(k) or empty, separators=(",", ":"))
    return out


def decode_item(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for k in _JSON_COLS:
        d[k] = json.loads(d[k])
    return d


# ---------------------------------------------------------------------- the line's record


def next_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()
    return int(row[0]) + 1


def insert(conn: sqlite3.Connection, rows: Sequence[dict[str, Any]], outbox: bool) -> list[int]:
    """Insert item rows (and their outbox messages) inside the caller's transaction.

    Returns the outbox sequence numbers assigned, in row order.
    """
    conn.executemany(
        """INSERT INTO items (seq, id, batch_id, recipe, trigger_utc, final_utc, latency_ms,
               encoder, verdict, reasons, findings, codes, tools, models, image_sha256,
               source_name, measurements, recipe_version, recipe_sha256)
           VALUES (:seq, :id, :batch_id, :recipe, :trigger_utc, :final_utc, :latency_ms,
               :encoder, :verdict, :reasons, :findings, :codes, :tools, :models,
               :image_sha256, :source_name, :measurements, :recipe_version, :recipe_sha256)""",
        [_encode_row(r) for r in rows],
    )
    seqs: list[int] = []
    if outbox:
        now = time.time()
        for r in rows:
            cur = conn.execute(
                "INSERT INTO outbox (kind, item_id, payload, created_utc) VALUES (?, ?, ?, ?)",
                ("result", r["id"], json.dumps(r["message"], separators=(",", ":")), now),
            )
            seqs.append(int(cur.lastrowid))
    return seqs


def get(conn: sqlite3.Connection, item_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
    return decode_item(row) if row else None


def newest(
    conn: sqlite3.Connection, where: str = "", params: Iterable[Any] = (), limit: int = 100
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM items " + (f"WHERE {where} " if where else "")
    sql += "ORDER BY seq DESC LIMIT ?"
    rows = conn.execute(sql, (*params, limit)).fetchall()
    return [decode_item(r) for r in rows]


# ---------------------------------------------------------------------- images of items

#: an item's anomaly score as a share of its threshold: the highest of its ANOMALY
#: findings' score / threshold (`value`), else its `anomaly_score_max` measurement
#: (recorded for every item the anomaly tool judged, pass or reject)
ANOMALY_SHARE_SQL = (
    "COALESCE((SELECT MAX(CAST(json_extract(value, '$.score') AS REAL)"
    " / json_extract(value, '$.value')) FROM json_each(i.findings)"
    " WHERE json_extract(value, '$.code') = 'ANOMALY' AND json_extract(value, '$.value') > 0),"
    " json_extract(i.measurements, '$.anomaly_score_max'))"
)


def search_images(
    db: Database,
    *,
    reason: str | None = None,
    batch: str | None = None,
    verdict: str | None = None,
    since: float | None = None,
    until: float | None = None,
    labelled: bool | None = None,
    label_state: str | None = None,
    product: str | None = None,
    min_score: float | None = None,
    min_anomaly: float | None = None,
    limit: int = 60,
) -> list[dict[str, Any]]:
    """Items that kept an image, newest first, filtered as the technician asks
    (`since` inclusive, `until` exclusive; `limit` held to 1..500). A line image's product
    is its item's recipe; `min_score` keeps images with a finding scored at least that;
    `min_anomaly` those whose anomaly score reached that share of its threshold (an
    ANOMALY reject's finding, or a passed item's `anomaly_score_max` measurement)."""
    where = ["i.image_sha256 IS NOT NULL"]
    params: list[Any] = []
    if label_state:
        where.append(labels.state_sql(label_state, "i.image_sha256"))
    if product:
        where.append("i.recipe = ?")
        params.append(product)
    if min_score is not None:
        where.append(
            "EXISTS (SELECT 1 FROM json_each(i.findings)"
            " WHERE CAST(json_extract(value, '$.score') AS REAL) >= ?)"
        )
        params.append(min_score)
    if min_anomaly is not None:
        where.append(f"({ANOMALY_SHARE_SQL}) >= ?")
        params.append(min_anomaly)
    if reason:
        where.append("EXISTS (SELECT 1 FROM json_each(i.reasons) WHERE value = ?)")
        params.append(reason)
    if batch:
        where.append("i.batch_id = ?")
        params.append(batch)
    if verdict in ("PASS", "REJECT"):
        where.append("i.verdict = ?")
        params.append(verdict)
    if since is not None:
        where.append("i.trigger_utc >= ?")
        params.append(since)
    if until is not None:
        where.append("i.trigger_utc < ?")
        params.append(until)
    if labelled is not None:
        where.append(
            ("" if labelled else "NOT ") + "EXISTS (SELECT 1 FROM labels l "
            "WHERE l.image_sha256 = i.image_sha256)"
        )
    sql = (
        "SELECT i.id, i.seq, i.batch_id, i.verdict, i.reasons, i.trigger_utc, i.image_sha256,"
        " i.recipe AS product, i.findings,"
        f" ({ANOMALY_SHARE_SQL}) AS anomaly,"
        f" {labels.state_column('i.image_sha256')} AS label_state"
        " FROM items i WHERE " + " AND ".join(where) + " ORDER BY i.seq DESC LIMIT ?"
    )
    rows = db.conn.execute(sql, (*params, min(max(limit, 1), 500))).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["reasons"] = json.loads(d["reasons"])
        scores = [f["score"] for f in json.loads(d.pop("findings")) if f.get("score") is not None]
        d["score"] = round(max(scores), 3) if scores else None
        d["anomaly"] = round(d["anomaly"], 3) if d["anomaly"] is not None else None
        d["labelled"] = d["label_state"] is not None
        d["source"], d["when"], d["name"] = "line", d["trigger_utc"], ""
        out.append(d)
    views = view_images(db.conn, [d["seq"] for d in out])
    for d in out:
        d["views"] = views.get(d["seq"], {})
    return out


def link_view_images(
    conn: sqlite3.Connection, sha: str, shows: Iterable[tuple[int, str, int]]
) -> None:
    """Name a written image as view `view` (the station's `pos`-th) of item `seq`, for each
    (seq, view, pos) it shows."""
    conn.executemany(
        "INSERT OR REPLACE INTO item_view_images (seq, view, pos, image_sha256)"
        " VALUES (?, ?, ?, ?)",
        [(seq, view, pos, sha) for seq, view, pos in shows],
    )


def view_images(conn: sqlite3.Connection, seqs: Sequence[int]) -> dict[int, dict[str, str]]:
    """Each item's own view images (seq -> view -> sha256): multi-view items kept with
    `records.keep_view_images`; an item without any is absent. A connection, not the
    line's database: a recipe preview reads them read-only."""
    out: dict[int, dict[str, str]] = {}
    if not seqs:
        return out
    marks = ",".join("?" * len(seqs))
    for seq, view, sha in conn.execute(
        f"SELECT seq, view, image_sha256 FROM item_view_images WHERE seq IN ({marks})"
        " ORDER BY seq, pos",
        list(seqs),
    ):
        out.setdefault(int(seq), {})[view] = sha
    return out


def reasons_on_images(db: Database, limit: int = 50) -> list[str]:
    """Reject reasons that occur on items with a kept image (for the search's pick list)."""
    return [
        r[0]
        for r in db.conn.execute(
            "SELECT DISTINCT value FROM items, json_each(items.reasons) "
            "WHERE items.image_sha256 IS NOT NULL LIMIT ?",
            (limit,),
        ).fetchall()
    ]


def latest_marks(db: Database, image_sha256: str) -> tuple[list[dict], list[dict]] | None:
    """The findings and code reads of the newest item recorded with this image, or None.
    One view's own image: that view's findings (their boxes are in its pixels); no code
    reads, which do not say the view they were made on."""
    row = db.conn.execute(
        "SELECT findings, codes FROM items WHERE image_sha256 = ? ORDER BY seq DESC LIMIT 1",
        (image_sha256,),
    ).fetchone()
    if row is not None:
        return json.loads(row["findings"]), json.loads(row["codes"])
    row = db.conn.execute(
        "SELECT i.findings, v.view FROM item_view_images v JOIN items i ON i.seq = v.seq"
        " WHERE v.image_sha256 = ? ORDER BY v.seq DESC LIMIT 1",
        (image_sha256,),
    ).fetchone()
    if row is None:
        return None
    findings = [f for f in json.loads(row["findings"]) if f.get("view") == row["view"]]
    return findings, []


# ---------------------------------------------------------------------- a batch's items


def measurement_series(db: Database, batch_id: str | None, measure: str) -> list[Any]:
    """One measurement of every item of a batch in line order (None where not measured)."""
    rows = db.conn.execute(
        "SELECT json_extract(measurements, '$.' || ?) FROM items WHERE batch_id IS ? ORDER BY seq",
        (measure, batch_id),
    ).fetchall()
    return [v for (v,) in rows]


def batch_totals(db: Database, batch_id: str) -> sqlite3.Row:
    """Count, good, rejected, first/last trigger and mean latency of a batch's items."""
    return db.conn.execute(
        "SELECT COUNT(*) n, SUM(verdict = 'PASS') good, SUM(verdict = 'REJECT') bad,"
        " MIN(trigger_utc) first, MAX(trigger_utc) last, AVG(latency_ms) lat"
        " FROM items WHERE batch_id = ?",
        (batch_id,),
    ).fetchone()


def reasons_in_batch(db: Database, batch_id: str) -> list[dict[str, Any]]:
    """Reject reasons of a batch with the number of items, most frequent first."""
    return [
        dict(r)
        for r in db.conn.execute(
            "SELECT value AS reason, COUNT(*) AS n FROM items, json_each(items.reasons)"
            " WHERE batch_id = ? GROUP BY value ORDER BY n DESC",
            (batch_id,),
        )
    ]


def ocv_rejects_by_field(db: Database, batch_id: str) -> list[dict[str, Any]]:
    """Rejected items per printed field and OCV reason (an item counts once per field/reason)."""
    return [
        dict(r)
        for r in db.conn.execute(
            "SELECT json_extract(value, '$.detail.field') AS field,"
            " json_extract(value, '$.code') AS reason, COUNT(DISTINCT items.id) AS n"
            " FROM items, json_each(items.findings) WHERE batch_id = ? AND verdict = 'REJECT'"
            " AND json_extract(value, '$.code') IN ('OCV_MISMATCH', 'OCV_NO_READ', 'PRINT_QUALITY')"
            " GROUP BY field, reason ORDER BY n DESC",
            (batch_id,),
        )
    ]


def code_grades(db: Database, batch_id: str) -> sqlite3.Row:
    """Number, min, mean and max of the code grades read in a batch, and how many below C."""
    return db.conn.execute(
        "SELECT COUNT(*) n, MIN(g) mn, AVG(g) avg, MAX(g) mx, SUM(g < 1.5) below_c FROM ("
        " SELECT CAST(json_extract(value, '$.grade') AS REAL) g FROM items, json_each(items.codes)"
        " WHERE batch_id = ? AND json_extract(value, '$.grade') IS NOT NULL)",
        (batch_id,),
    ).fetchone()


def models_in_batch(db: Database, batch_id: str) -> list[dict[str, Any]]:
    """Every model (name, version, SHA-256) that judged an item of the batch, once each,
    in a stable order."""
    seen = {
        json.dumps(m, sort_keys=True)
        for (ms,) in db.conn.execute(
            "SELECT DISTINCT models FROM items WHERE batch_id = ?", (batch_id,)
        )
        for m in json.loads(ms)
    }
    return [json.loads(m) for m in sorted(seen)]


# ---------------------------------------------------------------------- the batch record's charts


def time_buckets(db: Database, batch_id: str, first: float, width_s: float) -> list[dict[str, Any]]:
    """Items, good items and the code grades (mean, worst) per time bucket of `width_s`
    seconds from `first`: yield, rate and scan grade over a batch, one row per bucket that
    has items, in time order (`b` is the bucket's number)."""
    rows = {
        r["b"]: dict(r)
        for r in db.conn.execute(
            "SELECT CAST((trigger_utc - ?) / ? AS INTEGER) b, COUNT(*) n,"
            " SUM(verdict = 'PASS') good FROM items WHERE batch_id = ? GROUP BY b ORDER BY b",
            (first, width_s, batch_id),
        )
    }
    for r in db.conn.execute(
        "SELECT CAST((trigger_utc - ?) / ? AS INTEGER) b,"
        " AVG(CAST(json_extract(value, '$.grade') AS REAL)) grade,"
        " MIN(CAST(json_extract(value, '$.grade') AS REAL)) worst"
        " FROM items, json_each(items.codes) WHERE batch_id = ?"
        " AND json_extract(value, '$.grade') IS NOT NULL GROUP BY b",
        (first, width_s, batch_id),
    ):
        if r["b"] in rows:
            rows[r["b"]].update(grade=r["grade"], worst=r["worst"])
    return [{"grade": None, "worst": None, **r} for r in rows.values()]


def latency_histogram(db: Database, batch_id: str, bins: int = 30) -> tuple[list[float], list[int]]:
    """Bin edges and counts of the batch's trigger-to-verdict latencies (ms), `bins` equal
    bins from the fastest to the slowest item; ([], []) when no item has a latency."""
    lo, hi = db.conn.execute(
        "SELECT MIN(latency_ms), MAX(latency_ms) FROM items WHERE batch_id = ?", (batch_id,)
    ).fetchone()
    if lo is None:
        return [], []
    width = (hi - lo) / bins if hi > lo else 1.0
    counts = [0] * bins
    for b, n in db.conn.execute(
        "SELECT MIN(CAST((latency_ms - ?) / ? AS INTEGER), ?) b, COUNT(*) FROM items"
        " WHERE batch_id = ? AND latency_ms IS NOT NULL GROUP BY b",
        (lo, width, bins - 1, batch_id),
    ):
        counts[int(b)] += int(n)
    return [lo + i * width for i in range(bins + 1)], counts


def recipes_in_batch(db: Database, batch_id: str) -> list[dict[str, Any]]:
    """Each recipe (and, where the items table records them, its version and content hash)
    that judged items of the batch, with how many items, in first-use order."""
    have = {r["name"] for r in db.conn.execute("PRAGMA table_info(items)")}
    cols = ["recipe"] + [c for c in ("recipe_version", "recipe_sha256") if c in have]
    sel = ", ".join(cols)
    return [
        dict(r)
        for r in db.conn.execute(
            f"SELECT {sel}, COUNT(*) n, MIN(seq) first_seq FROM items WHERE batch_id = ?"
            f" GROUP BY {sel} ORDER BY first_seq",
            (batch_id,),
        )
    ]


#: Items per hour the HMI trend's window reads at most (1,200/min): bounds its scan by seq.
TREND_MAX_ITEMS = 72_000


def recent_trend(db: Database, since: float, bucket_s: float, top: int = 3) -> dict[str, Any]:
    """The HMI's last hour: per bucket of `bucket_s` from `since`, items and good items, and
    the counts of the `top` reject reasons of the window. One scan of the newest rows by
    primary key (no index on time is needed: seq follows the trigger)."""
    (last,) = db.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()
    lo = last - TREND_MAX_ITEMS
    buckets = [
        dict(r)
        for r in db.conn.execute(
            "SELECT CAST((trigger_utc - ?) / ? AS INTEGER) b, COUNT(*) n,"
            " SUM(verdict = 'PASS') good FROM items WHERE seq > ? AND trigger_utc >= ?"
            " GROUP BY b ORDER BY b",
            (since, bucket_s, lo, since),
        )
    ]
    by_reason: dict[str, dict[int, int]] = {}
    for reason, b, n in db.conn.execute(
        "SELECT value, CAST((trigger_utc - ?) / ? AS INTEGER) b, COUNT(*) FROM items,"
        " json_each(items.reasons) WHERE seq > ? AND trigger_utc >= ? AND verdict = 'REJECT'"
        " GROUP BY value, b",
        (since, bucket_s, lo, since),
    ):
        by_reason.setdefault(reason, {})[int(b)] = int(n)
    ranked = sorted(by_reason, key=lambda r: (-sum(by_reason[r].values()), r))[:top]
    return {"buckets": buckets, "reasons": {r: by_reason[r] for r in ranked}}


def recorded_images(conn: sqlite3.Connection, recipe: str, limit: int) -> list[dict[str, Any]]:
    """The newest items of `recipe` that kept their image, with what the line decided and
    the batch they ran in (a recipe preview judges them again with that batch's data), and
    each view's own image where the station kept them (`views`: view -> sha256)."""
    rows = conn.execute(
        "SELECT i.seq, i.id, i.image_sha256, i.verdict, i.reasons, i.trigger_utc,"
        " i.recipe_version,"
        " i.batch_id, b.lot, b.gtin, b.expiry FROM items i"
        " LEFT JOIN batches b ON b.id = i.batch_id"
        " WHERE i.image_sha256 IS NOT NULL AND i.recipe = ? ORDER BY i.seq DESC LIMIT ?",
        (recipe, max(int(limit), 0)),
    ).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["reasons"] = json.loads(d["reasons"])
        out.append(d)
    views = view_images(conn, [d["seq"] for d in out])
    for d in out:
        d["views"] = views.get(d["seq"], {})
    return out
