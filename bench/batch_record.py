"""The batch record's and the HMI trend's cost on a realistic database: one JSON object.

Fills a fresh database with an hour of a 600 items/min line (36,000 items, 8 % rejects over
five reasons, a code grade on each), then times:

- trend_ms: the HMI's last-hour query and its two SVGs (what one panel poll costs when the
  5 s cache is cold; every other poll within 5 s is a dictionary read)
- record_ms: the whole batch record (figures, trend buckets, latency histogram)
- charts_ms: its six SVG charts
- pdf_ms, pdf_kb: the PDF

Run: python bench/batch_record.py [--items 36000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from edge.domain import CodeRead, Finding, Item, ToolResult, Verdict
from edge.record import item_row
from edge.store.audit import AuditTrail
from edge.store.db import Database
from edge.web import batch_record
from edge.web.hmi import trend_svgs
from edge.web.report_pdf import render_pdf

REASONS = ["CRACK", "FILL_LOW", "CAP_MISSING", "LABEL_MISSING", "CODE_UNREADABLE"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=36_000)
    a = ap.parse_args()
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "edge.db")
        now = time.time()
        bid = "B1"
        db.start_batch(
            {
                "id": bid,
                "lot": "LOT1",
                "gtin": None,
                "expiry": None,
                "recipe": "vials",
                "started_at": now - 3600,
            }
        )
        rows = []
        for i in range(a.items):
            reasons = [rnd.choice(REASONS)] if rnd.random() < 0.08 else []
            it = Item(id=f"i{i}", seq=i + 1, t_trigger=0.0, deadline=1.0, batch=bid, recipe="vials")
            it.wall_trigger = now - 3600 + i * 3600 / a.items
            it.t_final = rnd.uniform(0.02, 0.09)
            it.results = [
                ToolResult(
                    tool="t",
                    version="1",
                    findings=[Finding("t", r) for r in reasons],
                    codes=[CodeRead(text="x", symbology="DataMatrix", grade=rnd.uniform(2, 4))],
                )
            ]
            it.verdict, it.reasons = (Verdict.REJECT if reasons else Verdict.PASS), reasons
            rows.append(item_row(it, "edge-01"))
        with db.transaction() as conn:
            db.insert_items(conn, rows, outbox=False)
        out: dict = {"items": a.items}
        t = time.perf_counter()
        trend_svgs(db, time.time())
        out["trend_ms"] = round((time.perf_counter() - t) * 1000, 1)
        t = time.perf_counter()
        rep = batch_record.build(db, AuditTrail(db), bid, station="edge-01", deadline=250.0)
        out["record_ms"] = round((time.perf_counter() - t) * 1000, 1)
        t = time.perf_counter()
        batch_record.chart_svgs(rep)
        out["charts_ms"] = round((time.perf_counter() - t) * 1000, 1)
        t = time.perf_counter()
        pdf = render_pdf(rep)
        out["pdf_ms"] = round((time.perf_counter() - t) * 1000, 1)
        out["pdf_kb"] = round(len(pdf) / 1024, 1)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
