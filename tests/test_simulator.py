"""The line simulator: deterministic, truthful, and shaped like a real serialised batch."""

from __future__ import annotations

import datetime as dt
import json
import threading

import numpy as np
import pytest
import yaml
import zxingcpp

from edge.capture.simulator import SimulatorCapture
from edge.config import SimulatorSource
from edge.domain import BatchState
from edge.sim import gs1data
from edge.sim.export import export
from edge.sim.twin import LineSimulator
from edge.taxonomy import CODE_DEFECTS
from edge.taxonomy import DETECTOR_CLASSES as CLASSES

TODAY = dt.date(2026, 11, 27)


def sim(scenario="vials", **kw) -> LineSimulator:
    kw.setdefault("seed", 5)
    kw.setdefault("realtime", False)
    return LineSimulator(SimulatorSource(scenario=scenario, **kw), today=TODAY)


def decode(img: np.ndarray) -> list:
    return zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.DataMatrix)


@pytest.mark.parametrize("scenario", ["vials", "blisters", "cartons"])
def test_same_seed_and_index_give_the_same_frame_in_any_order(scenario):
    a = sim(scenario, defect_rate=0.5, code_defect_rate=0.3, drift_per_hour=1.0)
    b = sim(scenario, defect_rate=0.5, code_defect_rate=0.3, drift_per_hour=1.0)
    later = [a.render(i) for i in (7, 3, 12)]
    for (img, truth), i in zip(later, (7, 3, 12), strict=True):
        img2, truth2 = b.render(i)
        assert np.array_equal(img, img2)
        assert truth == truth2
    other = sim(scenario, seed=6, defect_rate=0.5).render(3)[0]
    assert not np.array_equal(other, later[1][0])


def test_frames_have_the_configured_size_and_boxes_inside_them():
    s = sim("blisters", width=320, height=240, defect_rate=1.0)
    for i in range(5):
        img, truth = s.render(i)
        assert img.shape == (240, 320, 3) and img.dtype == np.uint8
        for x, y, w, h in [d["bbox"] for d in truth["defects"]] + [truth["code_bbox"]]:
            assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 240 and w > 0 and h > 0


def test_good_items_pass_and_their_code_decodes_to_the_truth_text():
    for scenario in ("vials", "blisters", "cartons"):
        s = sim(scenario, defect_rate=0.0)
        for i in range(8):
            img, truth = s.render(i)
            assert truth["expected"] == "PASS" and truth["reasons"] == [] and truth["defects"] == []
            reads = decode(img)
            assert len(reads) == 1, f"{scenario} item {i}: code not readable"
            r = reads[0]
            assert r.bytes.decode() == truth["code"]["text"]
            assert r.symbology_identifier == "]d2"  # a true GS1 DataMatrix
            # the decoded position lies inside the truth box
            x, y, w, h = truth["code_bbox"]
            cx = (r.position.top_left.x + r.position.bottom_right.x) / 2
            cy = (r.position.top_left.y + r.position.bottom_right.y) / 2
            assert x <= cx <= x + w and y <= cy <= y + h


def test_default_batch_looks_real():
    b = sim().batch
    assert gs1data.gtin_valid(b.gtin)
    assert b.lot.startswith("L") and len(b.lot) == 6
    exp = gs1data.parse_yymmdd(b.expiry)
    assert 700 < (exp - TODAY).days < 760


def test_a_given_batch_is_printed():
    s = LineSimulator(
        SimulatorSource(defect_rate=0),
        BatchState(lot="X99", gtin="09506000134352", expiry="301231"),
    )
    _, truth = s.render(0)
    assert truth["code"]["gs1"] == {
        "01": "09506000134352",
        "17": "301231",
        "10": "X99",
        "21": s.serial(0),
    }
    assert truth["code"]["text"] == "01095060001343521730123110X99\x1d21" + s.serial(0)


def code_items(scenario: str, n: int = 160) -> list[tuple[np.ndarray, dict]]:
    s = sim(scenario, defect_rate=0.0, code_defect_rate=0.6)
    return [s.render(i) for i in range(n)], s


