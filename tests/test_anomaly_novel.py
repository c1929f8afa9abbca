"""The shipped example anomaly model against the simulator's novel defects.

`models/vial-anomaly` was fitted on simulated good vials only (README, "Teach a new
product": through the whole line). It never saw a dented cap or an ink stain; it must
flag them and pass good vials, through the same model loading the line uses (approved,
files checked against the card).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edge.config import SimulatorSource
from edge.sim.twin import LineSimulator
from edge.taxonomy import NOVEL_DEFECTS

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def model():
    from edge.anomaly.model import AnomalyModel

    m = AnomalyModel(MODELS, "vial-anomaly", None, "int8", threads=1)
    yield m
    m.close()


def score(model, img) -> float:
    from edge.anomaly.model import crop

    model.check_image(img)
    return float(model.scorer.score(crop(img, model.spec.roi))[0])


def vials(seed: int, kind: str | None) -> LineSimulator:
    kw = {"novel_rate": 1.0, "defect_weights": {k: float(k == kind) for k in NOVEL_DEFECTS}}
    cfg = SimulatorSource(
        scenario="vials",
        seed=seed,
        realtime=False,
        defect_rate=0.0,
        code_defect_rate=0.0,
        **(kw if kind else {}),
    )
    return LineSimulator(cfg, today=dt.date(2026, 11, 27))


def test_the_shipped_vial_model_flags_defects_it_never_saw_and_passes_good_vials(model):
    t = model.spec.threshold
    good = vials(8, None)
    for i in range(3):
        img, truth = good.render(i)
        assert truth["expected"] == "PASS"
        assert score(model, img) < t, i
    for kind in ("dented_cap", "ink_stain"):
        sim = vials(7, kind)
        for i in range(2):
            img, truth = sim.render(i)
            assert truth["defects"][0]["class"] == kind
            assert score(model, img) > t, (kind, i)
