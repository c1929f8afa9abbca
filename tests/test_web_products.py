"""Product master pages: the technician lists, opens and edits a product as a draft, QA sees
what changed and why it cannot be approved yet, approves it with an e-signature; products
move between appliances as YAML (arriving as drafts). Real appliance, real SQLite, real HTTP
through the app."""

from __future__ import annotations

import yaml
from fastapi.testclient import TestClient

from edge.web.server import create_app

import web_support as ws

GTIN = "09506000134352"
VIALS = {
    "gtin": GTIN,
    "name": "Amber vial 10 ml",
    "recipe": "vials",
    "scenario": "vials",
    "camera": {"exposure_us": 9000},
    "challenge": [
        {"defect": "low_fill", "expect": "REJECT", "reason": "LOW_FILL"},
        {"expect": "PASS", "count": 2},
    ],
}


def clients(appl):
    tech, qa, op = (TestClient(create_app(appl)) for _ in range(3))
    return (
        (tech, {"x-csrf-token": ws.login(tech, "tom")}),
        (qa, {"x-csrf-token": ws.login(qa, "quinn")}),
        (op, {"x-csrf-token": ws.login(op, "olga")}),
    )


def test_products_are_listed_shown_with_their_challenge_set_edited_and_approved(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    (tech, ht), (qa, hq), (op, _ho) = clients(appl)
    assert op.get("/products").status_code == 403  # not the operator's page
    assert "/products" in tech.get("/products").text  # in the technician's nav

    bad = {**VIALS, "challenge": [{"defect": "low_fill", "expect": "REJECT"}]}
    v1 = tech.post("/api/products", json=bad, headers=ht).json()["version"]
    page = qa.get(f"/products/{GTIN}").text
    assert "Cannot be approved yet" in page
    assert "a known-bad unit needs its expected reason" in page
    assert "the challenge set has no known-good unit" in page
    assert 'id="btn-approve"' in page and "disabled" in page.split('id="btn-approve"')[1][:80]

    v2 = tech.post("/api/products", json=VIALS, headers=ht).json()["version"]
    assert v2 == v1 + 1
    page = tech.get(f"/products/{GTIN}").text
    assert "Cannot be approved yet" not in page and 'id="btn-approve"' not in page  # tech
    assert page.count('class="unit"') == 2 and 'value="LOW_FILL"' in page  # the set, editable
    sign = {"password": "qa-secret-1", "reason": "reviewed the product"}
    r = qa.post(f"/api/products/{GTIN}/{v2}/approve", json=sign, headers=hq)
    assert r.status_code == 200, r.text

    # a later draft shows what changed against the approved version, key by key
    v3 = tech.post(
        "/api/products", json={**VIALS, "camera": {"exposure_us": 7000}}, headers=ht
    ).json()["version"]
    page = qa.get(f"/products/{GTIN}?version={v3}").text
    assert "Changes against approved v2" in page
    assert "camera.exposure_us" in page and "9000" in page and "7000" in page
    shown = qa.get(f"/products/{GTIN}?version={v2}").text
    assert "Quinn Quality" in shown and "approved" in shown  # its signature
    listed = tech.get("/products").text
    assert GTIN in listed and "v2" in listed and "v3 · draft" in listed
    assert tech.get("/products/09506000134369").status_code == 404
    appl.stop()


def test_products_move_between_appliances_as_yaml_and_arrive_as_drafts(tmp_path):
    a = ws.appliance(tmp_path / "a", imgs=[])
    ws.add_users(a)
    (tech, ht), (qa, hq), _ = clients(a)
    v = tech.post("/api/products", json=VIALS, headers=ht).json()["version"]
    sign = {"password": "qa-secret-1", "reason": "reviewed"}
    assert qa.post(f"/api/products/{GTIN}/{v}/approve", json=sign, headers=hq).status_code == 200
    r = tech.get("/api/products/export.yaml")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    exported = r.text
    assert yaml.safe_load(exported)["products"][0]["camera"]["exposure_us"] == 9000
    a.stop()

    b = ws.appliance(tmp_path / "b", imgs=[])
    ws.add_users(b)
    (tech_b, ht_b), (qa_b, _), _ = clients(b)
    broken = exported.replace(GTIN, "09506000134353")  # a wrong check digit
    r = tech_b.post(
        "/api/products/import", files={"file": ("p.yaml", broken, "text/yaml")}, headers=ht_b
    )
    assert r.status_code == 422 and "products.0.gtin" in r.json()["detail"]
    r = tech_b.post(
        "/api/products/import", files={"file": ("p.yaml", "a: [", "text/yaml")}, headers=ht_b
    )
    assert r.status_code == 422 and "not valid YAML" in r.json()["detail"]
    r = tech_b.post(
        "/api/products/import", files={"file": ("p.yaml", exported, "text/yaml")}, headers=ht_b
    )
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == [{"gtin": GTIN, "version": 1}]
    assert qa_b.get("/api/products").json()[0]["latest_status"] == "draft"
    _, _, op_b = clients(b)
    assert op_b[0].get("/api/line/products").json() == []  # a draft is not offered
    b.stop()
