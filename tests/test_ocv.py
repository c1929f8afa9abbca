"""The printed human-readable text must say what the code and the batch say (OCV).

Real parts throughout: frames from the line simulator, the barcode tool's real decode, the
PP-OCR recognition network that ships inside the rapidocr-onnxruntime wheel on ONNX
Runtime. A pack passes only when every configured field was found and verified; a
missing, unread, misprinted or poorly printed field rejects with its reason code.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from pydantic import ValidationError

from edge.config import SimulatorSource, ToolSpec
from edge.domain import BatchState, Finding
from edge.inspect.barcode import BarcodeTool
from edge.inspect.base import Services, ToolContext
from edge.inspect.ocr import PaddleRecognizer, ctc_support
from edge.inspect.ocv import OcvTool
from edge.inspect.ocv_fields import ExpectedCache, FieldSpec, format_date
from edge.inspect.registry import validate_tool_spec
from edge.sim.twin import LineSimulator
from edge.taxonomy import PRINT_DEFECTS

TODAY = dt.date(2026, 11, 27)
SERIAL = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CARTON_FIELDS = [
    {"field": "gtin", "prefix": "GTIN "},
    {"field": "expiry", "prefix": "EXP ", "format": "YYMMDD"},
    {"field": "lot", "prefix": "LOT "},
    {"field": "serial", "prefix": "SN ", "charset": SERIAL},
]
CARTON = {"fields": CARTON_FIELDS, "first_line": 0.1, "line_pitch": 0.25, "text_left": 1.11}


def carton_sim(defect: str | None = None, **kw) -> LineSimulator:
    weights = {d: float(d == defect) for d in PRINT_DEFECTS}
    cfg = SimulatorSource(
        scenario="cartons",
        seed=kw.pop("seed", 23),
        defect_rate=0.0,
        print_defect_rate=1.0 if defect else 0.0,
        defect_weights=weights if defect else {},
        realtime=False,
        **kw,
    )
    return LineSimulator(cfg, BatchState(id="B1"), today=TODAY)


@pytest.fixture(scope="module")
def reader() -> BarcodeTool:
    return BarcodeTool(
        "barcode", BarcodeTool.Params(symbologies=["DataMatrix"], check_serial=False), Services()
    )


@pytest.fixture(scope="module")
def ocv() -> OcvTool:
    return OcvTool("ocv", OcvTool.Params.model_validate(CARTON), Services())


def inspect(sim: LineSimulator, i: int, reader: BarcodeTool, ocv: OcvTool, image=None):
    img, truth = sim.render(i)
    ctx = ToolContext(
        item_id=truth["id"], seq=i, deadline=time.monotonic() + 5, batch=sim.batch, now=0
    )
    reader.inspect(img, ctx)
    return ocv.run(img if image is None else image(img, truth), ctx), truth


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "fmt, printed",
    [
        ("MM/YYYY", "12/2028"),
        ("YYYY-MM", "2028-12"),
        ("YYMMDD", "281231"),
        ("MMM YYYY", "DEC 2028"),
    ],
)
def test_the_expiry_prints_in_the_products_configured_format(fmt, printed):
    assert format_date("281231", fmt) == printed


def test_an_end_of_month_expiry_prints_its_last_day():
    assert format_date("280200", "YYMMDD") == "280229"  # DD = 00: the month's last day


def test_a_product_without_a_configured_date_format_is_refused_at_recipe_load():
    spec = ToolSpec(type="ocv", fields=[{"field": "expiry", "prefix": "EXP "}])
    with pytest.raises(ValueError, match="date format"):
        validate_tool_spec(spec)
    with pytest.raises(ValidationError, match="year"):
        OcvTool.Params(fields=[{"field": "expiry", "format": "DD/MM"}])
    with pytest.raises(ValidationError):
        OcvTool.Params(fields=[{"field": "batch_no"}])


def test_expected_lines_are_formatted_once_per_batch():
    cache = ExpectedCache()
    spec = FieldSpec("expiry", "EXP ", "MM/YYYY")
    assert cache.line(spec, "281231", ("G", "L1", "281231")) == "EXP 12/2028"
    assert len(cache._lines) == 1
    cache.line(spec, "281231", ("G", "L1", "281231"))
    assert len(cache._lines) == 1
    cache.line(spec, "281231", ("G", "L2", "281231"))  # another batch: cache starts over
    assert len(cache._lines) == 1 and cache._key == ("G", "L2", "281231")


# --------------------------------------------------------------------------- alignment


def test_a_character_the_network_did_not_see_gets_no_support():
    # steps over classes (blank, 'A', 'B'): the image shows A then B
    p = np.array([[0.1, 0.9, 0.0], [0.9, 0.05, 0.05], [0.1, 0.0, 0.9], [0.9, 0.05, 0.05]])
    assert min(ctc_support(p, [1, 2])) >= 0.9  # "AB" is there
    assert min(ctc_support(p, [2, 1])) < 0.06  # "BA" is not
    assert ctc_support(p, [1, 2, 1, 2, 1]) == [0.0] * 5  # more characters than steps allow


# --------------------------------------------------------------------------- the tool


def test_good_cartons_pass_every_field_verified(reader, ocv):
    sim = carton_sim()
    for i in range(6):
        res, truth = inspect(sim, i, reader, ocv)
        assert res.error is None
        assert res.findings == [], (truth["id"], [f.message for f in res.findings])


def test_the_last_character_of_a_line_is_read_too(reader, ocv):
    # a carton whose serial ends in J, blurred by the belt: the line is read with paper
    # beside it (`side_margin`); cut out tight at its ink, the network missed the final J
    sim = carton_sim(seed=61)
    res, truth = inspect(sim, 92, reader, ocv)
    assert truth["print"]["lines"][3].endswith("J") and truth["expected"] == "PASS"
    assert res.findings == [], [f.message for f in res.findings]
    tight = OcvTool("ocv", OcvTool.Params.model_validate({**CARTON, "side_margin": 0}), Services())
    res, _ = inspect(sim, 92, reader, tight)
    assert [f.detail["field"] for f in res.findings] == ["serial"]


def test_every_item_reports_its_print_contrast_height_and_weakest_character(reader, ocv):
    sim = carton_sim()
    res, _ = inspect(sim, 0, reader, ocv)
    assert set(res.measurements) == set(OcvTool.measures)
    assert 0.2 < res.measurements["print_contrast_min"] <= 1.0
    lo, hi = ocv.p.char_height
    assert lo <= res.measurements["char_height_min"] <= hi
    assert res.measurements["char_support_min"] >= ocv.p.min_support
    faded, _ = inspect(carton_sim("low_contrast"), 0, reader, ocv)
    assert faded.measurements["print_contrast_min"] < res.measurements["print_contrast_min"]


def test_the_simplified_recognition_network_computes_what_the_exported_one_does():
    # the folded affines and HardSwish are algebra, not an approximation: same probabilities
    exported = PaddleRecognizer(simplify=False)
    fast = PaddleRecognizer(simplify=True)
    assert len(fast.session.get_inputs()) == 1
    img, _ = carton_sim().render(0)
    rng = np.random.default_rng(1)
    for line in (img[100:130, 200:420, 1], rng.integers(0, 255, (30, 90), np.uint8)):
        a, b = exported.read_lines([line])[0], fast.read_lines([line])[0]
        assert a.probs.shape == b.probs.shape
        assert np.abs(a.probs - b.probs).max() < 1e-4
        assert a.text == b.text


def test_a_wrong_lot_printed_beside_a_correct_code_is_a_mismatch_on_the_lot(reader, ocv):
    sim = carton_sim("wrong_lot_print")
    res, truth = inspect(sim, 0, reader, ocv)
    assert truth["code"]["gs1"]["10"] == sim.batch.lot  # the code is right
    assert truth["reasons"] == ["OCV_MISMATCH"]
    (f,) = [f for f in res.findings if f.code == "OCV_MISMATCH"]
    d = f.detail
    assert d["field"] == "lot" and d["expected"] == f"LOT {sim.batch.lot}"
    assert d["read"] and d["differs"] and len(d["support"]) == len("LOT" + sim.batch.lot)
    last = len("LOT" + sim.batch.lot) - 1
    assert last in d["differs"]  # the changed last letter is the one marked
    assert f.bbox is not None and f.to_dict()["detail"]["field"] == "lot"


@pytest.mark.parametrize("defect", ["wrong_expiry_print", "missing_char"])
def test_wrong_text_never_passes(reader, ocv, defect):
    sim = carton_sim(defect)
    for i in range(3):
        res, truth = inspect(sim, i, reader, ocv)
        assert "OCV_MISMATCH" in codes(res.findings), (truth["id"], truth["print"])


def test_low_ink_and_shifted_print_reject(reader, ocv):
    for defect in ("low_contrast", "shifted_print"):
        res, truth = inspect(carton_sim(defect), 0, reader, ocv)
        assert codes(res.findings) & {"PRINT_QUALITY", "OCV_NO_READ"}, truth["id"]


def test_a_blank_block_is_no_read_not_a_pass(reader, ocv):
    def blank(img, truth):
        out = img.copy()
        x, y, w, h = truth["code_bbox"]
        out[y - 10 : y + h + 10, x + w + 5 : x + w + 200] = 230
        return out

    res, _ = inspect(carton_sim(), 0, reader, ocv, image=blank)
    assert codes(res.findings) == {"OCV_NO_READ"}


def test_without_a_decoded_code_the_block_cannot_be_placed_and_the_item_rejects(ocv):
    img, _ = carton_sim().render(0)
    ctx = ToolContext(item_id="x", seq=0, deadline=time.monotonic() + 5, batch=BatchState())
    res = ocv.run(img, ctx)  # no barcode tool ran: nothing shared
    assert codes(res.findings) == {"NO_READ"}


def test_a_recipe_region_places_the_block_when_the_code_is_unread(reader):
    sim = carton_sim()
    img, truth = sim.render(1)
    x, y, w, h = truth["code_bbox"]
    params = dict(CARTON, region=(x + w + 2, y - 12, int(1.6 * w), int(1.5 * h)))
    tool = OcvTool("ocv", OcvTool.Params.model_validate(params), Services())
    ctx = ToolContext(item_id="x", seq=0, deadline=time.monotonic() + 5, batch=sim.batch)
    res = tool.run(img, ctx)
    # GTIN, lot and expiry verified against the batch; the serial has nothing to be
    # verified against without the code: never a pass
    assert [f.detail["field"] for f in res.findings] == ["serial"]
    assert codes(res.findings) == {"NO_READ"}


def test_the_dot_matrix_font_prints_the_same_text_in_the_same_place():
    solid, t1 = carton_sim().render(0)
    dots, t2 = carton_sim(print_font="dotmatrix").render(0)
    assert t2["print"]["font"] == "dotmatrix" and t1["print"]["lines"] == t2["print"]["lines"]
    assert t1["code_bbox"] == t2["code_bbox"]
    diff = np.abs(solid.astype(int) - dots.astype(int)).max(axis=2) > 40
    ys, xs = np.nonzero(diff)
    x, y, w, h = t1["code_bbox"]
    assert xs.min() > x + w and ys.min() > y - 20 and ys.max() < y + h + 20  # only the text


def test_the_inkjet_font_is_a_5_by_7_dot_font_that_tells_its_characters_apart():
    from edge.sim.printing import _glyph

    chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ()/-.:"
    shapes = {c: _glyph(c) for c in chars}
    assert all(g.shape == (7, 5) and g.any() for g in shapes.values())
    assert len({g.tobytes() for g in shapes.values()}) == len(chars)  # no two alike
    assert not _glyph(" ").any()


def test_good_dot_matrix_cartons_pass(reader, ocv):
    sim = carton_sim(print_font="dotmatrix", seed=31)
    passed = 0
    for i in range(4):
        res, _ = inspect(sim, i, reader, ocv)
        passed += not res.findings
    assert passed >= 2  # inkjet print reads, if not yet at the line's false-reject limit


def test_print_defects_are_drawn_only_when_asked_and_say_what_was_printed():
    good = carton_sim().render(3)[1]
    assert good["print"]["lines"] == [
        f"GTIN {good['code']['gs1']['01']}",
        f"EXP {good['code']['gs1']['17']}",
        f"LOT {good['code']['gs1']['10']}",
        f"SN {good['code']['gs1']['21']}",
    ]
    bad = carton_sim("wrong_expiry_print").render(3)[1]
    assert bad["defects"][0]["class"] == "wrong_expiry_print"
    assert bad["defects"][0]["severity"] == "critical"
    assert bad["print"]["lines"][1] != f"EXP {bad['code']['gs1']['17']}"
    with pytest.raises(ValueError, match="unknown defect"):
        LineSimulator(SimulatorSource(scenario="cartons", defect_weights={"no_such_defect": 1.0}))


def test_the_finding_detail_is_part_of_the_published_result_schema():
    schema = json.loads(
        (Path(__file__).parents[1] / "edge/publish/schemas/result.v1.json").read_text()
    )
    f = Finding(tool="ocv", code="OCV_MISMATCH", detail={"field": "lot", "read": "LOT L1"})
    item_schema = schema["properties"]["findings"]["items"]
    jsonschema.validate(f.to_dict(), item_schema)
    assert f.to_dict()["detail"] == {"field": "lot", "read": "LOT L1"}
    assert "detail" not in Finding(tool="t", code="C").to_dict()


def test_a_recipe_naming_an_engine_that_is_not_installed_is_refused_at_load(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "rapidocr_onnxruntime" else real(name, *a),
    )
    spec = ToolSpec(type="ocv", fields=CARTON_FIELDS)
    with pytest.raises(ValueError, match="rapidocr-onnxruntime"):
        validate_tool_spec(spec)


def test_products_with_a_printed_code_rule_wrong_or_unread_text_critical():
    from edge.config import default_recipes

    recipes = default_recipes()
    for name in ("vials", "cartons"):  # ready for a recipe that adds the `ocv` tool
        rule = recipes[name].rule
        assert rule("OCV_MISMATCH").severity.value == "critical"
        assert rule("OCV_NO_READ").severity.value == "critical"  # unread is unverified
        assert rule("PRINT_QUALITY").severity.value == "major"
    assert "OCV_MISMATCH" not in recipes["blisters"].classes  # no printed code on blisters
