"""The shipped example anomaly models against the simulator's novel defects.

`models/vial-anomaly` and `models/carton-anomaly` were fitted on simulated good items only
(README, "Teach a new product": through the whole line). They never saw a dented cap, an
ink stain or a foreign mark; they must flag them and pass good items, through the same
model loading the line uses (approved, files checked against the card).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edge.config import SimulatorSource
from edge.sim.twin import LineSimulator
from edge.taxonomy import NOVEL_DEFECTS

MODELS = Path(__file__).resolve().parents[1] / "models"


def load(name: str):
    from edge.anomaly.model import AnomalyModel

    return AnomalyModel(MODELS, name, None, "int8", threads=1)


@pytest.fixture(scope="module")
def model():
    m = load("vial-anomaly")
    yield m
    m.close()


def score(model, img) -> float:
    from edge.anomaly.model import crop

    model.check_image(img)
    return float(model.scorer.score(crop(img, model.spec.roi))[0])


def items(scenario: str, seed: int, kind: str | None) -> LineSimulator:
    kw = {"novel_rate": 1.0, "defect_weights": {k: float(k == kind) for k in NOVEL_DEFECTS}}
    cfg = SimulatorSource(
        scenario=scenario,
        seed=seed,
        realtime=False,
        defect_rate=0.0,
        code_defect_rate=0.0,
        **(kw if kind else {}),
    )
    return LineSimulator(cfg, today=dt.date(2026, 11, 27))


def test_the_shipped_vial_model_flags_defects_it_never_saw_and_passes_good_vials(model):
    t = model.spec.threshold
    good = items("vials", 8, None)
    for i in range(3):
        img, truth = good.render(i)
        assert truth["expected"] == "PASS"
        assert score(model, img) < t, i
    for kind in ("dented_cap", "ink_stain"):
        sim = items("vials", 7, kind)
        for i in range(2):
            img, truth = sim.render(i)
            assert truth["defects"][0]["class"] == kind
            assert score(model, img) > t, (kind, i)


def test_the_shipped_carton_model_flags_a_foreign_mark_and_passes_good_cartons():
    model = load("carton-anomaly")
    try:
        t = model.spec.threshold
        good = items("cartons", 303, None)
        for i in range(3):
            assert score(model, good.render(i)[0]) < t, i
        marked = items("cartons", 302, "foreign_mark")
        for i in range(2):
            img, truth = marked.render(i)
            assert truth["defects"][0]["class"] == "foreign_mark"
            assert score(model, img) > t, i
    finally:
        model.close()
