"""Novel defects in the simulator: kinds no model was trained on, with their ground truth.

A plant meets defects nobody labelled. The twin draws some (a fibre in the solution, a
dented cap, an ink stain, a stray printed mark) so the whole line can be measured on
them; turning them off must leave every existing run exactly as it was.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from edge.config import SimulatorSource
from edge.sim.twin import LineSimulator
from edge.taxonomy import NOVEL_DEFECTS, PRODUCTS

TODAY = dt.date(2026, 11, 27)
KINDS = [(s, k) for s, p in PRODUCTS.items() for k in p.novel]


def sim(scenario: str, **kw) -> LineSimulator:
    kw.setdefault("seed", 11)
    return LineSimulator(SimulatorSource(scenario=scenario, realtime=False, **kw), today=TODAY)


def only(kind: str) -> dict[str, float]:
    return {k: float(k == kind) for k in NOVEL_DEFECTS}


@pytest.mark.parametrize(("scenario", "kind"), KINDS)
def test_a_novel_defect_is_drawn_where_its_truth_says_and_nowhere_else(scenario, kind):
    novel = sim(scenario, defect_rate=0.0, novel_rate=1.0, defect_weights=only(kind))
    good = sim(scenario, defect_rate=0.0)
    for i in range(4):
        img, truth = novel.render(i)
        ref, ref_truth = good.render(i)
        assert ref_truth["defects"] == [] and ref_truth["expected"] == "PASS"
        assert truth["expected"] == "REJECT"
        assert truth["reasons"] == ["ANOMALY"]
        (d,) = truth["defects"]
        assert d["class"] == kind and d["severity"] == "critical"
        x, y, w, h = d["bbox"]
        assert w > 0 and h > 0
        diff = np.abs(img.astype(np.int16) - ref.astype(np.int16)).max(axis=2) > 12
        inside = np.zeros_like(diff)
        inside[max(0, y - 3) : y + h + 3, max(0, x - 3) : x + w + 3] = True
        assert diff[inside].sum() >= 8, (kind, i)  # visibly drawn in its box
        assert not diff[~inside].any(), (kind, i)  # the rest of the item is the good one
        assert truth["code"] == ref_truth["code"]  # the code and its data are untouched


@pytest.mark.parametrize("scenario", sorted(PRODUCTS))
def test_novel_defects_leave_every_other_item_exactly_as_without_them(scenario):
    kw = {"defect_rate": 0.3, "code_defect_rate": 0.1}
    if PRODUCTS[scenario].code_defects:
        kw["print_defect_rate"] = 0.1
    off, on = sim(scenario, **kw), sim(scenario, novel_rate=0.3, **kw)
    seen = 0
    for i in range(40):
        img0, t0 = off.render(i)
        img1, t1 = on.render(i)
        assert not {d["class"] for d in t0["defects"]} & set(NOVEL_DEFECTS)
        if any(d["class"] in NOVEL_DEFECTS for d in t1["defects"]):
            seen += 1
            assert t0["defects"] == []  # only items that were good become novel
            continue
        if "duplicate_of" in t0:
            # a duplicate repeats the serial of an earlier *good* item, and a novel item is
            # no longer good: the repeated serial may be another's, the defect is the same
            assert t0["defects"] == t1["defects"]
            continue
        assert t0 == t1
        assert np.array_equal(img0, img1)
    assert seen > 0 or not PRODUCTS[scenario].novel


def test_a_novel_class_can_be_weighted_and_an_unknown_one_is_still_an_error():
    assert sim("cartons", novel_rate=0.5, defect_weights={"foreign_mark": 2.0}).render(0)
    with pytest.raises(ValueError, match="unknown defect classes"):
        sim("vials", novel_rate=0.5, defect_weights={"hair": 1.0})


def test_the_export_labels_no_novel_defect_for_the_detector(tmp_path):
    from edge.sim.export import export

    cfg = SimulatorSource(scenario="vials", seed=2, realtime=False, defect_rate=0.0, novel_rate=1.0)
    summary = export(cfg, tmp_path, 6)
    assert sum(summary["defects"].values()) == 6
    assert set(summary["defects"]) <= set(NOVEL_DEFECTS)
    for label in (tmp_path / "labels").glob("*.txt"):
        # only the code's location: class index of `code`, the last detector class
        assert all(line.split()[0] == "9" for line in label.read_text().splitlines())
