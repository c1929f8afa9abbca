"""The defect taxonomy is the one home of defect classes, their reason codes and severities.

The simulator's truth, the shipped model's card, the labeller's classes and the shipped
recipes all read it, so none of them can disagree with another.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge import taxonomy
from edge.config import Recipe, default_recipes
from edge.domain import Reason

ROOT = Path(__file__).resolve().parents[1]


def test_the_line_reads_the_taxonomy_without_importing_the_simulator():
    code = (
        "import sys, edge.taxonomy; "
        "bad = [m for m in sys.modules if m.startswith(('edge.sim', 'edge.capture', 'cv2'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_defect_class_gives_known_reason_codes_with_a_severity():
    for scenario, product in taxonomy.PRODUCTS.items():
        shown = list(product.defects)
        if product.code_defects:
            shown += taxonomy.CODE_DEFECTS + taxonomy.PRINT_DEFECTS
        shown += list(product.novel)
        for defect in shown:
            codes = taxonomy.reasons(defect, scenario)
            assert codes, defect
            assert all(c in Reason.__members__ for c in codes), (defect, codes)
            assert taxonomy.severity(defect, scenario) in ("critical", "major", "minor")


def test_a_class_is_as_severe_as_its_worst_reason():
    assert taxonomy.severity("scratch", "vials") == "minor"
    assert taxonomy.severity("cap_tilt", "vials") == "major"
    assert taxonomy.severity("expired", "vials") == "critical"
    # a missing vial label is a major defect; a carton without its print has no code to read
    assert taxonomy.reasons("missing_label", "vials") == ["MISSING_LABEL"]
    assert taxonomy.severity("missing_label", "vials") == "major"
    assert taxonomy.reasons("missing_label", "cartons") == ["NO_READ"]
    assert taxonomy.severity("missing_label", "cartons") == "critical"


def test_an_unknown_class_or_product_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown defect class 'dent'"):
        taxonomy.reasons("dent", "vials")
    with pytest.raises(ValueError, match="unknown product 'ampoules'"):
        taxonomy.reasons("crack", "ampoules")


def test_the_detector_classes_are_the_products_defects_then_the_code():
    products = [c for p in taxonomy.PRODUCTS.values() for c in p.defects]
    assert [*products, "code"] == taxonomy.DETECTOR_CLASSES
    assert len(set(taxonomy.DETECTOR_CLASSES)) == len(taxonomy.DETECTOR_CLASSES)


def test_the_shipped_model_card_agrees_with_the_taxonomy():
    for card in sorted((ROOT / "models").glob("*/*/card.yaml")):
        data = yaml.safe_load(card.read_text())
        if data["name"] != "defects":
            continue
        assert data["classes"] == taxonomy.DETECTOR_CLASSES, card
        assert data["severities"] == taxonomy.detector_severities(), card


def test_shipped_recipes_rule_every_code_of_their_product_at_the_taxonomys_severity():
    recipes = default_recipes()
    for scenario, product in taxonomy.PRODUCTS.items():
        recipe = recipes[scenario]
        codes = {r for d in product.defects for r in taxonomy.reasons(d, scenario)}
        codes |= {c.value for c in taxonomy.CODE_CHECKS}
        for code in codes:
            assert code in recipe.classes, (scenario, code)
            assert recipe.rule(code).severity == taxonomy.SEVERITY[Reason(code)]
        for tool in recipe.tools:
            if tool.type == "defects":
                assert sorted(tool.params["classes"]) == sorted(product.defects)


def test_a_recipe_overrides_what_the_taxonomy_gives():
    data = {
        "name": "vials",
        "scenario": "vials",
        "tools": [{"type": "defects", "model": "defects", "classes": ["crack"]}],
        "classes": {"SCRATCH": {"severity": "major", "action": "warn"}},
    }
    recipe = Recipe.model_validate(taxonomy.recipe_defaults(data))
    assert recipe.rule("SCRATCH").severity.value == "major"
    assert recipe.rule("SCRATCH").action.value == "warn"
    assert recipe.rule("CRACK").severity.value == "critical"
    assert recipe.tools[0].params["classes"] == ["crack"]


def test_every_product_has_a_simulator_scene_and_an_unknown_one_is_a_clear_error():
    from edge.sim.scene import SCENES, Scene, scene_class

    assert set(SCENES) == set(taxonomy.PRODUCTS)
    for name in SCENES:
        assert issubclass(scene_class(name), Scene)
    with pytest.raises(ValueError, match="no simulator scene for 'ampoules'"):
        scene_class("ampoules")


def test_novel_defects_are_anomalies_the_detector_never_learned():
    """The simulator's novel kinds stand for defects nobody labelled: only the good-only
    tool can report them, so they must never enter the shipped detector's classes."""
    novel = {c for p in taxonomy.PRODUCTS.values() for c in p.novel}
    assert len(novel) >= 3
    assert novel <= set(taxonomy.NOVEL_DEFECTS)
    assert novel.isdisjoint(taxonomy.DETECTOR_CLASSES)
    for scenario, product in taxonomy.PRODUCTS.items():
        for c in product.novel:
            assert taxonomy.reasons(c, scenario) == ["ANOMALY"]
            assert taxonomy.severity(c, scenario) == "critical"
        assert default_recipes()[scenario].rule("ANOMALY").severity.value == "critical"
