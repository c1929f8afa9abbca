"""The recipe editor: a technician clones the vials recipe and tightens the fill-level
tolerance, previews it against the approved version on the line's stored images and the
challenge set, and saves a draft; QA approves it with an e-signature; the running line keeps
its recipe until the changeover loads the new version.

The stored images come from a real simulated vial line (the shipped detector and the
classic tools); every expectation is derived from what that line recorded, not written in.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edge.app import Appliance
from edge.config import parse_config
from edge.recipes.products import ProductMaster
from edge.web.server import create_app

import web_support as ws

MODELS = Path(__file__).resolve().parents[1] / "models"
ITEMS = 40
TIGHT_MM = 32.5  # min_level_mm, from 30.5: good vials measure about 31.8 to 33.4 mm


def vials_config(state: Path, items: int):
    return parse_config(
        {
            "records": {"state_dir": str(state), "sample_pass_every": 1},
            "source": {
                "type": "simulator",
                "scenario": "vials",
                "items": items,
                "realtime": False,
                "defect_rate": 0.3,
            },
            "pipeline": {"deadline_ms": 5000},
            "inference": {"models_dir": str(MODELS)},
            "web": {"port": 0},
        }
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A state directory holding a vial line's items, every image kept."""
    state = tmp_path_factory.mktemp("vials-line")
    app = Appliance(vials_config(state, ITEMS), components=False)
    app.start()
    try:
        assert app.pipeline.wait(180), "the simulated line did not finish"
    finally:
        app.stop()
    return state


@pytest.fixture
def line(recorded, tmp_path):
    """The appliance on a copy of the recorded state (its line idle: no new items)."""
    state = tmp_path / "state"
    shutil.copytree(recorded, state)
    appl = Appliance(vials_config(state, 0), components=False)
    ws.add_users(appl)
    appl.start()
    yield appl, state
    appl.stop()


def client(appl, user: str) -> tuple[TestClient, dict[str, str]]:
    c = TestClient(create_app(appl))
    return c, {"x-csrf-token": ws.login(c, user)}


def approved_vials(c: TestClient) -> dict:
    v = next(x for x in c.get("/api/recipes").json()["vials"] if x["status"] == "approved")
    return v


def tools_of(appl) -> list[dict]:
    """The tools of the approved vials recipe, as the editor's form sends them back."""
    doc = appl.pipeline.recipe_book.docs.approved("vials")
    return json.loads(json.dumps(doc["content"]["tools"]))


def tightened(appl, mm: float = TIGHT_MM) -> list[dict]:
    tools = tools_of(appl)
    fill = next(t for t in tools if t["type"] == "fill_level")
    fill["min_level_mm"] = mm
    return tools


def counts(state: Path) -> tuple[int, int]:
    db = sqlite3.connect(state / "edge.db")
    try:
        return tuple(
            db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("items", "outbox")
        )
    finally:
        db.close()


def wait_job(c: TestClient, jid: str, timeout_s: float = 600) -> dict:
    end = time.monotonic() + timeout_s  # the job runs at idle priority on a shared machine
    while time.monotonic() < end:
        s = c.get(f"/api/jobs/{jid}").json()
        if s["state"] != "running":
            return s
        time.sleep(0.5)
    raise AssertionError(f"preview job {jid} still running after {timeout_s} s")


