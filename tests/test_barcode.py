"""The barcode tool on real symbols: a pack passes only with a readable, valid GS1 code
that matches the batch, carries a fresh serial and scans at or above the minimum grade.

Symbols are written by zxing-cpp's own encoder (GS1 mode) and read back through the
tool's real decode path; nothing is mocked.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp

from edge.domain import BatchState, Detection, Finding
from edge.inspect.barcode import BarcodeTool, CodeReader
from edge.inspect.base import Services, ToolContext
from edge.inspect.grade import GradeTrend
from edge.store.serials import SerialRegistry

GTIN = "09504000059101"
BATCH = BatchState(lot="L123", gtin=GTIN, expiry="281231", id="B1")
NOW = time.mktime((2026, 11, 27, 12, 0, 0, 0, 0, -1))  # trigger wall clock


def hri(gtin=GTIN, expiry="281231", lot="L123", serial="S1") -> str:
    parts = [("01", gtin), ("17", expiry), ("10", lot), ("21", serial)]
    return "".join(f"({ai}){v}" for ai, v in parts if v is not None)


def symbol(content: str, fmt=zxingcpp.BarcodeFormat.DataMatrix, gs1=True, scale=4) -> np.ndarray:
    if gs1:
        code = zxingcpp.create_barcode(content, fmt, gs1=True)
    else:
        code = zxingcpp.create_barcode(content, fmt)
    return np.asarray(code.to_image(scale=scale))


def pack(sym: np.ndarray, size=(300, 400), at=(60, 90)) -> np.ndarray:
    """A carton face: light background, the code somewhere on it."""
    img = np.full(size, 235, np.uint8)
    y, x = at
    img[y : y + sym.shape[0], x : x + sym.shape[1]] = sym
    return img


def ctx(item="i1", batch=BATCH, now=NOW, budget_s=1.0, **earlier) -> ToolContext:
    return ToolContext(
        item_id=item,
        seq=1,
        deadline=time.monotonic() + budget_s,
        batch=batch,
        now=now,
        **earlier,
    )


def make_tool(services: Services | None = None, **params) -> BarcodeTool:
    return BarcodeTool("barcode", BarcodeTool.Params(**params), services or Services())


def codes_of(findings: list[Finding]) -> list[str]:
    return sorted(f.code for f in findings)


def test_a_good_pack_passes_with_its_code_recorded_as_the_decoder_gave_it():
    res = make_tool().inspect(pack(symbol(hri())), ctx())
    assert res.findings == []
    (code,) = res.codes
    assert code.symbology == "Data Matrix" and code.symbology_id == "]d2"
    assert code.text == "01" + GTIN + "1728123110L123\x1d21S1"  # GS kept, no leading FNC1
    assert code.gs1 == {"01": GTIN, "17": "281231", "10": "L123", "21": "S1"}
    assert code.rung == "fast" and code.grade is not None and code.grade >= 3.5
    assert code.bbox is not None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (hri(gtin="09504000059102"), "BAD_CHECK_DIGIT"),
        (hri(gtin="09504000059118"), "GTIN_MISMATCH"),
        (hri(lot="L124"), "LOT_MISMATCH"),
        (hri(expiry="281130"), "EXPIRY_MISMATCH"),
        (hri(serial=None), "MISSING_AI"),
        (hri(serial="S 1"), "SERIAL_INVALID"),
        ("(01)09504000059101(17)281331(10)L123(21)S1", "NOT_GS1"),  # month 13
    ],
)
def test_each_code_defect_rejects_with_its_own_reason(content: str, reason: str):
    res = make_tool().inspect(pack(symbol(content)), ctx())
    assert codes_of(res.findings) == [reason]


def test_a_symbol_without_fnc1_is_not_gs1():
    sym = symbol(f"01{GTIN}1728123110L123\x1d21S1", gs1=False)
    res = make_tool().inspect(pack(sym), ctx())
    assert codes_of(res.findings) == ["NOT_GS1"]
    assert res.codes[0].symbology_id == "]d1"


def test_a_pack_whose_expiry_has_passed_is_expired():
    batch = BatchState(lot="L123", gtin=GTIN, expiry="261031", id="B0")
    res = make_tool().inspect(pack(symbol(hri(expiry="261031"))), ctx(batch=batch))
    assert codes_of(res.findings) == ["EXPIRED"]


def test_expiry_day_00_lasts_to_the_end_of_the_month():
    batch = BatchState(lot="L123", gtin=GTIN, expiry="261100", id="B0")
    img = pack(symbol(hri(expiry="261100")))
    last_day = time.mktime((2026, 11, 30, 23, 0, 0, 0, 0, -1))
    next_day = time.mktime((2026, 12, 1, 1, 0, 0, 0, 0, -1))
    assert make_tool().inspect(img, ctx(batch=batch, now=last_day)).findings == []
    res = make_tool().inspect(img, ctx(batch=batch, now=next_day))
    assert codes_of(res.findings) == ["EXPIRED"]


def test_no_code_on_the_pack_is_no_read():
    res = make_tool().inspect(np.full((300, 400), 235, np.uint8), ctx())
    assert codes_of(res.findings) == ["NO_READ"]
    assert res.codes == []


def test_fewer_codes_than_the_recipe_expects_is_no_read():
    res = make_tool(expected_count=2).inspect(pack(symbol(hri())), ctx())
    assert codes_of(res.findings) == ["NO_READ"]


def test_without_a_batch_the_code_is_still_checked_for_validity():
    tool = make_tool()
    assert tool.inspect(pack(symbol(hri(lot="ANY"))), ctx(batch=None)).findings == []
    res = tool.inspect(pack(symbol(hri(gtin="09504000059102"))), ctx(batch=None))
    assert codes_of(res.findings) == ["BAD_CHECK_DIGIT"]


def test_a_serial_seen_before_is_a_duplicate_naming_the_first_item(tmp_path: Path):
    with SerialRegistry(tmp_path / "serials.db") as reg:
        tool = make_tool(Services(serials=reg))
        img = pack(symbol(hri(serial="X9")))
        assert tool.inspect(img, ctx(item="first")).findings == []
        res = tool.inspect(img, ctx(item="second"))
        assert codes_of(res.findings) == ["DUPLICATE_SERIAL"]
        assert "first" in res.findings[0].message
        # the same item inspected twice is not its own duplicate
        assert tool.inspect(img, ctx(item="first")).findings == []


def test_a_bad_code_does_not_claim_its_serial(tmp_path: Path):
    with SerialRegistry(tmp_path / "serials.db") as reg:
        tool = make_tool(Services(serials=reg))
        tool.inspect(pack(symbol(hri(lot="WRONG", serial="Z1"))), ctx(item="bad"))
        assert reg.holder(GTIN, "Z1") is None
        assert tool.inspect(pack(symbol(hri(serial="Z1"))), ctx(item="good")).findings == []


def test_a_faint_print_is_read_by_the_retry_ladder_and_rejected_for_low_grade():
    sym = symbol(hri(), scale=4).astype(np.float32)
    faint = np.pad((sym * 0.08 + 100).astype(np.uint8), 30, constant_values=108)
    res = make_tool().inspect(faint, ctx())
    (code,) = res.codes
    assert code.rung not in ("", "fast")
    assert code.gs1 and code.gs1["21"] == "S1"
    assert codes_of(res.findings) == ["LOW_GRADE"]
    assert "SC" in res.findings[0].message
    # the same print with the ladder off is not read at all
    res = make_tool(retry_ladder=False).inspect(faint, ctx())
    assert codes_of(res.findings) == ["NO_READ"]


def test_min_grade_zero_accepts_the_faint_print():
    sym = symbol(hri(), scale=4).astype(np.float32)
    faint = np.pad((sym * 0.08 + 100).astype(np.uint8), 30, constant_values=108)
    assert make_tool(min_grade=0).inspect(faint, ctx()).findings == []


class RecordingReader(CodeReader):
    """The real reader, noting which ladder rungs it ran."""

    def __init__(self):
        super().__init__()
        self.ran: list[str] = []

    def _rung(self, name, img, off):
        self.ran.append(name)
        return super()._rung(name, img, off)


def test_the_ladder_runs_only_while_the_deadline_leaves_time():
    blank = np.full((240, 320), 235, np.uint8)
    reader = RecordingReader()
    assert reader.read(blank, deadline=time.monotonic() - 0.001) == []
    assert reader.ran == []  # too late: the fast pass only
    reader.read(blank, deadline=time.monotonic() + 5.0)
    assert reader.ran == list(reader.rungs) and "zbar" in reader.ran


def test_a_fast_read_skips_the_ladder():
    reader = RecordingReader()
    found = reader.read(pack(symbol(hri())), deadline=time.monotonic() + 5.0)
    assert len(found) == 1 and reader.ran == []


def test_inverted_and_rotated_codes_are_read():
    img = pack(symbol(hri()))
    for variant in (255 - img, cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)):
        res = make_tool().inspect(variant, ctx())
        assert res.findings == [] and res.codes[0].gs1["21"] == "S1"


def test_gs1_128_and_gs1_qr_keep_their_symbology_identifiers():
    content = "(01)09504000059101(10)L123"
    tool = make_tool(required_ais=["01", "10"])
    c128 = pack(symbol(content, zxingcpp.BarcodeFormat.Code128, scale=2), (300, 600), (80, 20))
    qr = pack(symbol(content, zxingcpp.BarcodeFormat.QRCode))
    for img, sid in ((c128, "]C1"), (qr, "]Q3")):
        res = tool.inspect(img, ctx())
        assert res.codes[0].symbology_id == sid
        assert res.codes[0].gs1 == {"01": GTIN, "10": "L123"}
        assert res.findings == []


def test_an_ean13_gives_its_gtin_and_lacks_the_serialisation_ais():
    ean = pack(symbol("9504000059101", zxingcpp.BarcodeFormat.EAN13, gs1=False, scale=2))
    res = make_tool(min_grade=0).inspect(ean, ctx())
    assert res.codes[0].gs1 == {"01": GTIN}
    assert codes_of(res.findings) == ["MISSING_AI"]
    assert make_tool(min_grade=0, required_ais=["01"]).inspect(ean, ctx()).findings == []


def test_code_boxes_from_the_defect_model_are_read_first():
    img = np.full((900, 1200), 235, np.uint8)
    sym = symbol(hri(), scale=3)
    img[700 : 700 + sym.shape[0], 1000 : 1000 + sym.shape[1]] = sym
    box = [1000, 700, sym.shape[1], sym.shape[0]]
    dets = [  # the detector's boxes, typed (a malformed box cannot reach a later tool)
        Detection("crack", 0.9, (10, 10, 50, 50)),
        Detection("code", 0.8, tuple(box)),
    ]
    tool = make_tool()
    c = ctx(detections=dets)
    regions = tool._regions(img.shape, c)
    assert len(regions) == 2 and regions[1] == (0, 0, 1200, 900)  # the crop, then the frame
    cx, cy, cw, ch = regions[0]
    assert cx < 1000 < cx + cw and cy < 700 < cy + ch and cw * ch < 1200 * 900 // 20
    res = tool.inspect(img, c)
    assert res.findings == []
    x, y, _, _ = res.codes[0].bbox
    assert 1000 <= x <= 1010 and 700 <= y <= 710  # in full-image coordinates
    # and without the model the whole image is searched
    assert make_tool().inspect(img, ctx()).findings == []


def test_the_roi_limits_where_codes_are_searched():
    img = pack(symbol(hri()), at=(60, 90))
    assert make_tool(roi=(0, 0, 80, 300)).inspect(img, ctx()).findings[0].code == "NO_READ"
    assert make_tool(roi=(60, 30, 200, 200)).inspect(img, ctx()).findings == []
    res = make_tool(roi=(1000, 1000, 10, 10)).inspect(img, ctx())
    assert codes_of(res.findings) == ["IMAGE_ERROR"]


@pytest.mark.parametrize(
    "frame",
    [
        None,
        np.zeros((0, 10), np.uint8),
        np.zeros((50, 50), np.float32),
        np.zeros((50, 50, 2), np.uint8),
        np.zeros((5,), np.uint8),
        "not an image",
    ],
)
def test_a_malformed_frame_is_an_image_error_not_a_crash(frame):
    assert codes_of(make_tool().inspect(frame, ctx()).findings) == ["IMAGE_ERROR"]


def test_a_frame_larger_than_allowed_is_an_image_error():
    res = make_tool(max_pixels=100_000).inspect(np.zeros((400, 400), np.uint8), ctx())
    assert codes_of(res.findings) == ["IMAGE_ERROR"]
    huge = np.zeros((6000, 8000), np.uint8)  # 48 MP: refused before any decoding
    assert codes_of(make_tool().inspect(huge, ctx()).findings) == ["IMAGE_ERROR"]


def test_colour_and_16_bit_frames_are_read():
    img = pack(symbol(hri()))
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    assert make_tool().inspect(bgr, ctx()).findings == []
    assert make_tool().inspect(img.astype(np.uint16) * 257, ctx()).findings == []


def test_recipe_params_are_validated():
    with pytest.raises(ValueError, match="symbology"):
        BarcodeTool.Params(symbologies=["NoSuchCode"])
    with pytest.raises(ValueError, match="rung"):
        BarcodeTool.Params(rungs=["magic"])
    with pytest.raises(ValueError, match="application identifier"):
        BarcodeTool.Params(required_ais=["01", "7"])
    with pytest.raises(ValueError):
        BarcodeTool.Params(min_grade=5)


def test_grades_are_kept_per_batch_for_the_trend():
    trend = GradeTrend()
    tool = make_tool(Services(grade_trend=trend))
    for i in range(3):
        tool.inspect(pack(symbol(hri(serial=f"T{i}"))), ctx(item=f"t{i}"))
    snap = trend.snapshot("B1")
    assert snap["count"] == 3 and snap["min"] >= 3.5


def test_each_code_read_is_shared_with_later_tools_with_its_content_and_corners():
    """The printed-text check (ocv) locates the human-readable block from these."""
    c = ctx()
    res = make_tool().inspect(pack(symbol(hri(serial="A1")), at=(60, 90)), c)
    assert res.findings == []
    (shared,) = c.codes
    assert shared.gs1["21"] == "A1"
    corners = np.asarray(shared.corners)
    assert corners.shape == (4, 2)
    x0, y0 = corners.min(axis=0)
    assert abs(x0 - 90) <= 4 and abs(y0 - 60) <= 4  # top-left of the symbol as placed