@pytest.mark.parametrize("scenario", ["vials", "cartons"])
def test_code_defects_carry_the_data_and_reasons_they_claim(scenario):
    items, s = code_items(scenario)
    batch = s.batch
    by_class: dict[str, list] = {}
    for img, t in items:
        cls = t["defects"][0]["class"] if t["defects"] else "good"
        by_class.setdefault(cls, []).append((img, t))
    assert set(CODE_DEFECTS) <= set(by_class), (
        f"missing classes: {set(CODE_DEFECTS) - set(by_class)}"
    )
    for cls, group in by_class.items():
        for img, t in group:
            g = t["code"]["gs1"] if t["code"] else None
            if cls == "good":
                assert g == {"01": batch.gtin, "17": batch.expiry, "10": batch.lot, "21": g["21"]}
            elif cls == "wrong_gtin":
                assert gs1data.gtin_valid(g["01"]) and g["01"] != batch.gtin
                assert t["reasons"] == ["GTIN_MISMATCH"]
            elif cls == "bad_check_digit":
                assert not gs1data.gtin_valid(g["01"]) and g["01"][:13] == batch.gtin[:13]
                assert t["reasons"] == ["BAD_CHECK_DIGIT"]
            elif cls == "wrong_lot":
                assert g["10"] != batch.lot and t["reasons"] == ["LOT_MISMATCH"]
            elif cls == "expired":
                assert gs1data.parse_yymmdd(g["17"]) < TODAY
                assert t["reasons"] == ["EXPIRED", "EXPIRY_MISMATCH"]
            elif cls == "wrong_expiry":
                assert gs1data.parse_yymmdd(g["17"]) > TODAY and g["17"] != batch.expiry
                assert t["reasons"] == ["EXPIRY_MISMATCH"]
            elif cls == "damaged_code":
                assert t["code"]["readable"] is False and t["reasons"] == ["NO_READ"]
                assert decode(img) == [], "a damaged code must not be readable"
            elif cls == "missing_label":
                assert t["code"] is None and t["code_bbox"] is None and decode(img) == []
                assert t["reasons"] == (["MISSING_LABEL"] if scenario == "vials" else ["NO_READ"])
            if cls not in ("good", "damaged_code", "missing_label"):
                # whatever is wrong in the data, the symbol itself reads back as printed
                r = decode(img)
                assert r and r[0].bytes.decode() == t["code"]["text"]
            if cls != "good":
                assert t["expected"] == "REJECT"


def test_duplicate_serials_repeat_an_earlier_accepted_item():
    items, _ = code_items("vials", 200)
    truths = [t for _, t in items]
    serial_of = {t["index"]: t["code"]["gs1"]["21"] for t in truths if t["code"]}
    dups = [t for t in truths if t["defects"] and t["defects"][0]["class"] == "duplicate_serial"]
    assert dups
    for t in dups:
        j = int(t["duplicate_of"].rsplit("-", 1)[1])
        assert j <= t["index"] - 10
        assert truths[j]["expected"] == "PASS"
        assert serial_of[t["index"]] == serial_of[j]
    others = [serial_of[t["index"]] for t in truths if t not in dups and t["code"]]
    assert len(set(others)) == len(others), "serials are unique apart from planted duplicates"


def test_physical_defects_follow_rate_and_weights():
    s = sim("vials", defect_rate=1.0, defect_weights={"crack": 0, "scratch": 0, "particle": 0})
    classes = {s.render(i)[1]["defects"][0]["class"] for i in range(40)}
    assert classes == {"missing_cap", "cap_tilt", "low_fill"}
    s = sim("blisters", defect_rate=1.0)
    for i in range(10):
        t = s.render(i)[1]
        d = t["defects"][0]
        assert t["reasons"] == [d["class"].upper()] and d["severity"] == "critical"
    with pytest.raises(ValueError, match="unknown defect classes"):
        sim(defect_weights={"dent": 1.0})


def test_scratch_is_minor_but_still_rejects():
    s = sim("vials", defect_rate=1.0, defect_weights={c: 0 for c in CLASSES if c != "scratch"})
    t = s.render(0)[1]
    assert t["defects"][0]["severity"] == "minor" and t["expected"] == "REJECT"
    assert t["reasons"] == ["SCRATCH"]


