"""The batch record QA reads: charts of the batch (reject Pareto, yield and rate over time,
scan grade over time, latency histogram, alarms on a timeline), the recipe and model versions,
the challenge test's results, and a real PDF that renders with its charts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edge.domain import BatchState, CodeRead, Finding, Item, ToolResult, Verdict
from edge.record import item_row
from edge.store import items as item_store
from edge.store.alarm_log import AlarmLog
from edge.store.recipes import challenge_results
from edge.web.server import create_app

import web_support as ws
from pdf_support import coloured, render

OUT = Path(__file__).resolve().parent.parent / "test-output"  # the PDF, for a person to look at
N = 60
# reject reasons by item: CRACK most often, then FILL_LOW, CAP_MISSING, LABEL_MISSING once
REASONS = {**{i: ["CRACK"] for i in range(1, N, 5)}, **{i: ["FILL_LOW"] for i in range(33, N, 5)}}
REASONS[44] = ["CAP_MISSING"]
REASONS[47] = ["CAP_MISSING", "LABEL_MISSING"]
REASONS[52] = ["CAP_MISSING"]


def _item(i: int, batch: str, t0: float) -> Item:
    """Item i: 6 s apart; the second half rejects more and reads its code worse."""
    reasons = REASONS.get(i, [])
    it = Item(id=f"br-{i}", seq=i + 1, t_trigger=100.0, deadline=101.0, batch=batch, recipe="t")
    it.wall_trigger = t0 + 6.0 * i
    it.t_final = 100.0 + (20 + i % 10) / 1000.0  # 20..29 ms
    grade = 3.5 if i < N // 2 else 2.0
    it.results = [
        ToolResult(
            tool="t",
            version="1",
            findings=[Finding("t", r) for r in reasons],
            codes=[CodeRead(text=f"code{i}", symbology="DataMatrix", grade=grade)],
        )
    ]
    it.verdict = Verdict.REJECT if reasons else Verdict.PASS
    it.reasons = reasons
    return it


@pytest.fixture
def batch(tmp_path):
    """A stopped batch of 60 items over six minutes with one alarm raised and cleared in it."""
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    bid = appl.pipeline.start_batch(BatchState("LOT-CHART7", "09506000134352", "281231"))
    db = appl.pipeline.db
    t0 = db.batch(bid)["started_at"]
    with db.transaction() as conn:
        db.insert_items(
            conn, [item_row(_item(i, bid, t0), "edge-01") for i in range(N)], outbox=False
        )
    alarm = {
        "code": "BIN_FULL",
        "message": "reject bin full",
        "severity": "major",
        "line_stop": False,
        "raised_utc": t0 + 0.01,
    }
    log = AlarmLog(db)
    log.append("raised", alarm)
    log.append("cleared", {**alarm, "cleared_utc": t0 + 0.02})
    time.sleep(0.05)
    appl.pipeline.stop_batch()
    app = create_app(appl)
    c = TestClient(app)
    ws.login(c, "quinn")
    yield appl, c, bid
    app.state.ctx.hub.close()
    appl.stop()


def _figure(html: str, name: str) -> str:
    m = re.search(rf'<figure class="chart" id="chart-{name}">(.*?)</figure>', html, re.S)
    assert m, f"no {name} chart on the page"
    return m.group(1)


def test_the_record_carries_the_batch_figures_behind_its_charts(batch):
    _appl, c, bid = batch
    rep = c.get(f"/api/reports/{bid}").json()
    assert rep["counts"]["inspected"] == N
    assert [r["reason"] for r in rep["by_reason"]][:3] == ["CRACK", "FILL_LOW", "CAP_MISSING"]
    tr = rep["trends"]
    assert len(tr["t"]) >= 20  # the batch is cut in time buckets
    half = len(tr["yield"]) // 2
    assert sum(tr["yield"][:half]) / half > sum(tr["yield"][half:]) / (len(tr["yield"]) - half)
    assert tr["grade"][0] == pytest.approx(3.5) and tr["grade"][-1] == pytest.approx(2.0)
    assert all(r > 0 for r in tr["rate_per_min"])
    assert sum(rep["latency"]["counts"]) == N
    assert rep["latency"]["edges"][0] == pytest.approx(20.0, abs=0.01)
    assert rep["latency"]["edges"][-1] == pytest.approx(29.0, abs=0.01)
    assert rep["latency"]["deadline_ms"] == 1000
    assert [(r["recipe"], r["n"]) for r in rep["recipes"]] == [("t", N)]
    assert [a["code"] for a in rep["alarms"]] == ["BIN_FULL"]
    assert rep["challenge"] == {"status": "not run", "runs": []}


def test_the_report_page_draws_the_pareto_trends_histogram_and_alarm_timeline(batch):
    _appl, c, bid = batch
    html = c.get(f"/reports/{bid}").text
    pareto = _figure(html, "pareto")
    heights = [float(h) for h in re.findall(r'class="bar"[^>]*height="([\d.]+)"', pareto)]
    assert len(heights) == 4  # one bar per reason
    assert heights == sorted(heights, reverse=True) and heights[0] > heights[-1] > 0
    assert "CRACK" in pareto and "LABEL_MISSING" in pareto
    for name in ("yield", "rate", "grade"):
        path = re.search(r'class="series" d="([^"]+)"', _figure(html, name))
        assert path and path.group(1).count("L") >= 10, f"{name}: no line drawn"
    hist = _figure(html, "latency")
    assert len(re.findall(r'class="bar"', hist)) == 30 and "deadline" in hist
    timeline = _figure(html, "alarms")
    assert re.search(r'class="span"[^>]*><title>BIN_FULL</title>', timeline)
    assert 'id="challenge" data-status="not run"' in html
    assert 'href="/reports/' + bid + '/report.pdf"' in html
    assert "<script" not in "".join(re.findall(r"<svg.*?</svg>", html, re.S))


def test_the_pdf_export_renders_pages_with_the_charts_and_names_the_batch(batch, tmp_path):
    _appl, c, bid = batch
    r = c.get(f"/reports/{bid}/report.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-")
    assert "attachment" in r.headers["content-disposition"]
    OUT.mkdir(exist_ok=True)
    (OUT / "batch-record.pdf").write_bytes(r.content)
    text, pages = render(r.content, tmp_path)
    assert "LOT-CHART7" in text and bid in text
    for title in ("Rejects by reason (Pareto)", "Yield over time", "Scan grade over time"):
        assert title in text
    assert "Latency, trigger to verdict" in text and "Alarms during the batch" in text
    assert "Challenge test: not run" in text
    assert len(pages) >= 2 and f"page {len(pages)}/{len(pages)}" in text  # numbered pages
    for p in pages:  # no blank page
        assert (p < 200).any(axis=2).mean() > 0.005
    # the Pareto's red bars and the trend lines' blue are drawn on the pages, not just named
    assert sum(coloured(p, (51, 51, 221)) for p in pages) > 200
    assert sum(coloured(p, (204, 102, 0)) for p in pages) > 200


def test_edge_report_writes_the_pdf_from_the_shell(batch, tmp_path):
    appl, _c, bid = batch
    from edge.cli import app
    from edge.web.cli import register

    register(app)
    state = appl.pipeline.cfg.records.state_dir
    out = tmp_path / "b.pdf"
    res = CliRunner().invoke(app, ["report", bid, "--pdf", str(out), "--state-dir", state])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(b"%PDF-")
    text, _pages = render(out.read_bytes(), tmp_path)
    assert "LOT-CHART7" in text
    res = CliRunner().invoke(app, ["report", "NO-SUCH", "--pdf", str(out), "--state-dir", state])
    assert res.exit_code == 1 and "no batch NO-SUCH" in res.output


def test_the_challenge_section_shows_the_run_that_let_the_batch_start(tmp_path):
    from edge.store import recipes as store
    from edge.store.db import Database

    db = Database(tmp_path / "edge.db")
    db.start_batch(
        {
            "id": "B1",
            "lot": "L1",
            "gtin": None,
            "expiry": None,
            "recipe": "vials",
            "started_at": time.time(),
            "started_by": "op",
            "source": "local",
        }
    )
    assert challenge_results(db, "B1")["status"] == "not run"  # no run for this batch
    assert challenge_results(db, "NO-SUCH")["status"] == "not run"
    units = [{"unit": "low_fill#1", "expected": "REJECT LOW_FILL", "got": "PASS"}]
    run = store.add_challenge_run(
        db, {"lot": "L1", "recipe": "vials", "passed": False, "units": 1, "results": units}
    )
    db.conn.execute("UPDATE batches SET challenge_id = ? WHERE id = 'B1'", (run,))
    got = challenge_results(db, "B1")
    assert got["status"] == "failed"
    assert got["runs"][0]["results"][0]["got"] == "PASS"


def test_the_hmi_trend_ranks_the_top_three_reasons_of_the_last_hour(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    db = appl.pipeline.db
    now = time.time()
    plan = ["A"] * 5 + ["B"] * 4 + ["C"] * 3 + ["D"] * 2 + [None] * 6
    rows = []
    for i, reason in enumerate(plan):
        it = Item(id=f"tr-{i}", seq=i + 1, t_trigger=0.0, deadline=1.0, batch=None, recipe="t")
        it.wall_trigger = now - 50 * 60 + i * 60  # one a minute from 50 minutes ago
        it.verdict = Verdict.REJECT if reason else Verdict.PASS
        it.reasons = [reason] if reason else []
        rows.append(item_row(it, "edge-01"))
    with db.transaction() as conn:
        db.insert_items(conn, rows, outbox=False)
        for k in range(5):  # D is most frequent overall, but two hours ago
            o = Item(
                id=f"old-{k}", seq=200 + k, t_trigger=0.0, deadline=1.0, batch=None, recipe="t"
            )
            o.wall_trigger, o.verdict, o.reasons = now - 7200, Verdict.REJECT, ["D"]
            db.insert_items(conn, [item_row(o, "edge-01")], outbox=False)
    t = item_store.recent_trend(db, now - 3600, 60.0, top=3)
    assert list(t["reasons"]) == ["A", "B", "C"]
    assert sum(b["n"] for b in t["buckets"]) == len(plan)

    from edge.web.hmi import trend_svgs

    svgs = trend_svgs(db, now)
    assert all(f">{r}</text>" in svgs["reasons"] for r in "ABC")
    assert ">D</text>" not in svgs["reasons"]
    assert svgs["yield"].count('class="series"') == 1
    appl.stop()


def test_the_hmi_serves_its_last_hour_charts_to_every_role(tmp_path):
    appl = ws.appliance(tmp_path, imgs=ws.images(8))
    ws.add_users(appl)
    app = create_app(appl)
    appl.start()
    assert appl.pipeline.wait(20)
    c = TestClient(app)
    ws.login(c, "olga")
    assert 'src="/api/line/trend/yield.svg"' in c.get("/hmi").text
    y = c.get("/api/line/trend/yield.svg")
    assert y.status_code == 200 and y.headers["content-type"].startswith("image/svg+xml")
    assert re.search(r'class="series" d="M[\d.]+,[\d.]+', y.text)  # 50 % yield drawn
    r = c.get("/api/line/trend/reasons.svg")
    assert ">CRACK</text>" in r.text
    assert c.get("/api/line/trend/nothing.svg").status_code == 404
    app.state.ctx.hub.close()
    appl.stop()


def test_without_a_unicode_font_the_pdf_still_renders_and_marks_what_it_cannot_print(
    batch, tmp_path, monkeypatch
):
    from edge.web import report_pdf

    _appl, c, bid = batch
    rep = c.get(f"/api/reports/{bid}").json()
    rep["batch"]["started_by"] = "Zoë Ørsted → QA ≥ 2"
    monkeypatch.setattr(report_pdf, "FONT_DIRS", ())
    text, pages = render(report_pdf.render_pdf(rep), tmp_path)
    assert "LOT-CHART7" in text and "Zoë Ørsted ? QA ? 2" in text
    assert len(pages) >= 2
