"""The touchscreen's changeover over HTTP: the same GS1 rules for every batch start, approved
products only, a scanned label filled into lot and expiry, the changeover's progress for the
panel, and the recipe version the line really runs shown by the web process (also when it
runs in its own process and the recipe exists only in the database)."""

from __future__ import annotations

import contextlib
import time

import pytest
from fastapi.testclient import TestClient

from edge.app import Appliance
from edge.config import default_recipes
from edge.recipes.book import recipe_content
from edge.recipes.products import ProductMaster
from edge.store.recipes import content_hash
from edge.web.server import create_app

import web_support as ws
from fake_tools import ListSource

GTIN = "09506000134352"
CARTONS = {
    "gtin": GTIN,
    "name": "Carton 20 tablets",
    "recipe": "cartons",
    "scenario": "cartons",
    "challenge": [
        {"defect": "wrong_lot", "expect": "REJECT", "reason": "LOT_MISMATCH"},
        {"expect": "PASS"},
    ],
}


def operator(appl):
    client = TestClient(create_app(appl))
    return client, {"x-csrf-token": ws.login(client, "olga")}


def test_a_batch_started_by_lot_is_checked_by_the_same_gs1_rules_as_a_changeover(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    client, h = operator(appl)
    for body, words in (
        ({"lot": "A 1"}, "lot: a lot is 1 to 20 characters of the GS1 character set 82"),
        ({"lot": "L" * 21}, "GS1 character set 82"),
        ({"lot": "A1", "expiry": "281331"}, "expiry: expiry month must be 01 to 12"),
        ({"lot": "A1", "expiry": "280230"}, "expiry: expiry is not a calendar date"),
        ({"lot": "A1", "gtin": "09506000134353"}, "check digit"),
    ):
        r = client.post("/api/line/batch/start", json=body, headers=h)
        assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)
    assert appl.pipeline.batch is None
    r = client.post("/api/line/batch/start", json={"lot": "A1", "expiry": "280200"}, headers=h)
    assert r.status_code == 200, r.text  # day 00: the end of the month in GS1
    assert appl.pipeline.recipe.name == "t"

    # the GTIN of an approved product: that product's changeover, never its batch on "t"
    ProductMaster(appl.pipeline.db, appl.audit).docs.seed(GTIN, CARTONS)
    body = {"lot": "A2", "gtin": GTIN}
    r = client.post("/api/line/batch/start", json=body, headers=h)
    assert r.status_code == 422 and "needs its expiry" in r.json()["detail"]
    r = client.post("/api/line/batch/start", json={**body, "expiry": "281231"}, headers=h)
    assert r.status_code == 200, r.text
    assert (appl.pipeline.recipe.name, appl.pipeline.batch.lot) == ("cartons", "A2")
    assert appl.changeover.last.passed and appl.changeover.last.units == 2
    appl.stop()


