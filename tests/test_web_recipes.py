"""Products and recipes over the web API: the technician saves a draft, QA approves it with an
e-signature; a product without a complete challenge set cannot be approved."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from fastapi.testclient import TestClient

from edge.recipes.products import ProductMaster
from edge.web.server import create_app

import web_support as ws

GTIN = "09506000134352"
PRODUCT = {
    "gtin": GTIN,
    "name": "Amber vial 10 ml",
    "recipe": "vials",
    "scenario": "vials",
    "challenge": [],
}


def test_technician_drafts_a_product_and_qa_approves_it_with_an_e_signature(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    tech, qa = TestClient(create_app(appl)), TestClient(create_app(appl))
    h_tech = {"x-csrf-token": ws.login(tech, "tom")}
    h_qa = {"x-csrf-token": ws.login(qa, "quinn")}

    bad = tech.post("/api/products", json={**PRODUCT, "gtin": "123"}, headers=h_tech)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "gtin"

    r = tech.post("/api/products", json=PRODUCT, headers=h_tech)
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    sign = {"password": "qa-secret-1", "reason": "reviewed the product"}
    r = qa.post(f"/api/products/{GTIN}/{v}/approve", json=sign, headers=h_qa)
    assert r.status_code == 409 and "challenge set is empty" in r.json()["detail"]

    complete = {
        **PRODUCT,
        "challenge": [
            {"defect": "low_fill", "expect": "REJECT", "reason": "LOW_FILL"},
            {"expect": "PASS", "count": 2},
        ],
    }
    v = tech.post("/api/products", json=complete, headers=h_tech).json()["version"]
    r = qa.post(f"/api/products/{GTIN}/{v}/approve", json={**sign, "password": "x"}, headers=h_qa)
    assert r.status_code == 403
    # a technician cannot approve
    r = tech.post(f"/api/products/{GTIN}/{v}/approve", json=sign, headers=h_tech)
    assert r.status_code == 403
    r = qa.post(f"/api/products/{GTIN}/{v}/approve", json=sign, headers=h_qa)
    assert r.status_code == 200, r.text
    assert r.json()["signature"]["username"] == "quinn"
    listed = qa.get("/api/products").json()
    assert listed[0]["approved_version"] == v
    assert qa.get("/api/recipes").json()["vials"][0]["status"] == "approved"
    appl.stop()


@pytest.mark.parametrize("layout", ["in process", "own process"])
def test_the_operator_changes_over_by_gtin_and_the_batch_starts_after_its_challenge(
    tmp_path, layout
):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    master = ProductMaster(appl.pipeline.db, appl.audit)
    cartons = {
        **PRODUCT,
        "recipe": "cartons",
        "scenario": "cartons",
        "challenge": [
            {"defect": "wrong_lot", "expect": "REJECT", "reason": "LOT_MISMATCH"},
            {"expect": "PASS"},
        ],
    }
    master.docs.seed(GTIN, cartons)
    # a product whose recipe needs a model this appliance lacks
    master.docs.seed(
        "09506000134376", {**cartons, "gtin": "09506000134376", "recipe": "vials"}
    )  # approved (approval itself: the test above)
    with contextlib.ExitStack() as stack:
        if layout == "own process":
            web = stack.enter_context(ws.web_process(appl))
            client = stack.enter_context(ws.http(web))
        else:
            appl.start()
            stack.callback(appl.stop)
            client = TestClient(create_app(appl))
        h = {"x-csrf-token": ws.login(client, "olga")}
        r = client.post(
            "/api/line/batch/changeover",
            json={"gtin": GTIN, "lot": "A12B", "expiry": "270231"},
            headers=h,
        )
        assert r.status_code == 422 and "expiry is not a calendar date" in r.json()["detail"]
        r = client.post(
            "/api/line/batch/changeover",
            json={"gtin": "09506000134369", "lot": "A12B", "expiry": "271231"},
            headers=h,
        )
        assert r.status_code == 409 and "no approved product" in r.json()["detail"]
        r = client.post(
            "/api/line/batch/changeover",
            json={"gtin": "09506000134376", "lot": "A12B", "expiry": "271231"},
            headers=h,
        )
        assert r.status_code == 409 and "no model named 'defects'" in r.json()["detail"]
        r = client.post(
            "/api/line/batch/changeover",
            json={"gtin": GTIN, "lot": "A12B", "expiry": "271231"},
            headers=h,
        )
        assert r.status_code == 200, r.text
        assert r.json()["recipe"] == "cartons"
    db = sqlite3.connect(tmp_path / "edge.db")
    row = db.execute("SELECT lot, gtin, recipe, challenge_id FROM batches").fetchone()
    assert row[:3] == ("A12B", GTIN, "cartons") and row[3] is not None
