"""A vial's printed text is read by a label camera, close enough to tell its characters apart.

The whole-vial camera images the label's text about 8 px high: J, 0 and Q, or 6 and 8, are
then too alike for any reader. A real station reads code and text with a camera of its own
close to the label; the simulator's `label_view` is that camera. Real parts: the line
simulator, the barcode tool's decode, the PP-OCR network on ONNX Runtime, and the example
station config (`examples/ocv-vials.yaml`) through `edge sim`, `inspect` and `eval`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from test_ocv_pipeline import edge

from edge.config import SimulatorSource, load_config
from edge.domain import BatchState
from edge.inspect.barcode import BarcodeTool
from edge.inspect.base import Services, ToolContext
from edge.inspect.ocv import OcvTool
from edge.sim.twin import LineSimulator
from edge.taxonomy import PRINT_DEFECTS, product

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ocv-vials.yaml"
TODAY = dt.date(2026, 11, 27)


def station(scenario: str, view: int, defect: str | None, seed: int, **kw) -> LineSimulator:
    """View `view` of a two-camera station whose second camera is the close-up one; every
    item carries the print defect `defect` (None: good print)."""
    weights = {d: float(d == defect) for d in PRINT_DEFECTS}
    cfg = SimulatorSource(
        scenario=scenario,
        seed=seed,
        views=2,
        view=view,
        label_view=1,
        defect_rate=kw.pop("defect_rate", 0.0),
        print_defect_rate=1.0 if defect else 0.0,
        defect_weights=weights if defect else kw.pop("defect_weights", {}),
        realtime=False,
        **kw,
    )
    return LineSimulator(cfg, BatchState(id="B1"), today=TODAY)


def vials(view: int, defect: str | None = None, **kw) -> LineSimulator:
    return station("vials", view, defect, kw.pop("seed", 31), **kw)


def example_ocv() -> OcvTool:
    spec = next(t for t in load_config(EXAMPLE).active_recipe().tools if t.type == "ocv")
    return OcvTool("ocv", OcvTool.Params.model_validate(spec.params), Services())


@pytest.fixture(scope="module")
def tools() -> tuple[BarcodeTool, OcvTool]:
    reader = BarcodeTool(
        "barcode", BarcodeTool.Params(symbologies=["DataMatrix"], check_serial=False), Services()
    )
    return reader, example_ocv()


def judge(sim: LineSimulator, i: int, tools) -> tuple[list, dict]:
    reader, ocv = tools
    img, truth = sim.render(i)
    ctx = ToolContext(
        item_id=truth["id"], seq=i, deadline=time.monotonic() + 5, batch=sim.batch, now=0
    )
    reader.inspect(img, ctx)
    return ocv.run(img, ctx).findings, truth


def test_the_label_camera_sees_the_same_code_and_text_larger():
    front, label = vials(0), vials(1)
    for i in range(3):
        _, t0 = front.render(i)
        img, t1 = label.render(i)
        assert img.shape == (480, 640, 3)
        assert t1["code"] == t0["code"]  # one pack, one code, two cameras
        assert t1["print"]["lines"] == t0["print"]["lines"]
        # the symbol is LABEL_ZOOM (3) times as wide: its modules and the text with it
        assert 2.6 < t1["code_bbox"][2] / t0["code_bbox"][2] < 3.4


def test_only_what_is_on_the_label_shows_to_the_label_camera():
    only_cracks = {d: float(d == "crack") for d in product("vials").defects}
    sim = vials(1, defect_rate=1.0, defect_weights=only_cracks)
    for i in range(4):
        _, truth = sim.render(i)
        assert truth["defects"][0]["class"] == "crack"
        assert 1 not in truth["seen_in"] and "bbox" not in truth["defects"][0]
    _, truth = vials(1, "wrong_lot_print").render(0)
    assert truth["seen_in"] == [0, 1] and truth["defects"][0]["bbox"][2] > 0


def test_a_label_camera_is_one_of_the_views_and_only_vials_and_cartons_have_one():
    with pytest.raises(ValidationError, match="not one of the 2 views of vials"):
        SimulatorSource(scenario="vials", views=2, label_view=2)
    with pytest.raises(ValidationError, match="not one of the 2 views of vials"):
        SimulatorSource(scenario="blisters", views=2, label_view=1)


def test_good_vials_pass_through_the_label_camera(tools):
    sim = vials(1)
    for i in range(6):
        findings, truth = judge(sim, i, tools)
        assert truth["expected"] == "PASS"
        assert findings == [], (truth["print"]["lines"], [f.message for f in findings])


@pytest.mark.parametrize("defect", ["wrong_lot_print", "wrong_expiry_print", "missing_char"])
def test_wrong_text_on_a_vial_is_rejected_by_the_label_camera(tools, defect):
    sim = vials(1, defect)
    for i in range(3):
        findings, truth = judge(sim, i, tools)
        assert truth["defects"][0]["class"] == defect
        assert "OCV_MISMATCH" in {f.code for f in findings}, truth["print"]


def test_the_example_station_reads_the_vial_text_through_sim_inspect_and_eval(tmp_path):
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["pipeline"] = {"workers": 1, "deadline_ms": 5000}
    cfg["web"] = {"enabled": False}
    cfg["records"] = {"state_dir": str(tmp_path / "var")}
    conf = tmp_path / "ocv-vials.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    data = tmp_path / "sim"
    edge(
        "sim", "--scenario", "vials", "--items", "12", "--seed", "5", "--out", str(data),
        "--defect-rate", "0", "--print-defect-rate", "0.5", "--config", str(conf),
    )  # fmt: skip
    pred = tmp_path / "pred.jsonl"
    edge("inspect", "--config", str(conf), "--source", str(data), "--jsonl", str(pred))
    rep = json.loads(edge("eval", "--truth", str(data / "truth.jsonl"), "--pred", str(pred)))
    assert rep["expected_reject"] >= 3 and rep["expected_pass"] >= 3
    assert rep["escapes"] == 0 and rep["false_rejects"] == 0, rep


def test_an_inkjet_print_is_measured_by_its_glyphs_not_its_dots(tools):
    # in the label camera's sharp frame most characters' dots touch and one stands apart:
    # measured as glyphs, that dot is a broken character; a product printed in dots says so
    reader, _ = tools
    spec = next(t for t in load_config(EXAMPLE).active_recipe().tools if t.type == "ocv")
    inkjet = {**spec.params, "stretch": 1.4}
    as_solid = OcvTool("ocv", OcvTool.Params.model_validate(inkjet), Services())
    as_dots = OcvTool("ocv", OcvTool.Params.model_validate({**inkjet, "dots": True}), Services())
    good = vials(1, seed=73, print_font="dotmatrix")
    findings, _ = judge(good, 5, (reader, as_solid))
    assert {f.code for f in findings} == {"PRINT_QUALITY"}
    assert all("broken character" in f.message for f in findings)
    for i in (4, 5):
        findings, truth = judge(good, i, (reader, as_dots))
        assert truth["expected"] == "PASS" and findings == [], [f.message for f in findings]
    broken = vials(1, "broken_char", seed=73, print_font="dotmatrix")
    for i in range(3):  # joining the dots does not join a broken character back
        findings, _ = judge(broken, i, (reader, as_dots))
        assert findings, broken.render(i)[1]["print"]


def test_a_station_has_at_most_one_label_camera_and_not_as_its_first_view():
    from edge.config import ViewConfig
    from edge.line.views import check_views

    with pytest.raises(ValueError, match="close up at the label"):
        check_views([ViewConfig(name="a", look="label"), ViewConfig(name="b")], None)
    with pytest.raises(ValueError, match="close up at the label"):
        check_views([ViewConfig(name=n, look="label" if n != "a" else "side") for n in "abc"], None)
