"""Products and recipes over the web API: the technician saves a draft, QA approves it with an
e-signature; a product without a complete challenge set cannot be approved."""

from __future__ import annotations

from fastapi.testclient import TestClient

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
    r = qa.post(f"/api/products/{GTIN}/{v}/approve", json={**sign, "password": "x"},
                headers=h_qa)  # fmt: skip
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
