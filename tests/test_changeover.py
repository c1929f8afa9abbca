"""Changeover by MES: `start_batch` by GTIN runs the product's approved recipe after its
challenge passed; a lot or expiry that is not valid GS1, an unapproved recipe, or a failed
challenge is refused with the reason. Against a real Mosquitto."""

from __future__ import annotations

import pytest

from edge.config import default_recipes
from edge.recipes.book import recipe_content
from edge.recipes.documents import APPROVER_ROLES
from edge.recipes.products import ProductMaster
from edge.store.signatures import sign
from edge.web.auth import UserStore

from mqtt_support import Requester, appliance_login, wait_until
from services import Line, line_config, plant_broker  # noqa: F401

QA_PW = "qa-password-123"
GTIN = "09506000134352"  # a product with the shipped vials recipe
BROKEN_GTIN = "09506000134369"  # a product whose recipe lets low fill pass


def approve(line, docs, name, version):
    audit = line.app.audit
    users = UserStore(line.pipeline.db, audit)
    if users.get("quinn") is None:
        users.create("quinn", "Quinn QA", "qa", QA_PW, by="shell:test", reason="set-up")
    sig = sign(audit, users.authenticate, "quinn", QA_PW, "reviewed", "approved",
               docs.target(name, version), roles=APPROVER_ROLES)  # fmt: skip
    docs.approve(name, version, sig)


def product(gtin, recipe):
    return {
        "gtin": gtin,
        "name": f"vial {gtin[-3:]}",
        "recipe": recipe,
        "scenario": "vials",
        "challenge": [
            {"defect": "low_fill", "expect": "REJECT", "reason": "LOW_FILL"},
            {"defect": None, "expect": "PASS", "count": 2},
        ],
    }


@pytest.fixture
def line(plant_broker, tmp_path):  # noqa: F811
    cfg = line_config(
        tmp_path / "state", period_s=0.02, mqtt_port=plant_broker.port,
        mqtt=appliance_login(tmp_path),
    )  # fmt: skip
    ln = Line(cfg, [], 0.02, batch=False)
    ln.start()
    assert wait_until(lambda: ln.mqtt.status()["up"])
    book = ln.pipeline.recipe_book
    wide = recipe_content(default_recipes()["vials"])
    wide["name"] = "vials-wide"
    wide["tools"][0]["min_level_mm"] = 5.0
    wide["tools"] = [t for t in wide["tools"] if t["type"] != "defects"]
    v = book.docs.add_draft("vials-wide", wide, "shell:tech", "wider fill tolerance")
    approve(ln, book.docs, "vials-wide", v)
    master = ProductMaster(ln.pipeline.db, ln.app.audit)
    for gtin, recipe in ((GTIN, "vials"), (BROKEN_GTIN, "vials-wide")):
        pv = master.docs.add_draft(gtin, product(gtin, recipe), "shell:tech")
        approve(ln, master.docs, gtin, pv)
    yield ln
    ln.stop()


def test_mes_starts_a_batch_by_gtin_with_the_products_approved_recipe(plant_broker, line):  # noqa: F811
    mes = Requester(plant_broker.port, "mes1")
    try:
        bad = mes.send("start_batch", {"gtin": GTIN, "lot": "A12B", "expiry": "271331"})
        assert bad["error"]["code"] == "invalid"
        assert "expiry month must be 01 to 12" in bad["error"]["message"]
        bad = mes.send("start_batch", {"gtin": GTIN, "lot": "L" * 21, "expiry": "271231"})
        assert "GS1 character set 82" in bad["error"]["message"]
        assert line.pipeline.batch is None

        resp = mes.send("start_batch", {"gtin": GTIN, "lot": "A12B", "expiry": "271231"})
        assert resp["ok"], resp
        r = resp["result"]
        assert (r["recipe"], r["recipe_version"]) == ("vials", 1)
        assert r["challenge"]["passed"] and r["challenge"]["units"] == 3
        assert line.pipeline.recipe.name == "vials" and line.pipeline.batch.lot == "A12B"
        assert mes.send("stop_batch", {})["ok"]

        # the product's recipe lets low fill pass: the challenge fails, no batch starts
        resp = mes.send("start_batch", {"gtin": BROKEN_GTIN, "lot": "A12C", "expiry": "271231"})
        assert resp["error"]["code"] == "challenge_failed"
        assert "low_fill#1: expected REJECT LOW_FILL, got PASS" in resp["error"]["message"]
        assert resp["error"]["details"][0]["unit"] == "low_fill#1"
        assert line.pipeline.batch is None
        assert line.pipeline.alarms.is_active("CHALLENGE_FAILED")
        assert line.pipeline.recipe.name == "vials", "the refused product's recipe is unloaded"

        # a recipe with a draft only cannot be chosen
        line.pipeline.recipe_book.docs.add_draft(
            "draft-only", {**recipe_content(default_recipes()["cartons"]), "name": "draft-only"},
            "shell:tech",
        )  # fmt: skip
        resp = mes.send("change_recipe", {"recipe": "draft-only"})
        assert resp["error"]["code"] == "recipe_not_approved"
        resp = mes.send("start_batch", {"gtin": "09506000134376", "lot": "X1",
                                        "expiry": "271231", "recipe": "draft-only"})  # fmt: skip
        assert resp["error"]["code"] == "recipe_not_approved"
    finally:
        mes.close()
