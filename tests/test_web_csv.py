"""CSV exports are opened in spreadsheets: text that users typed never runs as a formula
there. Batch report and audit export, through the web UI in its own process."""

from __future__ import annotations

import csv
import io

from edge.store.csv_safe import cell

import web_support as ws

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
LOT = "=HYPERLINK(evil)"
REASON = "+cmd|'/C calc'!A0"
NAME = "@SUM(1+1)*cmd"


def cells(text: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text)) for c in row]


def test_a_cell_that_would_start_a_formula_is_written_as_text():
    for v in ("=1+1", "+1", "-1", "@A1", "\t=1", "\r=1"):
        assert cell(v) == "'" + v
    for v in ("L1", "1.5", "", "a=b", " =x"):
        assert cell(v) == v
    assert cell(-3) == -3 and cell(None) is None  # numbers stay numbers


def test_report_and_audit_csv_carry_typed_text_but_never_a_formula(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    with ws.web_process(appl) as web, ws.http(web) as op, ws.http(web) as qa:
        op.headers["x-csrf-token"] = ws.login(op, "olga")
        qa.headers["x-csrf-token"] = ws.login(qa, "quinn")
        r = op.post("/api/line/batch/start", json={"lot": LOT, "reason": REASON})
        assert r.status_code == 200, r.text
        bid = r.json()["batch"]
        assert op.post("/api/line/batch/stop", json={"reason": "-1+2\tend"}).status_code == 200
        r = qa.post(
            f"/api/reports/{bid}/sign", json={"password": "qa-secret-1", "reason": "=2*3 ok"}
        )
        assert r.status_code == 200, r.text
        with ws.http(web) as admin:
            admin.headers["x-csrf-token"] = ws.login(admin, "ada")
            new = {
                "username": "mallory",
                "full_name": NAME,
                "role": "operator",
                "password": "long-enough-1",
                "reason": "\t=cmd()",
            }
            assert admin.post("/api/admin/users", json=new).status_code == 200

        report = qa.get(f"/reports/{bid}/report.csv")
        audit = qa.get("/api/qa/audit.csv")
        for resp in (report, audit):
            assert resp.status_code == 200
            bad = [c for c in cells(resp.text) if c.startswith(FORMULA_START)]
            assert not bad, f"{resp.url}: {bad}"
        assert "'" + LOT in cells(report.text)  # the lot, as typed, shown as text
        audit_cells = cells(audit.text)
        assert "'" + REASON in audit_cells and "'\t=cmd()" in audit_cells
