"""The challenge test at batch start, and the product master that holds each challenge set.

A batch does not start until every challenge unit got its expected verdict and reason; a
recipe broken so that low fill passes fails it, the batch stays unstarted, the alarm and the
record say which unit passed and why. A product whose challenge set is empty or lacks an
expected reason cannot be approved."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml
from typer.testing import CliRunner

from edge.app import Appliance
from edge.config import default_recipes, parse_config
from edge.recipes.book import RecipeBook, recipe_content
from edge.recipes.documents import APPROVER_ROLES, DocumentError
from edge.recipes.products import ProductMaster
from edge.sim.gs1data import default_gtin
from edge.store.audit import AuditTrail
from edge.store.db import Database
from edge.store.signatures import sign
from edge.web.auth import UserStore

QA_PW = "qa-password-123"
GTIN = default_gtin(1)  # the simulated line's GTIN (seed 1)


def stores(state):
    db = Database(state / "edge.db")
    audit = AuditTrail(db)
    users = UserStore(db, audit)
    if users.get("quinn") is None:
        users.create("quinn", "Quinn QA", "qa", QA_PW, by="shell:test", reason="set-up")
    book = RecipeBook(db, audit)
    book.seed(default_recipes())
    return db, audit, users, book


def qa_signs(audit, users, docs, name, version):
    return sign(audit, users.authenticate, "quinn", QA_PW, "reviewed", "approved",
                docs.target(name, version), roles=APPROVER_ROLES)  # fmt: skip


def approve_broken_vials(state):
    """A vials recipe whose fill-level tolerance is so wide that low fill passes, approved.

    The shipped recipe finds low fill twice (the fill-level tool and the detector); this one
    has the wide tolerance and no detector, so nothing rejects a low fill any more."""
    _db, audit, users, book = stores(state)
    data = recipe_content(default_recipes()["vials"])
    data["tools"][0]["min_level_mm"] = 5.0
    data["tools"] = [t for t in data["tools"] if t["type"] != "defects"]
    v = book.docs.add_draft("vials", data, "shell:test", "wider fill tolerance")
    book.docs.approve("vials", v, qa_signs(audit, users, book.docs, "vials", v))
    return v


def vials_config(state, **extra):
    return parse_config(
        {
            "records": {"state_dir": str(state), "sample_pass_every": 0},
            "source": {"type": "simulator", "scenario": "vials", "items": 0, "realtime": False},
            **extra,
        }
    )


def close(app):
    """Stop an appliance of an empty simulated line (started, so that stop need not wait)."""
    app.start()
    app.stop()


def run_cli(args, state):
    from edge.cli import _mount_optional, app

    _mount_optional()
    return CliRunner().invoke(app, [*args, "--state-dir", str(state)])


def test_the_shipped_recipe_passes_its_challenge_and_the_batch_records_it(tmp_path):
    res = run_cli(["challenge", "run", "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["passed"] and out["units"] >= 5 and out["recipe_version"] == 1
    units = {r["unit"]: r for r in out["results"]}
    assert units["low_fill#1"]["reasons"] == ["LOW_FILL"]
    assert units["good#1"]["verdict"] == "PASS"

    app = Appliance(vials_config(tmp_path), components=False)
    try:
        assert app.pipeline.batch is not None  # the simulator's batch started
        assert app.changeover.last.passed
        db = sqlite3.connect(tmp_path / "edge.db")
        cid, version = db.execute("SELECT challenge_id, recipe_version FROM batches").fetchone()
        passed, units_n = db.execute(
            "SELECT passed, units FROM challenge_runs WHERE id = ?", (cid,)
        ).fetchone()
        assert (passed, version) == (1, 1) and units_n == app.changeover.last.units
    finally:
        close(app)


def test_a_recipe_that_lets_low_fill_pass_fails_the_challenge_and_the_batch_cannot_start(
    tmp_path,
):
    v = approve_broken_vials(tmp_path)
    res = run_cli(["challenge", "run", "--json"], tmp_path)
    assert res.exit_code == 1
    out = json.loads(res.output)
    assert not out["passed"] and out["recipe_version"] == v
    assert [(f["unit"], f["expect_reason"], f["verdict"]) for f in out["failures"]] == [
        ("low_fill#1", "LOW_FILL", "PASS")
    ]

    app = Appliance(vials_config(tmp_path), components=False)
    try:
        assert app.pipeline.batch is None  # the batch did not start
        alarm = next(a for a in app.pipeline.alarms.active() if a.code == "CHALLENGE_FAILED")
        assert "low_fill#1: expected REJECT LOW_FILL, got PASS" in alarm.message
        db = sqlite3.connect(tmp_path / "edge.db")
        assert db.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 0
        results = json.loads(
            db.execute("SELECT results FROM challenge_runs ORDER BY id DESC LIMIT 1").fetchone()[0]
        )
        bad = [r for r in results if not r["ok"]]
        assert [(r["unit"], r["verdict"], r["reasons"]) for r in bad] == [
            ("low_fill#1", "PASS", [])
        ]
        audit = db.execute("SELECT new FROM audit WHERE action = 'challenge.failed'").fetchone()
        assert "low_fill#1" in audit[0]
    finally:
        close(app)


PRODUCT = {
    "gtin": GTIN,
    "name": "Amber vial 10 ml",
    "recipe": "vials",
    "scenario": "vials",
    "camera": {"exposure_us": 800, "gain": 1.5},
    "printed": {"fields": ["01", "17", "10", "21"], "date_format": "YYMMDD"},
    "challenge": [
        {"defect": "low_fill", "expect": "REJECT", "reason": "LOW_FILL"},
        {"defect": "missing_cap", "expect": "REJECT", "reason": "MISSING_CAP"},
        {"defect": None, "expect": "PASS", "count": 2},
    ],
}


def test_a_product_with_an_empty_or_incomplete_challenge_set_cannot_be_approved(tmp_path):
    db, audit, users, _ = stores(tmp_path)
    master = ProductMaster(db, audit)
    empty = {**PRODUCT, "challenge": []}
    no_reason = {**PRODUCT, "challenge": [{"defect": "low_fill", "expect": "REJECT"},
                                          {"expect": "PASS"}]}  # fmt: skip
    for content, why in ((empty, "challenge set is empty"), (no_reason, "expected reason")):
        [(gtin, v)] = master.import_yaml(yaml.safe_dump({"products": [content]}), "shell:tech")
        with pytest.raises(DocumentError, match=why):
            master.docs.approve(gtin, v, qa_signs(audit, users, master.docs, gtin, v))
    assert master.approved(GTIN) is None


def test_products_move_between_appliances_as_yaml(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    db, audit, users, _ = stores(a)
    master = ProductMaster(db, audit)
    [(gtin, v)] = master.import_yaml(yaml.safe_dump({"products": [PRODUCT]}), "shell:tech")
    master.docs.approve(gtin, v, qa_signs(audit, users, master.docs, gtin, v))
    out = tmp_path / "products.yaml"
    res = run_cli(["product", "export", "--out", str(out)], a)
    assert res.exit_code == 0, res.output
    res = run_cli(["product", "import", str(out)], b)
    assert res.exit_code == 0, res.output
    res = run_cli(["product", "show", GTIN, "--json"], b)
    shown = json.loads(res.output)
    assert shown["status"] == "draft"  # QA approves it again on the new appliance
    assert shown["content"] == ProductMaster(db).approved(GTIN).model_dump(mode="json")
    res = run_cli(["product", "list", "--json"], a)
    assert json.loads(res.output)[0]["approved_version"] == 1


def test_a_product_file_with_a_bad_gtin_is_refused_with_the_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"products": [{**PRODUCT, "gtin": "12345678901234"}]}))
    res = run_cli(["product", "import", str(bad)], tmp_path)
    assert res.exit_code == 2
    assert "products.0.gtin" in res.output and "check digit" in res.output


def test_the_challenge_repeated_during_the_batch_stops_the_line_when_it_fails(tmp_path):
    from edge.recipes.component import build

    approve_broken_vials(tmp_path)
    cfg = vials_config(tmp_path, challenge={"at_batch_start": False, "every_min": 30})
    app = Appliance(cfg, components=False)
    try:
        assert app.pipeline.batch is not None  # started without a challenge (configured so)
        schedule = build(app)
        assert schedule.every_s == 1800
        schedule.run_once()
        alarm = next(a for a in app.pipeline.alarms.active() if a.code == "CHALLENGE_FAILED")
        assert alarm.line_stop and "low_fill#1" in alarm.message
        assert schedule.status()["last"]["passed"] is False
    finally:
        close(app)
    off = Appliance(vials_config(tmp_path / "off"), components=False)
    assert build(off) is None  # not configured: no repeated challenge
    close(off)
