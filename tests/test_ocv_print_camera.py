"""A carton's printed text is read by a print camera over the variable-data box.

The whole-carton camera images the text about 11 px high: J against 0 or U, 8 against B in
the serial are then too alike to verify every good carton at the plant's bar (0.3 % false
rejects), and a broken character can still read as itself. A carton line reads its variable
data with a camera of its own; the simulator's `label_view` of a carton station is that camera
(2x closer). Real parts: the line simulator, the barcode tool's decode, the PP-OCR network on
ONNX Runtime, and the example station (`examples/ocv-cartons.yaml`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from test_ocv_label_camera import judge, station

from edge.config import SimulatorSource, load_config
from edge.inspect.barcode import BarcodeTool
from edge.inspect.base import Services
from edge.inspect.ocv import OcvTool
from edge.sim.twin import LineSimulator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ocv-cartons.yaml"


def cartons(view: int, defect: str | None = None, **kw) -> LineSimulator:
    return station("cartons", view, defect, kw.pop("seed", 37), code_defect_rate=0.0, **kw)


@pytest.fixture(scope="module")
def tools() -> tuple[BarcodeTool, OcvTool]:
    reader = BarcodeTool(
        "barcode", BarcodeTool.Params(symbologies=["DataMatrix"], check_serial=False), Services()
    )
    spec = next(t for t in load_config(EXAMPLE).active_recipe().tools if t.type == "ocv")
    return reader, OcvTool("ocv", OcvTool.Params.model_validate(spec.params), Services())


def test_the_print_camera_sees_the_same_code_and_text_twice_as_large():
    whole, close = cartons(0), cartons(1)
    for i in range(3):
        _, t0 = whole.render(i)
        img, t1 = close.render(i)
        assert img.shape == (480, 640, 3)
        assert t1["code"] == t0["code"] and t1["print"]["lines"] == t0["print"]["lines"]
        assert 1.8 < t1["code_bbox"][2] / t0["code_bbox"][2] < 2.2


def test_the_print_has_the_same_layout_in_code_sides_in_both_cameras():
    # the layout is the product's, in code sides: one recipe reads either camera; the text
    # ends before the print box's border, 2.65 code sides right of the code's left edge
    ends = []
    for sim in (cartons(0, "low_contrast"), cartons(1, "low_contrast")):
        for i in range(3):
            _, truth = sim.render(i)
            (x, _, w, _), (cx, _, cw, _) = truth["defects"][0]["bbox"], truth["code_bbox"]
            ends.append((x + w - cx) / cw)
    assert all(2.3 < e < 2.64 for e in ends), ends
    assert max(ends) - min(ends) < 0.15, ends


def test_the_whole_carton_view_shows_no_print_defect_only_to_the_print_camera():
    _, truth = cartons(1, "broken_char").render(0)
    assert truth["seen_in"] == [0, 1] and truth["defects"][0]["bbox"][2] > 0


def test_only_vials_and_cartons_have_a_label_camera():
    SimulatorSource(scenario="cartons", views=2, label_view=1)
    with pytest.raises(ValidationError, match="not one of the 2 views of vials or cartons"):
        SimulatorSource(scenario="blisters", views=2, label_view=1)
    with pytest.raises(ValidationError, match="not one of the 2 views"):
        SimulatorSource(scenario="cartons", views=2, label_view=2)


def test_good_cartons_pass_through_the_print_camera(tools):
    sim = cartons(1)
    for i in range(8):
        findings, truth = judge(sim, i, tools)
        assert truth["expected"] == "PASS"
        assert findings == [], (truth["print"]["lines"], [f.message for f in findings])


@pytest.mark.parametrize(
    "defect", ["broken_char", "missing_char", "wrong_lot_print", "wrong_expiry_print", "smear"]
)
def test_every_wrong_or_damaged_character_on_a_carton_is_rejected(tools, defect):
    # a broken character is a print defect: never a pass, whichever character it hit
    sim = cartons(1, defect, seed=41)
    for i in range(4):
        findings, truth = judge(sim, i, tools)
        assert truth["defects"][0]["class"] == defect
        codes = {f.code for f in findings}
        assert codes & {"OCV_MISMATCH", "PRINT_QUALITY"}, (truth["print"], codes)
        if defect in ("missing_char", "wrong_lot_print", "wrong_expiry_print"):
            assert "OCV_MISMATCH" in codes, truth["print"]


@pytest.mark.parametrize("runs", ["batch", "concat"])
def test_reading_an_items_lines_in_one_run_gives_the_same_verdicts(tools, runs):
    # one run per line is the default (cheapest on one thread, bench/ocv_speed.py); the
    # other two must verify alike, or their measurement would mean nothing
    reader, ocv = tools
    other = OcvTool("ocv", ocv.p.model_copy(update={"runs": runs}), Services())
    for sim, i in ((cartons(1), 0), (cartons(1), 1), (cartons(1, "wrong_lot_print"), 0)):
        a, truth = judge(sim, i, (reader, ocv))
        b, _ = judge(sim, i, (reader, other))
        assert [f.code for f in a] == [f.code for f in b], truth["print"]
        assert bool(a) == (truth["expected"] == "REJECT")


def test_the_example_carton_station_reads_the_text_with_its_print_camera():
    cfg = load_config(EXAMPLE)
    looks = {v.name: (v.look, v.tools) for v in cfg.views}
    assert looks["print"] == ("label", ["barcode", "ocv"])
    assert cfg.source.scenario == "cartons"


def test_a_thin_stub_left_of_a_broken_character_is_measured_as_a_glyph():
    # in the print camera a broken 7 leaves a thin slanted stub: a sixth of a glyph's ink,
    # half the line high; it is what is left of a character, not a speck of noise
    import numpy as np

    line = np.zeros((19, 120), bool)
    for x in range(0, 100, 18):
        line[0:19, x : x + 12] = True  # whole glyphs, about 200 px of ink each
    assert OcvTool._shortest_glyph(line) == 1.0
    line[10:19, 108:112] = True  # the stub: 36 px, 9 of 19 rows
    assert OcvTool._shortest_glyph(line) < 0.5
    line[10:19, 108:112] = False
    line[17:19, 108:111] = True  # a speck: 6 px, two rows
    assert OcvTool._shortest_glyph(line) == 1.0
