"""Recipes as controlled documents: seed versions, QA approval with an e-signature, retire,
rollback, a readable diff in the audit trail, and every item naming its recipe version and hash."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
import yaml
from typer.testing import CliRunner

from edge.config import default_recipes, parse_config
from edge.pipeline import Pipeline
from edge.recipes.book import RecipeBook, RecipeNotApproved, recipe_content
from edge.store.audit import AuditTrail
from edge.store.db import Database
from edge.store.recipes import content_hash

from fake_tools import ListSource, grey

QA = ("quinn", "qa", "Quinn QA", "qa-password-123")
OPERATOR = ("otto", "operator", "Otto Operator", "op-password-123")


def cli():
    from edge.cli import _mount_optional, app

    _mount_optional()
    return app


def add_users(state_dir):
    from edge.web.auth import UserStore

    db = Database(state_dir / "edge.db")
    users = UserStore(db, AuditTrail(db))
    for name, role, full, pw in (QA, OPERATOR):
        users.create(name, full, role, pw, by="shell:test", reason="test set-up")


def run(args, state_dir, input=None):
    res = CliRunner().invoke(cli(), [*args, "--state-dir", str(state_dir)], input=input)
    return res


def line(tmp_path, recipes=None, recipe="t", items=3):
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 0},
            "recipe": recipe,
            "recipes": recipes or {"t": {"name": "t", "tools": [{"type": "behaviour"}]}},
        }
    )
    return Pipeline(cfg, source=ListSource([grey() for _ in range(items)]))


def test_shipped_recipes_are_the_seed_versions_and_every_item_names_version_and_hash(tmp_path):
    p = line(tmp_path)
    p.run(timeout=20)
    book = RecipeBook(Database(tmp_path / "edge.db"))
    for name, shipped in default_recipes().items():
        doc = book.docs.approved(name)
        assert doc["version"] == 1 and doc["created_by"] == "system:seed"
        assert doc["sha256"] == content_hash(recipe_content(shipped))
    t = book.docs.approved("t")
    rows = (
        sqlite3.connect(tmp_path / "edge.db")
        .execute("SELECT recipe, recipe_version, recipe_sha256 FROM items")
        .fetchall()
    )
    assert rows and all(r == ("t", 1, t["sha256"]) for r in rows)


def test_a_recipe_edited_in_the_config_becomes_a_draft_and_the_line_runs_the_approved_one(
    tmp_path,
):
    line(tmp_path).stop()
    edited = {"t": {"name": "t", "tools": [{"type": "behaviour", "sleep_ms": 5}]}}
    p = line(tmp_path, recipes=edited)
    try:
        assert p.stamp.version == 1
        assert p.recipe.tools[0].params.get("sleep_ms", 0) == 0  # not the edited copy
    finally:
        p.stop()
    book = RecipeBook(Database(tmp_path / "edge.db"))
    assert [(d["version"], d["status"]) for d in book.docs.versions("t")] == [
        (1, "approved"),
        (2, "draft"),
    ]
    assert book.docs.diff("t", 1, 2) == {"tools.0.sleep_ms": {"old": None, "new": 5}}


def test_a_recipe_without_an_approved_version_does_not_run(tmp_path):
    line(tmp_path).stop()
    db = Database(tmp_path / "edge.db")
    RecipeBook(db).docs.retire("t", 1, "shell:test", "withdrawn")
    with pytest.raises(RecipeNotApproved, match="no approved version"):
        line(tmp_path)


def draft_vials(tmp_path, **changes):
    data = recipe_content(default_recipes()["vials"])
    data["tools"][0].update(changes)
    f = tmp_path / "vials-draft.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def test_qa_approves_a_draft_with_an_e_signature_and_the_audit_shows_the_diff(tmp_path):
    add_users(tmp_path)
    f = draft_vials(tmp_path, min_level_mm=31.0)
    res = run(["recipe", "draft", str(f), "--reason", "tighter fill"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "vials v2 draft" in res.output

    res = run(["recipe", "diff", "vials", "1", "2", "--json"], tmp_path)
    assert json.loads(res.output) == {"tools.0.min_level_mm": {"old": 30.5, "new": 31.0}}

    # an operator's signature does not approve; a wrong password does not either
    res = run(["recipe", "approve", "vials", "2", "--user", "otto", "--reason", "ok"], tmp_path,
              input=OPERATOR[3] + "\n")  # fmt: skip
    assert res.exit_code == 1 and "needs the role qa" in res.output
    res = run(["recipe", "approve", "vials", "2", "--user", "quinn", "--reason", "ok"], tmp_path,
              input="wrong-password\n")  # fmt: skip
    assert res.exit_code == 1 and "signature refused" in res.output
    db = Database(tmp_path / "edge.db")
    assert RecipeBook(db).docs.get("vials", 2)["status"] == "draft"

    res = run(["recipe", "approve", "vials", "2", "--user", "quinn", "--reason", "tighter fill"],
              tmp_path, input=QA[3] + "\n")  # fmt: skip
    assert res.exit_code == 0, res.output
    book = RecipeBook(db)
    assert book.docs.approved("vials")["version"] == 2
    assert book.docs.get("vials", 1)["status"] == "retired"
    sig = db.conn.execute("SELECT * FROM signatures WHERE target = 'recipe:vials/v2'").fetchone()
    assert sig["username"] == "quinn" and sig["meaning"] == "approved"
    entry = db.conn.execute(
        "SELECT * FROM audit WHERE action = 'recipe.approve' AND target = 'recipe:vials/v2'"
    ).fetchone()
    assert json.loads(entry["old"]) == {"tools.0.min_level_mm": 30.5}
    assert json.loads(entry["new"]) == {"tools.0.min_level_mm": 31.0}
    assert entry["user"] == "quinn"

    # the line runs the approved version 2, whatever the shipped YAML says
    recipe, stamp = book.approved("vials")
    assert stamp.version == 2 and recipe.tools[0].params["min_level_mm"] == 31.0

    res = run(["recipe", "rollback", "vials", "--reason", "back to the validated one"], tmp_path)
    assert res.exit_code == 0 and "to v1" in res.output
    assert book.docs.approved("vials")["version"] == 1
    rb = db.conn.execute("SELECT * FROM audit WHERE action = 'recipe.rollback'").fetchone()
    assert json.loads(rb["new"]) == {"version": 1, "tools.0.min_level_mm": 30.5}

    res = run(["recipe", "retire", "vials", "1", "--reason", "withdrawn"], tmp_path)
    assert res.exit_code == 0
    with pytest.raises(RecipeNotApproved):
        book.approved("vials")
    res = run(["recipe", "list", "--json"], tmp_path)
    assert [r["status"] for r in json.loads(res.output)["vials"]] == ["retired", "retired"]


def test_a_draft_with_an_invalid_parameter_is_refused(tmp_path):
    f = draft_vials(tmp_path, min_level_mm="high")
    res = run(["recipe", "draft", str(f), "--reason", "x"], tmp_path)
    assert res.exit_code == 2
    assert "min_level_mm" in res.output


def test_a_changeover_waits_for_the_items_in_flight_and_they_keep_their_recipe(tmp_path):
    from edge.recipes.changeover import Changeover
    from edge.recipes.products import ProductMaster

    recipes = {
        "slow": {"name": "slow", "tools": [{"type": "behaviour", "sleep_ms": 400}]},
        "fast": {"name": "fast", "tools": [{"type": "behaviour"}]},
    }
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 0},
            "pipeline": {"deadline_ms": 3000},
            "recipe": "slow",
            "recipes": recipes,
        }
    )
    p = Pipeline(cfg, source=ListSource([grey() for _ in range(2)], period_s=0.05))
    co = Changeover(p, challenge_on=False)
    master = ProductMaster(p.db)
    gtin = "09506000134352"
    content = {"gtin": gtin, "name": "x", "recipe": "fast",
               "challenge": [{"defect": "low_fill", "expect": "REJECT", "reason": "LOW_FILL"},
                             {"expect": "PASS"}]}  # fmt: skip
    master.docs.seed(gtin, content)  # approved for the test (approval itself: test_challenge)
    p.start()
    try:
        wait = time.monotonic() + 5
        while p.tracker.in_flight() < 2 and time.monotonic() < wait:
            time.sleep(0.01)
        assert p.tracker.in_flight() == 2
        co.start(gtin, "A12B", "271231", by="shell:test")
        assert p.tracker.in_flight() == 0  # both items finished before the switch
        assert p.recipe.name == "fast" and p.batch.gtin == gtin
        assert p.wait(10)
    finally:
        p.stop()
    rows = sqlite3.connect(tmp_path / "edge.db").execute("SELECT recipe FROM items").fetchall()
    assert rows == [("slow",), ("slow",)]
