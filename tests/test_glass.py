"""Glass tool: cracks, particles and scratches on simulated vials are rejected; good vials pass."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from edge.config import SimulatorSource
from edge.inspect.base import Services, ToolContext
from edge.inspect.glass import GlassTool
from edge.inspect.registry import tool_class
from edge.sim.twin import LineSimulator

CODES = {"crack": "CRACK", "particle": "PARTICLE", "scratch": "SCRATCH"}


def _ctx() -> ToolContext:
    return ToolContext(item_id="t", seq=0, deadline=time.monotonic() + 5)


@pytest.fixture(scope="module")
def tool() -> GlassTool:
    return GlassTool("glass", GlassTool.Params(), Services())


@pytest.fixture(scope="module")
def outcomes(tool) -> list[tuple[str, set[str]]]:
    """(defect class or 'good', codes reported) for 300 seeded vials with many glass defects."""
    weights = {"crack": 1.0, "particle": 1.0, "scratch": 1.0, "low_fill": 0.2}
    weights |= {"missing_cap": 0.0, "cap_tilt": 0.0}
    sim = LineSimulator(
        SimulatorSource(
            scenario="vials", seed=3, realtime=False, defect_rate=0.5, defect_weights=weights
        )
    )
    out = []
    for i in range(300):
        img, truth = sim.render(i)
        cls = truth["defects"][0]["class"] if truth["defects"] else "good"
        out.append((cls, {f.code for f in tool.inspect(img, _ctx()).findings}))
    return out


def test_registered_under_glass_key():
    assert tool_class("glass") is GlassTool


@pytest.mark.parametrize("cls", ["crack", "particle"])
def test_every_critical_glass_defect_is_caught_with_its_code(outcomes, cls):
    items = [codes for c, codes in outcomes if c == cls]
    assert len(items) >= 20
    assert all(CODES[cls] in codes for codes in items)


def test_scratches_are_caught(outcomes):
    items = [codes for c, codes in outcomes if c == "scratch"]
    assert len(items) >= 20
    assert sum("SCRATCH" in codes for codes in items) >= 0.9 * len(items)


def test_good_vials_pass(outcomes):
    good = [codes for c, codes in outcomes if c == "good"]
    assert len(good) >= 100
    assert Counter(bool(codes) for codes in good)[True] == 0


def test_low_fill_vials_give_no_glass_finding(outcomes):
    """The meniscus is lower, not a defect of the glass: no false glass reason."""
    items = [codes for c, codes in outcomes if c == "low_fill"]
    assert items and all(not codes for codes in items)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.uint8),
        np.full((480, 640, 3), 128, np.uint8),
        np.full((480, 640, 3), 255, np.uint8),
    ],
    ids=["black", "grey", "white"],
)
def test_blank_frame_is_never_a_silent_pass(tool, image):
    codes = {f.code for f in tool.inspect(image, _ctx()).findings}
    assert "NO_PRODUCT" in codes


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.float32),
        np.zeros((480, 640), np.uint8),
        np.zeros((0, 0, 3), np.uint8),
        None,
    ],
    ids=["float", "grey-2d", "empty", "none"],
)
def test_bad_input_reports_an_image_error(tool, image):
    codes = {f.code for f in tool.inspect(image, _ctx()).findings}
    assert codes == {"IMAGE_ERROR"}


def test_finding_has_a_box_on_the_defect(tool):
    sim = LineSimulator(
        SimulatorSource(
            scenario="vials",
            seed=5,
            realtime=False,
            defect_rate=1.0,
            defect_weights={
                "particle": 1.0,
                "crack": 0,
                "scratch": 0,
                "low_fill": 0,
                "missing_cap": 0,
                "cap_tilt": 0,
            },
        )
    )
    img, truth = sim.render(0)
    (f,) = [f for f in tool.inspect(img, _ctx()).findings if f.code == "PARTICLE"]
    tx, ty, tw, th = truth["defects"][0]["bbox"]
    x, y, w, h = f.bbox
    assert x < tx + tw and tx < x + w and y < ty + th and ty < y + h
    assert f.score is not None and f.score > 0
