"""Deviation records: opened by process control, acknowledged at the line, investigated, closed
by QA with an electronic signature, every step in the audit trail, listed in the batch record."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from edge.spc.monitor import Deviation
from edge.store.audit import AuditTrail
from edge.store.deviations import DeviationError, Deviations
from edge.web.server import create_app

import web_support as ws


def _dev(batch: str | None = "B1", cause: str = "filler dosing") -> Deviation:
    return Deviation(
        measure="fill_level_mm",
        rule="ewma",
        index=812,
        item_id="vials-1-000812",
        since_index=760,
        value=32.1,
        limits=(32.3, 33.0),
        centre=32.65,
        chart="ewma",
        cause=cause,
        action="check the pump",
        batch=batch,
    )


def test_a_deviation_goes_open_acknowledged_investigated_closed_and_each_step_is_audited(tmp_path):
    app = ws.appliance(tmp_path, imgs=[])
    audit = AuditTrail(app.pipeline.db)
    store = Deviations(app.pipeline.db, audit)
    rid = store.open(_dev())
    assert store.get(rid)["state"] == "open"
    with pytest.raises(DeviationError, match="cannot be closed"):
        store.close(rid, "quinn")
    store.acknowledge(rid, "olga")
    with pytest.raises(DeviationError, match="root cause and a corrective action"):
        store.investigate(rid, "tom", " ", "x")
    store.investigate(rid, "tom", "pump seal worn", "seal replaced, dose re-verified")
    closed = store.close(rid, "quinn")
    assert closed["state"] == "closed" and closed["closed_by"] == "quinn"
    actions = [e["action"] for e in audit.entries(target=f"deviation/{rid}")]
    assert actions == ["deviation.acknowledged", "deviation.investigated", "deviation.closed"]
    assert audit.verify()[0]


def test_the_deviation_export_cannot_smuggle_a_formula_into_a_spreadsheet(tmp_path):
    app = ws.appliance(tmp_path, imgs=[])
    store = Deviations(app.pipeline.db)
    store.open(_dev(cause='=HYPERLINK("http://x")'))
    csv_text = Deviations.export_csv(store.list())
    assert "'=HYPERLINK" in csv_text and ",=HYPERLINK" not in csv_text


def test_operator_acknowledges_technician_investigates_qa_closes_with_a_signature(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    rid = Deviations(appl.pipeline.db).open(_dev())
    app = create_app(appl)
    with TestClient(app) as op, TestClient(app) as tech, TestClient(app) as qa:
        h_op = {"x-csrf-token": ws.login(op, "olga")}
        h_tech = {"x-csrf-token": ws.login(tech, "tom")}
        h_qa = {"x-csrf-token": ws.login(qa, "quinn")}
        assert [d["id"] for d in op.get("/api/line/deviations?state=open").json()] == [rid]
        chart = op.get(f"/api/line/deviations/{rid}/chart.svg")
        assert chart.headers["content-type"].startswith("image/svg+xml")
        assert "UCL 33" in chart.text and f"deviation #{rid}" in chart.text
        r = qa.post(
            f"/api/qa/deviations/{rid}/close",
            json={"password": "qa-secret-1", "reason": "done"},
            headers=h_qa,
        )
        assert r.status_code == 409 and "investigate it first" in r.json()["detail"]
        assert op.post(f"/api/line/deviations/{rid}/ack", headers=h_op).status_code == 200
        r = tech.post(
            f"/api/deviations/{rid}/investigate",
            json={"root_cause": "pump seal worn", "corrective_action": "seal replaced"},
            headers=h_tech,
        )
        assert r.status_code == 200, r.text
        bad = qa.post(
            f"/api/qa/deviations/{rid}/close",
            json={"password": "wrong", "reason": "checked"},
            headers=h_qa,
        )
        assert bad.status_code == 403
        assert Deviations(appl.pipeline.db).get(rid)["state"] == "investigated"
        ok = qa.post(
            f"/api/qa/deviations/{rid}/close",
            json={"password": "qa-secret-1", "reason": "checked"},
            headers=h_qa,
        )
        assert ok.status_code == 200, ok.text
        assert (
            ok.json()["state"] == "closed"
            and ok.json()["signature"]["full_name"] == "Quinn Quality"
        )
        assert op.get("/api/qa/deviations.csv").status_code == 403
        assert "pump seal worn" in qa.get("/api/qa/deviations.csv").text
        assert qa.post(f"/api/line/deviations/{rid}/ack", headers=h_qa).status_code == 403
        listing = qa.get("/deviations").text
        assert "pump seal worn" in listing and f"/api/line/deviations/{rid}/chart.svg" in listing


def test_a_deviation_raised_in_the_line_is_recorded_published_and_counted_in_metrics(tmp_path):
    from edge.domain import Item, ToolResult, Verdict
    from edge.ops.metrics import Metrics
    from edge.spc.component import SpcComponent
    from edge.spc.config import MeasureSpc, SpcConfig

    appl = ws.appliance(tmp_path, imgs=[])
    recipe = appl.pipeline.recipe
    appl.cfg.recipes[recipe.name] = recipe.model_copy(
        update={
            "spc": SpcConfig(
                reference_items=60, min_reference=50, measures={"fill_level_mm": MeasureSpc()}
            )
        }
    )
    spc = SpcComponent(appl)
    appl.components.append(spc)
    seen = []
    appl.pipeline.bus.subscribe_sync("deviation", lambda _t, ev: seen.append(ev))
    rng = __import__("numpy").random.default_rng(1)
    for i in range(400):
        it = Item(
            id=f"i{i}",
            seq=i + 1,
            t_trigger=0.0,
            deadline=1.0,
            batch="B9",
            recipe=recipe.name,
            verdict=Verdict.PASS,
            reasons=[],
        )
        level = 33.0 + rng.normal(0, 0.3) - (0.01 * (i - 100) if i > 100 else 0)
        it.results = [ToolResult("fill_level", "1", measurements={"fill_level_mm": level})]
        spc._on_item("verdict", it)
    assert [e["measure"] for e in seen] == ["fill_level_mm"] and seen[0]["record"]
    assert Deviations(appl.pipeline.db).list(batch="B9")[0]["measure"] == "fill_level_mm"
    text = Metrics.of(appl).render().decode()
    assert 'edge_spc_deviations_total{measure="fill_level_mm"} 1.0' in text
