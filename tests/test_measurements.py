"""Every tool reports what it measured on every item, pass or reject, so the process can be
watched before it makes rejects; a drifting filler, capper or printer shows in the numbers and
raises a deviation from `edge inspect`, with the drift's ground truth from `edge sim`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edge.cli import app
from edge.config import ProcessDrift, SimulatorSource, default_recipes
from edge.inspect.base import Services, ToolContext
from edge.inspect.registry import TOOLS, build_tools, tool_class
from edge.record import item_row
from edge.sim.drift import drift_at, parse_drift
from edge.sim.twin import LineSimulator


def cli(*args: str) -> None:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output


def _ctx(sim: LineSimulator) -> ToolContext:
    return ToolContext(
        item_id="t", seq=1, deadline=time.monotonic() + 3600, batch=sim.batch, now=time.time()
    )


def _classic_and_code_tools(scenario: str):
    recipe = default_recipes()[scenario]
    keep = [t for t in recipe.tools if t.type != "defects"]
    return build_tools(recipe.model_copy(update={"tools": keep}), Services())


def test_every_registered_tool_declares_units_for_what_it_measures():
    for key in TOOLS:
        cls = tool_class(key)
        assert all(isinstance(u, str) and u for u in cls.measures.values()), key


def test_vial_tools_measure_every_item_pass_or_reject():
    sim = LineSimulator(SimulatorSource(scenario="vials", seed=77, defect_rate=0.5, realtime=False))
    tools = _classic_and_code_tools("vials")
    rejected = measured_rejects = 0
    for i in range(24):
        img, truth = sim.render(i)
        results = [t.run(img, _ctx(sim)) for t in tools]
        for t, r in zip(tools, results, strict=True):
            assert set(r.measurements) <= set(t.measures), t.name
        names = {k for r in results for k in r.measurements}
        assert {"fill_level_mm", "cap_area_px", "label_coverage", "glass_residue_max"} <= names
        if truth["defects"]:
            rejected += 1
            measured_rejects += "fill_level_mm" in names
    assert rejected > 3 and measured_rejects == rejected


def test_measurements_are_kept_with_the_item_record_and_its_result_message():
    from edge.domain import Item, ToolResult

    item = Item(id="x", seq=1, t_trigger=0.0, deadline=1.0)
    item.results = [
        ToolResult("fill_level", "1", measurements={"fill_level_mm": 32.5}),
        ToolResult("cap", "1", measurements={"cap_tilt_deg": -0.4}),
        ToolResult("cap2", "1", measurements={"cap_tilt_deg": 0.1}),
    ]
    row = item_row(item, "st")
    assert row["measurements"] == {
        "fill_level_mm": 32.5,
        "cap.cap_tilt_deg": -0.4,
        "cap2.cap_tilt_deg": 0.1,
    }
    assert row["message"]["measurements"] == row["measurements"]


def test_a_filler_drift_lowers_the_measured_fill_level_as_the_truth_says():
    base = dict(scenario="vials", seed=5, defect_rate=0.0, realtime=False)
    tool = _classic_and_code_tools("vials")[0]
    assert tool.type_key == "fill_level"
    flat = LineSimulator(SimulatorSource(**base))
    drifting = LineSimulator(
        SimulatorSource(**base, process_drift=[ProcessDrift(name="fill_level", per_1000=-200)])
    )
    diffs = []
    for i in range(5, 15):
        a, _ = flat.render(i)
        b, truth = drifting.render(i)
        assert truth["drift"]["fill_level"] == pytest.approx(-0.2 * i)
        va = tool.run(a, _ctx(flat)).measurements["fill_level_mm"]
        vb = tool.run(b, _ctx(drifting)).measurements["fill_level_mm"]
        diffs.append((vb - va) / (-0.2 * i))
    assert 0.8 < float(np.median(diffs)) < 1.2  # the tool sees the drift in mm, within 20 %


def test_drift_arguments_are_parsed_or_refused_with_the_reason():
    d = parse_drift("cap_tilt:1.5:200")
    assert (d.name, d.per_1000, d.start) == ("cap_tilt", 1.5, 200)
    assert drift_at([d], 1200) == {"cap_tilt": pytest.approx(1.5)}
    assert drift_at([d], 100) == {"cap_tilt": 0.0}
    with pytest.raises(ValueError, match="NAME:PER_1000_ITEMS"):
        parse_drift("fill_level")
    with pytest.raises(ValueError):
        parse_drift("colour:1:0")


@pytest.mark.slow
def test_edge_inspect_writes_a_deviation_for_a_drifting_filler(tmp_path: Path):
    cfg = tmp_path / "cfg.yaml"
    recipe = default_recipes()["vials"].model_dump(mode="json", exclude_none=True)
    recipe["spc"]["reference_items"] = 120
    recipe["spc"]["min_reference"] = 60
    cfg.write_text(yaml.safe_dump({"recipes": {"vials": recipe}}))
    out = tmp_path / "sim"
    cli(
        "sim",
        "--scenario",
        "vials",
        "--items",
        "400",
        "--seed",
        "31",
        "--out",
        str(out),
        "--defect-rate",
        "0",
        "--code-defect-rate",
        "0",
        "--drift",
        "fill_level:-8:150",
        "--config",
        str(cfg),
    )
    cli(
        "inspect",
        "--source",
        str(out),
        "--jsonl",
        str(tmp_path / "p.jsonl"),
        "--deviations",
        str(tmp_path / "d.jsonl"),
        "--config",
        str(cfg),
    )
    devs = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    fill = [d for d in devs if d["measure"] == "fill_level_mm"]
    assert fill, devs
    d = fill[0]
    assert d["rule"] == "ewma" and d["value"] < d["limits"][0]
    assert 150 <= d["index"] < 400 and d["since_index"] <= d["index"]
    assert d["cause"].startswith("filler dosing") and d["id"]
    preds = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all("fill_level_mm" in p["measurements"] for p in preds if p["reasons"] != ["TIMEOUT"])


@pytest.mark.slow
def test_the_running_appliance_opens_a_deviation_record_when_the_filler_drifts(tmp_path: Path):
    """`edge demo` as shipped (web in its own process, simulated PLC), a filler drifting low:
    the deviation is recorded in the batch's database, and the line never rejected for it."""
    import sqlite3
    import subprocess
    import sys

    recipe = default_recipes()["vials"].model_dump(mode="json", exclude_none=True)
    recipe["spc"]["reference_items"] = 100
    recipe["spc"]["min_reference"] = 50
    cfg = tmp_path / "drift.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "source": {
                    "type": "simulator",
                    "scenario": "vials",
                    "defect_rate": 0.0,
                    "process_drift": [{"name": "fill_level", "per_1000": -8, "start": 120}],
                },
                "recipes": {"vials": recipe},
                "records": {"state_dir": str(tmp_path / "state")},
            }
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edge.cli import main; main()",
            "demo",
            "--config",
            str(cfg),
            "--items",
            "300",
            "--rate",  # the line's speed is not what this proves: a rate a loaded machine holds
            "400",
            "--headless",
            "--json",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["deviations"].get("fill_level_mm") == 1, summary
    assert "LOW_FILL" not in summary["by_reason"]  # inside spec: a deviation, not a reject
    db = sqlite3.connect(tmp_path / "state" / "edge.db")
    rows = db.execute("SELECT measure, rule, state, batch_id FROM deviations").fetchall()
    assert rows[0][:3] == ("fill_level_mm", "ewma", "open") and rows[0][3]