def test_the_touchscreen_offers_approved_products_only_and_checks_each_field(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    master = ProductMaster(appl.pipeline.db, appl.audit)
    master.docs.seed(GTIN, CARTONS)
    master.docs.add_draft("09506000134369", {**CARTONS, "gtin": "09506000134369"}, "tom")
    master.docs.seed("09506000134376", {**CARTONS, "gtin": "09506000134376", "recipe": "gone"})
    client, h = operator(appl)
    listed = client.get("/api/line/products").json()
    assert [(p["gtin"], p["recipe"], p["recipe_version"]) for p in listed] == [(GTIN, "cartons", 1)]
    assert listed[0]["challenge_units"] == 2

    r = client.post("/api/line/batch/check", json={"lot": "A 1", "expiry": "2812"}, headers=h)
    assert r.json()["problems"] == {
        "lot": "a lot is 1 to 20 characters of the GS1 character set 82",
        "expiry": "expiry is YYMMDD (6 digits)",
    }
    scan = "]d2010950600013435217281231" + "10LOT7\x1d21ABC"
    r = client.post("/api/line/batch/check", json={"scan": scan}, headers=h).json()
    assert r == {"values": {"gtin": GTIN, "lot": "LOT7", "expiry": "281231"}, "problems": {}}
    printed = "(01)09506000134352(17)281331(10)LOT7"
    r = client.post("/api/line/batch/check", json={"scan": printed}, headers=h).json()
    assert r["values"] == {"gtin": GTIN} and r["problems"] == {
        "scan": "AI (17) is not a valid date: '281331'"
    }
    r = client.post("/api/line/batch/check", json={"scan": "hello"}, headers=h).json()
    assert "not a GS1 element string" in r["problems"]["scan"]
    appl.stop()


def test_the_changeover_reports_each_step_and_the_header_names_product_and_recipe_version(
    tmp_path,
):
    cfg = ws.config(tmp_path)
    slow = cfg.recipes["t"].model_copy(deep=True)
    slow.tools[0].sleep_ms = 150  # the items triggered before the changeover take a while
    cfg = cfg.model_copy(update={"recipes": {**cfg.recipes, "t": slow}})
    src = ListSource(ws.images(400), period_s=0.02, paced=True)
    appl = Appliance(cfg, source=src, components=False)
    ws.add_users(appl)
    ProductMaster(appl.pipeline.db, appl.audit).docs.seed(GTIN, CARTONS)
    steps = []
    appl.pipeline.bus.subscribe_sync(
        "batch", lambda _t, ev: ev.get("event") == "changeover" and steps.append(dict(ev))
    )
    appl.start()
    try:
        client, h = operator(appl)
        time.sleep(0.3)  # items in flight
        r = client.post(
            "/api/line/batch/changeover",
            json={"gtin": GTIN, "lot": "C1", "expiry": "281231"},
            headers=h,
        )
        assert r.status_code == 200, r.text
        assert (r.json()["recipe"], r.json()["recipe_version"]) == ("cartons", 1)
        phases = [s["phase"] for s in steps]
        assert phases[0] == "checking" and phases[-1] == "started"
        assert "camera" in phases
        units = [(s["units_done"], s["units_total"]) for s in steps if s["phase"] == "challenge"]
        assert units[-1] == (2, 2) and (1, 2) in units, units
        assert all(s["lot"] == "C1" and s["product"] == "Carton 20 tablets" for s in steps[1:])
        waited = [s["in_flight"] for s in steps if s["phase"] == "waiting"]
        assert waited and all(n > 0 for n in waited), phases  # "waiting for N items in flight"
        state = client.get("/api/line/state").json()
        assert state["product"] == "Carton 20 tablets"
        assert (state["recipe"], state["recipe_version"]) == ("cartons", 1)
        assert state["changeover"]["phase"] == "started"
    finally:
        appl.stop()


def test_a_failed_challenge_tells_the_panel_which_unit_failed_and_why(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    wrong = {**CARTONS, "challenge": [
        {"defect": "wrong_lot", "expect": "REJECT", "reason": "GTIN_MISMATCH"},
        {"expect": "PASS"},
    ]}  # fmt: skip
    ProductMaster(appl.pipeline.db, appl.audit).docs.seed(GTIN, wrong)
    appl.start()
    try:
        client, h = operator(appl)
        r = client.post(
            "/api/line/batch/changeover",
            json={"gtin": GTIN, "lot": "F1", "expiry": "281231"},
            headers=h,
        )
        assert r.status_code == 409
        assert "wrong_lot#1: expected REJECT GTIN_MISMATCH, got REJECT" in r.json()["detail"]
        co = client.get("/api/line/state").json()["changeover"]
        assert (co["phase"], co["code"], co["lot"]) == ("refused", "challenge_failed", "F1")
        assert [(f["unit"], f["expect_reason"]) for f in co["failures"]] == [
            ("wrong_lot#1", "GTIN_MISMATCH")
        ]
        assert appl.pipeline.batch is None and appl.pipeline.recipe.name == "t"
    finally:
        appl.stop()


@pytest.mark.parametrize("layout", ["in process", "own process"])
def test_the_web_shows_the_recipe_version_the_line_runs_not_the_config_files(tmp_path, layout):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    book = appl.pipeline.recipe_book
    tight = recipe_content(default_recipes()["cartons"])
    tight["name"] = "cartons-tight"  # a recipe only the database holds (no YAML file)
    tight["deadline_ms"] = 900
    book.docs.seed("cartons-tight", tight)
    ProductMaster(appl.pipeline.db, appl.audit).docs.seed(
        GTIN, {**CARTONS, "recipe": "cartons-tight"}
    )
    with contextlib.ExitStack() as stack:
        if layout == "own process":
            web = stack.enter_context(ws.web_process(appl))
            client = stack.enter_context(ws.http(web))
        else:
            appl.start()
            stack.callback(appl.stop)
            client = TestClient(create_app(appl))
        h = {"x-csrf-token": ws.login(client, "olga")}
        before = client.get("/api/line/recipe").json()
        assert (before["name"], before["version"]) == ("t", 1)
        r = client.post(
            "/api/line/batch/changeover",
            json={"gtin": GTIN, "lot": "T1", "expiry": "281231"},
            headers=h,
        )
        assert r.status_code == 200, r.text
        end = time.monotonic() + 10
        while (now := client.get("/api/line/recipe").json())["name"] != "cartons-tight":
            assert time.monotonic() < end, now
            time.sleep(0.1)
        assert now["version"] == 1 and now["content"]["deadline_ms"] == 900
        assert content_hash(now["content"]) == now["sha256"] == appl.pipeline.stamp.sha256
        assert now["status"] == "approved"


def test_the_web_process_judges_with_the_recipe_the_line_sent_or_the_databases_copy(tmp_path):
    """Shadow mode and evaluations in the web process use `RemotePipeline.recipe`: the recipe
    the line sends at each change, and until it arrives the approved version its snapshot
    names, read from the database; never the config file's copy."""
    import multiprocessing as mp

    from edge.config import Recipe
    from edge.web.isolated import RemotePipeline

    appl = ws.appliance(tmp_path, imgs=[])
    tight = recipe_content(default_recipes()["cartons"])
    tight["name"], tight["deadline_ms"] = "cartons-tight", 900
    appl.pipeline.recipe_book.docs.seed("cartons-tight", tight)
    remote = RemotePipeline(appl.cfg, remote=None)
    assert remote.recipe.name == "t"  # no snapshot yet: the config's active recipe
    remote.snap = {"stamp": {"name": "cartons-tight", "version": 1, "sha256": "x"}}
    assert remote.recipe.name == "cartons-tight" and remote.recipe.deadline_ms == 900
    sent = Recipe.model_validate({**tight, "deadline_ms": 950})
    r, w = mp.Pipe(duplex=False)
    w.send(("recipe", (("cartons-tight", 1), sent)))
    w.send(None)
    remote.pump(r, lambda: None)
    assert remote.recipe.deadline_ms == 950  # the line's own object, as it runs it
    appl.stop()
