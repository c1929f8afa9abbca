"""The batch record counts OCV rejects per printed field (QA reads which field fails)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from edge.domain import BatchState, Finding, Item, ToolResult, Verdict
from edge.record import item_row
from edge.web.server import create_app

import web_support as ws


def _item(seq: int, batch: str, findings: list[Finding]) -> Item:
    it = Item(id=f"ocv-{seq}", seq=seq, t_trigger=0.0, deadline=1.0, batch=batch, recipe="t")
    it.results = [ToolResult(tool="ocv", version="1.0", findings=findings)]
    it.verdict = Verdict.REJECT if findings else Verdict.PASS
    it.reasons = sorted({f.code for f in findings})
    it.t_final = 0.05
    return it


def test_the_batch_report_counts_ocv_rejects_per_field(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    bid = appl.pipeline.start_batch(BatchState("LOTA", None, None))
    lot = Finding(
        "ocv", "OCV_MISMATCH", detail={"field": "lot", "expected": "LOT A", "read": "LOT B"}
    )
    exp = Finding("ocv", "OCV_MISMATCH", detail={"field": "expiry"})
    weak = Finding("ocv", "PRINT_QUALITY", detail={"field": "lot"})
    items = [
        _item(1, bid, [lot]),
        _item(2, bid, [lot, weak]),
        _item(3, bid, [exp]),
        _item(4, bid, []),
    ]
    db = appl.pipeline.db
    with db.transaction() as conn:
        db.insert_items(conn, [item_row(i, "edge-01") for i in items], outbox=False)
    appl.pipeline.stop_batch()
    c = TestClient(create_app(appl))
    ws.login(c, "quinn")
    rep = c.get(f"/api/reports/{bid}").json()
    got = {(r["field"], r["reason"]): r["n"] for r in rep["ocv_by_field"]}
    assert got == {
        ("lot", "OCV_MISMATCH"): 2,
        ("expiry", "OCV_MISMATCH"): 1,
        ("lot", "PRINT_QUALITY"): 1,
    }
    assert "ocv-by-field" in c.get(f"/reports/{bid}").text
    appl.stop()