def test_encoder_and_lighting_drift_follow_simulated_time():
    s = sim("cartons", rate_per_min=600, drift_per_hour=0.6)
    truths = [s.render(i)[1] for i in (0, 1, 2, 3000)]
    enc = [t["encoder"] for t in truths]
    pitch = s.cfg.encoder.pitch_mm * s.cfg.encoder.counts_per_mm
    assert enc[0] < enc[1] < enc[2] and abs(enc[2] - 2 * pitch) < 0.1 * pitch
    assert truths[3]["t"] == pytest.approx(300.0)  # 3000 items at 600/min
    assert truths[3]["light"] < 0.97 * truths[0]["light"]  # 5 min at 60 %/h: about -5 %
    img_late, _ = s.render(3000)
    img_early, _ = s.render(0)
    assert img_late.mean() < img_early.mean()


def test_export_writes_images_truth_yolo_labels_and_data_yaml(tmp_path):
    cfg = SimulatorSource(scenario="vials", seed=3, defect_rate=0.6, code_defect_rate=0.2)
    summary = export(cfg, tmp_path, 12)
    assert summary["items"] == 12
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert data["names"] == CLASSES and data["train"] == "images"
    batch = json.loads((tmp_path / "batch.json").read_text())
    assert gs1data.gtin_valid(batch["gtin"])
    truths = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert len(truths) == 12
    for t in truths:
        assert (tmp_path / t["image"]).is_file()
        lines = (tmp_path / "labels" / f"{t['id']}.txt").read_text().split("\n")[:-1]
        want = [(d["class"], d["bbox"]) for d in t["defects"] if d["class"] in CLASSES]
        if t["code_bbox"]:
            want.append(("code", t["code_bbox"]))
        assert len(lines) == len(want)
        for line, (cls, (x, y, w, h)) in zip(lines, want, strict=True):
            k, cx, cy, nw, nh = line.split()
            assert CLASSES[int(k)] == cls
            assert float(cx) * 640 == pytest.approx(x + w / 2, abs=0.01)
            assert float(cy) * 480 == pytest.approx(y + h / 2, abs=0.01)
            assert float(nw) * 640 == pytest.approx(w, abs=0.01)
            assert float(nh) * 480 == pytest.approx(h, abs=0.01)


def test_capture_yields_items_with_truth_and_stops():
    cap = SimulatorCapture(SimulatorSource(items=4, realtime=False, seed=2))
    frames = list(cap.frames())
    assert [f.name for f in frames] == [f"vials-2-{i:06d}" for i in range(4)]
    assert all(f.truth and f.image is not None and f.source == "simulator" for f in frames)
    assert [f.encoder for f in frames] == [f.truth["encoder"] for f in frames]
    ts = [f.t_trigger for f in frames]
    assert ts == sorted(ts)


def test_paced_capture_stops_promptly_while_waiting_for_the_next_trigger():
    cap = SimulatorCapture(SimulatorSource(rate_per_min=1, realtime=True))  # a frame a minute
    got = []

    def run():
        for f in cap.frames():
            got.append(f)

    th = threading.Thread(target=run)
    th.start()
    while not got and th.is_alive():
        th.join(0.01)
    cap.stop()
    th.join(10)
    assert not th.is_alive() and len(got) == 1


@pytest.mark.parametrize("scenario", ["vials", "blisters", "cartons"])
def test_a_long_lot_is_printed_as_a_square_code_that_reads(scenario):
    """A lot of 11 characters (GS1 allows 20): left to choose, the encoder would make most of
    these codes rectangles, which no label has room for; each is square and reads."""
    lot = "LOT-2026-11"
    s = LineSimulator(
        SimulatorSource(scenario=scenario, defect_rate=0.0, seed=5),
        BatchState(lot=lot, gtin="09506000134352", expiry="301231"),
        today=TODAY,
    )
    rect = 0
    for i in range(6):
        gs1 = {"01": "09506000134352", "17": "301231", "10": lot, "21": s.serial(i)}
        sym = zxingcpp.create_barcode(gs1data.hri(gs1), zxingcpp.BarcodeFormat.DataMatrix, gs1=True)
        rect += sym.to_image().shape[0] != sym.to_image().shape[1]
        img, truth = s.render(i)
        reads = decode(img)
        assert len(reads) == 1 and reads[0].bytes.decode() == truth["code"]["text"], i
        tl, br = reads[0].position.top_left, reads[0].position.bottom_right
        assert abs(abs(br.x - tl.x) - abs(br.y - tl.y)) <= 0.2 * abs(br.x - tl.x), i  # square
    assert rect >= 1  # the case this is about
