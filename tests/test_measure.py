"""Classic tools: each catches its defect on seeded simulator items and passes good ones."""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import pytest

from edge.config import SimulatorSource, default_recipes
from edge.inspect.base import Services, ToolContext
from edge.inspect.measure import CapTool, FillLevelTool, LabelTool, PocketTool
from edge.inspect.registry import build_tools
from edge.sim.twin import LineSimulator
from edge.taxonomy import CODE_DEFECTS
from edge.taxonomy import DETECTOR_CLASSES as CLASSES

CTX = ToolContext(item_id="t", seq=1, deadline=time.monotonic() + 3600)


def tools_for(scenario: str):
    """The default recipe's classic tools (the detector has its own tests)."""
    recipe = default_recipes()[scenario]
    classic = [t for t in recipe.tools if t.type != "defects"]
    return build_tools(recipe.model_copy(update={"tools": classic}), Services())


@cache
def items(scenario: str, n: int, seed: int, drift: float = 0.0):
    only = {
        "vials": ["low_fill", "missing_cap", "cap_tilt", "missing_label"],
        "blisters": ["empty_pocket", "broken_tablet", "foreign_tablet"],
    }[scenario]
    weights = {c: (1.0 if c in only else 0.0) for c in CLASSES[:-1] + CODE_DEFECTS}
    cfg = SimulatorSource(
        scenario=scenario,
        seed=seed,
        defect_rate=0.4,
        code_defect_rate=0.1 if scenario == "vials" else 0,
        defect_weights=weights,
        drift_per_hour=drift,
        rate_per_min=600,
        realtime=False,
    )
    sim = LineSimulator(cfg)
    return [sim.render(i) for i in range(n)]


def codes(tools, img) -> set[str]:
    return {f.code for t in tools for f in t.inspect(img, CTX).findings}


CLASSIC_CODES = {
    "LOW_FILL",
    "MISSING_CAP",
    "CAP_TILT",
    "MISSING_LABEL",
    "EMPTY_POCKET",
    "BROKEN_TABLET",
    "FOREIGN_TABLET",
}


@pytest.mark.parametrize(
    ("scenario", "seed", "drift"),
    [("vials", 21, 0.0), ("blisters", 22, 0.0), ("vials", 23, 150.0), ("blisters", 24, 150.0)],
    ids=["vials", "blisters", "vials-dim-light", "blisters-dim-light"],
)
def test_each_tool_catches_its_defect_and_passes_good_items(scenario, seed, drift):
    tools = tools_for(scenario)
    run = items(scenario, 150, seed, drift)
    if drift:
        assert run[-1][1]["light"] < 0.7  # the lamp has aged visibly by the end of the run
    seen, missed, false = set(), [], []
    for img, truth in run:
        found = codes(tools, img)
        if truth["expected"] == "PASS":
            if found:
                false.append((truth["id"], found))
            continue
        want = truth["reasons"][0]
        if want in CLASSIC_CODES:
            seen.add(want)
            if want not in found:
                missed.append((truth["id"], want, found))
    assert not missed, missed
    assert not false, false
    assert len(seen) >= 3


def test_findings_point_at_the_defect():
    tools = tools_for("blisters")
    for img, truth in items("blisters", 150, 22):
        if truth["expected"] == "PASS":
            continue
        (x, y, w, h) = truth["defects"][0]["bbox"]
        fs = [f for t in tools for f in t.inspect(img, CTX).findings]
        assert len(fs) == 1
        fx, fy, fw, fh = fs[0].bbox
        ix = max(0, min(x + w, fx + fw) - max(x, fx))
        iy = max(0, min(y + h, fy + fh) - max(y, fy))
        assert ix * iy > 0.5 * w * h, (truth["id"], truth["defects"], fs[0])


def test_fill_level_and_tilt_report_their_measurement():
    fill = FillLevelTool("fill", FillLevelTool.Params(), Services())
    cap = CapTool("cap", CapTool.Params(), Services())
    for img, truth in items("vials", 150, 21):
        cls = truth["defects"][0]["class"] if truth["defects"] else None
        if cls == "low_fill":
            (f,) = fill.inspect(img, CTX).findings
            assert f.code == "LOW_FILL" and 20 < f.value < 30.5
        if cls == "cap_tilt":
            (f,) = cap.inspect(img, CTX).findings
            assert f.code == "CAP_TILT" and 5 < abs(f.value) < 20


def test_high_fill_is_reported_above_the_maximum():
    fill = FillLevelTool("fill", FillLevelTool.Params(min_level_mm=10, max_level_mm=25), Services())
    img = next(img for img, t in items("vials", 150, 21) if t["expected"] == "PASS")
    (f,) = fill.inspect(img, CTX).findings
    assert f.code == "HIGH_FILL" and f.value > 25


ALL_TOOLS = [
    FillLevelTool("fill", FillLevelTool.Params(), Services()),
    CapTool("cap", CapTool.Params(), Services()),
    LabelTool("label", LabelTool.Params(), Services()),
    PocketTool("pockets", PocketTool.Params(), Services()),
]


@pytest.mark.parametrize("tool", ALL_TOOLS, ids=lambda t: t.name)
@pytest.mark.parametrize(
    ("image", "want"),
    [
        (np.zeros((0, 0, 3), np.uint8), "IMAGE_ERROR"),
        (np.zeros((480, 640), np.uint8), "IMAGE_ERROR"),  # mono frame where BGR is expected
        (np.zeros((480, 640, 3), np.float32), "IMAGE_ERROR"),
        (np.zeros((480, 640, 3), np.uint16), "IMAGE_ERROR"),
        (None, "IMAGE_ERROR"),
        (np.full((480, 640, 3), 128, np.uint8), "NO_PRODUCT"),  # lens cap / empty belt
        (np.zeros((480, 640, 3), np.uint8), "NO_PRODUCT"),  # lamp off
    ],
    ids=["empty", "mono", "float", "uint16", "none", "grey", "black"],
)
def test_bad_input_is_a_finding_never_a_pass(tool, image, want):
    res = tool.inspect(image, CTX)
    assert [f.code for f in res.findings] == [want]


def test_the_wrong_product_is_not_passed():
    vial = items("vials", 150, 21)[0][0]
    blister = items("blisters", 150, 22)[0][0]
    assert codes(tools_for("blisters"), vial)
    assert codes(tools_for("vials"), blister)


def test_default_recipes_rule_every_code_their_tools_can_report():
    recipes = default_recipes()
    assert {"vials", "blisters", "cartons"} <= set(recipes)
    emitted = {
        "vials": {
            "LOW_FILL",
            "HIGH_FILL",
            "MISSING_CAP",
            "CAP_TILT",
            "MISSING_LABEL",
            "NO_PRODUCT",
            "IMAGE_ERROR",
            "CRACK",
            "PARTICLE",
            "SCRATCH",
        },
        "blisters": {
            "EMPTY_POCKET",
            "BROKEN_TABLET",
            "FOREIGN_TABLET",
            "NO_PRODUCT",
            "IMAGE_ERROR",
        },
    }
    for name, want in emitted.items():
        r = recipes[name]
        assert want <= set(r.classes), want - set(r.classes)
        assert all(rule.action.value == "reject" for rule in r.classes.values())
    v = recipes["vials"].classes
    assert v["SCRATCH"].severity.value == "minor" and v["CAP_TILT"].severity.value == "major"
    assert (
        v["LOW_FILL"].severity.value == "critical"
        and v["DUPLICATE_SERIAL"].severity.value == "critical"
    )
