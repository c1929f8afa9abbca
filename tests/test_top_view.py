"""A camera above the vial, looking down on its cap: what the plant needs from the top view.

From above the cap shows whole: a missing cap (the stopper shows), a dent in the cap's top
(which no side camera sees) must reject the vial, and a good cap must not; the station's
`views:` selects it (`look: top`), `edge sim --views N --top-view` renders it, and `edge eval`
reports the recall of what only the top camera could see.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.config import ConfigError, SimulatorSource, load_config, parse_config
from edge.sim.twin import LineSimulator

ROOT = Path(__file__).resolve().parents[1]


def only(cls: str) -> dict[str, float]:
    """Defect weights that draw `cls` alone (a product or a novel defect of vials)."""
    from edge import taxonomy

    vials = taxonomy.product("vials")
    return {c: float(c == cls) for c in (*vials.defects, *vials.novel)}


def _top_sim(**kw) -> LineSimulator:
    return LineSimulator(SimulatorSource(views=4, view=3, top_view=True, seed=5, **kw))


def test_the_cap_check_from_above_finds_missing_and_dented_caps_and_passes_good_ones():
    from edge.inspect.cap_top import CapTopTool
    from edge.inspect.params.cap_top import CapTopParams

    tool = CapTopTool("cap_top", CapTopParams(), None)  # type: ignore[arg-type]
    cases = {
        "good": _top_sim(defect_rate=0.0),
        "missing_cap": _top_sim(defect_rate=1.0, defect_weights=only("missing_cap")),
        "dented_cap": _top_sim(defect_rate=0.0, novel_rate=1.0, defect_weights=only("dented_cap")),
        "cap_tilt": _top_sim(defect_rate=1.0, defect_weights=only("cap_tilt")),
    }
    want = {"good": [], "missing_cap": ["MISSING_CAP"], "dented_cap": ["ANOMALY"], "cap_tilt": []}
    for name, sim in cases.items():
        for i in range(12):
            image, truth = sim.render(i)
            drawn = truth["defects"][0]["class"] if truth["defects"] else "good"
            assert drawn == name
            codes = [f.code for f in tool.inspect(image, None).findings]  # type: ignore[arg-type]
            assert codes == want[name], (name, i)


def test_a_dent_in_the_cap_top_shows_only_from_above():
    sims = [
        LineSimulator(
            SimulatorSource(
                views=4,
                view=k,
                top_view=True,
                defect_rate=0.0,
                novel_rate=1.0,
                seed=3,
                defect_weights=only("dented_cap"),
            )
        )
        for k in range(4)
    ]
    for i in range(6):
        truths = [s.render(i)[1] for s in sims]
        assert truths[0]["seen_in"] == [3] and truths[0]["top_view"] == 3
        assert ["bbox" in t["defects"][0] for t in truths] == [False, False, False, True]
    # a missing cap shows from every camera, a low fill from the side ones only
    for cls, where in (("missing_cap", [0, 1, 2, 3]), ("low_fill", [0, 1, 2])):
        sim = LineSimulator(
            SimulatorSource(views=4, top_view=True, defect_rate=1.0, defect_weights=only(cls))
        )
        assert sim.render(0)[1]["seen_in"] == where


def test_the_top_view_is_chosen_in_views_and_a_wrong_one_is_a_clear_error():
    cfg = load_config(ROOT / "examples" / "vials-4views.yaml")
    assert [v.look for v in cfg.views] == ["side", "side", "side", "top"]
    data = cfg.model_dump(mode="json")
    data["views"] = [data["views"][3], *data["views"][:3]]
    with pytest.raises(ConfigError, match=r"look: top.*last view"):
        parse_config(data)
    with pytest.raises(ConfigError, match="top_view"):
        parse_config(
            {"source": {"type": "simulator", "scenario": "cartons", "views": 2, "top_view": True}}
        )


def test_sim_inspect_and_eval_with_the_top_camera(tmp_path):
    """`edge sim --views 4 --top-view`, `edge inspect` with the four-camera example, `edge eval`:
    every dented cap (only the top camera sees it) and every missing cap is rejected; no good
    vial is."""
    from typer.testing import CliRunner

    from edge.cli import app

    cfg = tmp_path / "four.yaml"
    weights = {**only("dented_cap"), "missing_cap": 1.0, "crack": 1.0}
    text = (ROOT / "examples" / "vials-4views.yaml").read_text()
    text = text.replace(
        "  code_defect_rate: 0.02\n",
        "  code_defect_rate: 0.0\n  defect_weights: " + json.dumps(weights) + "\n",
    )
    cfg.write_text(text.replace("defect_rate: 0.1", "defect_rate: 0.3"))
    data, pred = tmp_path / "sim", tmp_path / "pred.jsonl"
    r = CliRunner()
    args = ["sim", "--views", "4", "--top-view", "--items", "30", "--novel-rate", "0.3"]
    out = r.invoke(app, [*args, "--out", str(data), "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert (data / "views" / "3" / "truth.jsonl").is_file()
    out = r.invoke(
        app, ["inspect", "--source", str(data), "--jsonl", str(pred), "--config", str(cfg)]
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(app, ["eval", "--truth", str(data / "truth.jsonl"), "--pred", str(pred)])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["missing_predictions"] == 0
    assert report["false_rejects"] == 0
    top = report["per_view"]["3"]
    assert top["defects_only_here"] >= 3 and top["recall"] == 1.0
    for cls in ("dented_cap", "missing_cap"):
        assert report["per_class"][cls]["recall"] == 1.0, cls
    # the dents were found by the top camera
    truth = {t["id"]: t for t in map(json.loads, (data / "truth.jsonl").read_text().splitlines())}
    for p in map(json.loads, pred.read_text().splitlines()):
        if truth[p["id"]]["defects"] and truth[p["id"]]["defects"][0]["class"] == "dented_cap":
            assert any(f.get("view") == "top" and f["code"] == "ANOMALY" for f in p["findings"])