def test_the_preview_lists_the_stored_images_whose_verdict_a_tighter_fill_tolerance_changes(
    line,
):
    appl, state = line
    tech, h = client(appl, "tom")
    page = tech.get("/recipes", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'data-recipe="vials"' in page.text
    v1 = approved_vials(tech)["version"]
    editor = tech.get(f"/recipes/vials/{v1}", headers={"accept": "text/html"})
    assert editor.status_code == 200
    assert 'data-key="tools.0.min_level_mm"' in editor.text  # a form made from FillParams
    for i, t in enumerate(tools_of(appl)):  # each stated value shown as the recipe states it
        for k, v in t.items():
            if isinstance(v, str | int | float) and k not in ("type", "name"):
                assert f'id="tools.{i}.{k}" value="{v}"' in editor.text, (i, k, v)
    before = counts(state)

    r = tech.post(
        f"/api/recipes/vials/{v1}/preview",
        json={"name": "vials", "tools": tightened(appl), "limit": ITEMS, "challenge": True},
        headers=h,
    )
    assert r.status_code == 200, r.text
    job = wait_job(tech, r.json()["job"])
    assert job["state"] == "finished", job["log"]
    res = job["result"]

    db = sqlite3.connect(state / "edge.db")
    rows = db.execute(
        "SELECT image_sha256, verdict, reasons, json_extract(measurements, '$.fill_level_mm')"
        " FROM items WHERE recipe = 'vials' AND image_sha256 IS NOT NULL"
    ).fetchall()
    expected = {sha for sha, v, _r, mm in rows if v == "PASS" and mm is not None and mm < TIGHT_MM}
    assert res["images"] == len(rows) == ITEMS
    assert expected, "the line recorded no good vial below the tightened limit"
    changed = {x["image"]: x for x in res["rows"] if x["change"] == "verdict"}
    assert set(changed) == expected and res["verdict_changes"] == len(expected)
    for x in changed.values():  # image by image: the old verdict and the new, with reasons
        assert x["old"] == {"verdict": "PASS", "reasons": []}
        assert x["new"] == {"verdict": "REJECT", "reasons": ["LOW_FILL"]}
    low = {sha for sha, _v, reasons, _mm in rows if "LOW_FILL" in json.loads(reasons)}
    assert low and not low & set(changed)  # rejected for low fill before: still rejected

    ch = res["challenge"]  # the same draft on the challenge units
    assert ch["approved_passed"] and ch["units"] >= 5
    assert ch["draft_passed"] == all(u["ok"] for u in ch["rows"])
    assert next(u for u in ch["rows"] if u["unit"] == "low_fill#1")["new"]["verdict"] == "REJECT"

    assert counts(state) == before  # the preview wrote no item and no outbox message
    assert appl.pipeline.stamp.version == v1  # nor touched the line's recipe
    assert [d["version"] for d in appl.pipeline.recipe_book.docs.versions("vials")] == [v1]
    audit = appl.audit.entries(user="tom")
    assert any(e["action"] == "recipe.preview" for e in audit)


def test_an_invalid_parameter_or_a_region_outside_the_image_gets_a_message_beside_its_field(
    line,
):
    appl, _state = line
    tech, h = client(appl, "tom")
    v1 = approved_vials(tech)["version"]
    sha = appl.pipeline.db.recent_images(1)[0]
    width, height = appl.pipeline.db.image_size(sha)
    tools = tools_of(appl)
    tools[0].update(min_level_mm="thirty", inner_diameter_mm=0, roi=[width - 100, 10, 200, 50])
    r = tech.post(
        f"/api/tech/recipes/vials/{v1}/draft",
        json={"name": "vials", "tools": tools, "image": sha, "reason": "trial"},
        headers=h,
    )
    assert r.status_code == 422
    fields = r.json()["detail"]["fields"]
    assert fields["tools.0.min_level_mm"] == "must be a number"
    assert fields["tools.0.inner_diameter_mm"] == "must be more than 0"
    assert f"outside the image ({width} × {height} pixels)" in fields["tools.0.roi"]
    assert "3 fields to correct" in r.json()["detail"]["message"]
    page = tech.get(f"/recipes/vials/{v1}", headers={"accept": "text/html"}).text
    for key in fields:  # each message has its place beside the field
        assert f'data-error-for="{key}"' in page

    inside = tools_of(appl)
    inside[0]["roi"] = [-5, 0, 100, 100]  # no image named: still no region off the image
    r = tech.post(
        f"/api/recipes/vials/{v1}/preview", json={"name": "vials", "tools": inside}, headers=h
    )
    assert r.status_code == 422 and "starts outside" in r.json()["detail"]["fields"]["tools.0.roi"]
    r = tech.post(
        f"/api/tech/recipes/vials/{v1}/draft",
        json={"name": "Vials Tight!", "tools": tools_of(appl)},
        headers=h,
    )
    assert r.status_code == 422 and "lower-case" in r.json()["detail"]["fields"]["name"]
    assert [d["version"] for d in appl.pipeline.recipe_book.docs.versions("vials")] == [v1]


def test_qa_approves_the_draft_with_an_e_signature_and_the_line_runs_it_only_after_changeover(
    line,
):
    appl, _state = line
    tech, ht = client(appl, "tom")
    qa, hq = client(appl, "quinn")
    v1 = approved_vials(tech)["version"]
    running = appl.pipeline.recipe

    same = tech.post(
        f"/api/tech/recipes/vials/{v1}/draft",
        json={"name": "vials", "tools": tools_of(appl)},
        headers=ht,
    ).json()
    assert same["new"] is False and same["version"] == v1  # nothing changed: no new version
    r = tech.post(
        f"/api/tech/recipes/vials/{v1}/draft",
        json={"name": "vials", "tools": tightened(appl, 31.0), "reason": "tighter fill"},
        headers=ht,
    )
    assert r.status_code == 200, r.text
    v2 = r.json()["version"]
    assert r.json()["new"] and r.json()["status"] == "draft"
    assert r.json()["changes"] == [{"key": "tools.0.min_level_mm", "old": 30.5, "new": 31.0}]
    entry = next(
        e for e in reversed(appl.audit.entries(user="tom")) if e["action"] == "recipe.draft"
    )
    assert json.loads(entry["old"]) == {"tools.0.min_level_mm": 30.5}
    assert json.loads(entry["new"]) == {"tools.0.min_level_mm": 31.0}

    listing = qa.get("/recipes", headers={"accept": "text/html"}).text
    assert f'data-version="{v2}" data-status="draft"' in listing and "Approve…" in listing
    assert "Approve…" not in tech.get("/recipes", headers={"accept": "text/html"}).text
    assert (
        qa.post(
            f"/api/tech/recipes/vials/{v1}/draft", json={"name": "vials", "tools": []}, headers=hq
        ).status_code
        == 403
    )  # QA approves; it does not edit

    sign = {"password": "qa-secret-1", "reason": "reviewed the preview"}
    r = tech.post(f"/api/recipes/vials/{v2}/approve", json=sign, headers=ht)
    assert r.status_code == 403  # a technician cannot approve
    r = qa.post(f"/api/recipes/vials/{v2}/approve", json={**sign, "password": "x"}, headers=hq)
    assert r.status_code == 403
    r = qa.post(f"/api/recipes/vials/{v2}/approve", json=sign, headers=hq)
    assert r.status_code == 200, r.text
    assert r.json()["signature"]["username"] == "quinn"

    # approved, and still the line runs what it ran: the new version waits for a changeover
    assert appl.pipeline.recipe is running and appl.pipeline.stamp.version == v1
    assert appl.pipeline.recipe.tools[0].params["min_level_mm"] == 30.5
    gtin = appl.pipeline.batch.gtin
    ProductMaster(appl.pipeline.db, appl.audit).docs.seed(
        gtin,
        {
            "gtin": gtin,
            "name": "Amber vial 10 ml",
            "recipe": "vials",
            "scenario": "vials",
            "challenge": [
                {"defect": "low_fill", "expect": "REJECT", "reason": "LOW_FILL"},
                {"expect": "PASS", "count": 2},
            ],
        },
    )
    appl.changeover.start(gtin, "LOT7", "281231", by="olga")
    assert appl.pipeline.stamp.version == v2
    assert appl.pipeline.recipe.tools[0].params["min_level_mm"] == 31.0
