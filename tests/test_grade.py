"""Scan grade after ISO/IEC 15415/15416 parameters: good prints grade high, and each kind
of print fault lowers the parameter that measures it."""

from __future__ import annotations

import cv2
import numpy as np
import zxingcpp

from edge.inspect.grade import GradeTrend, letter, scan_grade


def read_and_grade(img: np.ndarray):
    (r,) = zxingcpp.read_barcodes(img)
    p = r.position
    corners = np.array(
        [[q.x, q.y] for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)], float
    )
    return scan_grade(img, corners, str(r.format), r.extra)


def dm(scale: int = 6) -> np.ndarray:
    code = zxingcpp.create_barcode(
        "(01)09504000059101(17)281231(10)L1(21)S1", zxingcpp.BarcodeFormat.DataMatrix, gs1=True
    )
    return np.pad(np.asarray(code.to_image(scale=scale)), 30, constant_values=255)


def test_a_clean_datamatrix_grades_a_on_every_parameter():
    g = read_and_grade(dm())
    assert set(g.params) == {"SC", "MOD", "FPD", "GN", "AN", "UEC"}
    assert g.overall == 4.0 and letter(g.overall) == "A"


def test_light_on_dark_and_rotated_prints_grade_like_the_original():
    assert read_and_grade(255 - dm()).overall == 4.0
    assert read_and_grade(cv2.rotate(dm(), cv2.ROTATE_90_CLOCKWISE)).overall == 4.0


def test_low_contrast_lowers_symbol_contrast():
    faint = (dm().astype(np.float32) * 0.3 + 120).astype(np.uint8)
    g = read_and_grade(faint)
    assert g.params["SC"][1] <= 1.0 and g.worst == "SC" and g.overall <= 1.0


def test_a_dimmer_lamp_does_not_lower_the_grade():
    dim = (dm().astype(np.float32) * 0.45).astype(np.uint8)  # the whole scene at 45% light
    assert read_and_grade(dim).overall == 4.0


def test_blur_lowers_modulation():
    g = read_and_grade(cv2.GaussianBlur(dm(), (0, 0), 2.5))
    assert g.params["MOD"][1] < 3.0 and g.params["SC"][1] >= 3.0


def test_stretched_print_fails_axial_nonuniformity():
    g = read_and_grade(cv2.resize(dm(), None, fx=1.3, fy=1.0))
    assert g.params["AN"][1] == 0.0 and g.overall == 0.0


def test_a_clean_qr_and_code128_grade_a():
    for fmt, scale in ((zxingcpp.BarcodeFormat.QRCode, 5), (zxingcpp.BarcodeFormat.Code128, 2)):
        sym = zxingcpp.create_barcode("(01)09504000059101(10)AB", fmt, gs1=True)
        img = np.pad(np.asarray(sym.to_image(scale=scale)), 30, constant_values=255)
        assert read_and_grade(img).overall == 4.0


def test_unknown_geometry_gives_no_grade_rather_than_a_guess():
    img = dm()
    assert scan_grade(img, np.zeros((3, 2)), "Data Matrix", {"Version": "22x22"}) is None
    corners = np.array([[30, 30], [100, 30], [100, 100], [30, 100]], float)
    assert scan_grade(img, corners, "Data Matrix", {}) is None


def test_the_trend_keeps_count_mean_and_minimum_in_bounded_memory():
    t = GradeTrend(window=5)
    for g in (4.0, 3.0, 2.0, 4.0, 4.0, 4.0, 4.0):
        t.add("B1", g)
    s = t.snapshot("B1")
    assert s["count"] == 7 and s["min"] == 2.0 and len(s["recent"]) == 5
    assert abs(s["mean"] - 25.0 / 7) < 1e-3
    assert t.snapshot("other") is None
