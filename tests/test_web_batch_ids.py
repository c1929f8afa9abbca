"""A lot may hold any GS1 character (and MES may send more): QA can still open, export and
sign its batch record, and the lot is shown as printed. Through the web UI as it ships."""

from __future__ import annotations

import re
from urllib.parse import quote

from edge.batch_ids import is_safe, new_batch_id
from edge.domain import BatchState

import web_support as ws

#: typed on the HMI (GS1 AI 10: the character set 82, no spaces; "#" is not in it)
HMI_LOTS = ["L/2024/07", "100%", "..", "../../etc/passwd", "A%2F..%2Fb", "x?y&z"]
#: from a config or an older record: spaces, "#" and characters that only look like ASCII
LINE_LOTS = ["LOT 7 A", "Ｌ１／２", "L∕1", "ロット", "é/ñ", "x?y#z"]


def test_batch_ids_are_url_and_file_name_safe_whatever_the_lot_holds():
    for lot in [*HMI_LOTS, *LINE_LOTS, "", "-", "/" * 40, "a" * 200]:
        bid = new_batch_id(lot)
        assert is_safe(bid), (lot, bid)
        assert quote(bid, safe="") == bid and bid not in (".", "..")
    assert new_batch_id("L/2024/07").startswith("L-2024-07-")  # still recognisable
    assert new_batch_id("L1") != new_batch_id("L1")


def test_a_batch_of_any_lot_can_be_reported_exported_and_signed_by_qa(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    with ws.web_process(appl) as web, ws.http(web) as op, ws.http(web) as qa:
        op_csrf = ws.login(op, "olga")
        qa_csrf = ws.login(qa, "quinn")
        made: dict[str, str] = {}
        for lot in HMI_LOTS:
            r = op.post(
                "/api/line/batch/start", json={"lot": lot}, headers={"x-csrf-token": op_csrf}
            )
            assert r.status_code == 200, r.text
            made[r.json()["batch"]] = lot
        for lot in LINE_LOTS:  # what an MES command or the config starts
            made[appl.pipeline.start_batch(BatchState(lot), by="mes", source="mes")] = lot
        r = op.post("/api/line/batch/stop", json={}, headers={"x-csrf-token": op_csrf})
        assert r.status_code == 200, r.text

        listing = qa.get("/reports").text
        for bid, lot in made.items():
            assert is_safe(bid), bid
            assert f'href="/reports/{bid}"' in listing
            rep = qa.get(f"/api/reports/{bid}")
            assert rep.status_code == 200, (lot, rep.text)
            assert rep.json()["batch"]["lot"] == lot  # as printed
            page = qa.get(f"/reports/{bid}")
            assert page.status_code == 200, (lot, page.status_code)
            csv = qa.get(f"/reports/{bid}/report.csv")
            assert csv.status_code == 200, (lot, csv.status_code)
            assert f"batch,lot,{lot}\r\n" in csv.text
            fname = re.fullmatch(
                r'attachment; filename="([^"]+)"', csv.headers["content-disposition"]
            )
            assert fname and re.fullmatch(r"batch-[A-Za-z0-9_-]+\.csv", fname.group(1)), fname
            r = qa.post(
                f"/api/reports/{bid}/sign",
                json={"password": "qa-secret-1", "reason": "reviewed, released"},
                headers={"x-csrf-token": qa_csrf},
            )
            assert r.status_code == 200, (lot, r.status_code, r.text)
            assert qa.get(f"/api/reports/{bid}").json()["signatures"][0]["full_name"] == (
                "Quinn Quality"
            )
    rows = appl.pipeline.db.conn.execute("SELECT id, lot FROM batches").fetchall()
    assert {r["id"]: r["lot"] for r in rows} == made
