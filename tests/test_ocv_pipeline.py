"""The shipped example recipe with `ocv` through the real pipeline: `edge sim`, `edge inspect`,
`edge eval` as a user runs them (the deadline raised only so that a loaded test machine
measures accuracy, not its own load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from edge.config import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ocv-cartons.yaml"


def edge(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    return out.stdout


def test_the_example_recipe_with_ocv_is_valid():
    cfg = load_config(EXAMPLE)
    tools = [t.type for t in cfg.active_recipe().tools]
    # the code places the printed block: barcode first (the exposure check is the
    # whole-carton camera's, the code and text the print camera's)
    assert tools == ["exposure", "barcode", "ocv"]
    assert cfg.active_recipe().rule("OCV_MISMATCH").severity.value == "critical"


def test_wrong_print_is_rejected_and_good_print_passes_through_the_pipeline(tmp_path):
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["pipeline"] = {"workers": 1, "deadline_ms": 5000}
    cfg["web"] = {"enabled": False}
    cfg["records"] = {"state_dir": str(tmp_path / "var")}
    conf = tmp_path / "ocv.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    data = tmp_path / "sim"
    edge(
        "sim", "--scenario", "cartons", "--items", "16", "--seed", "3", "--out", str(data),
        "--defect-rate", "0", "--print-defect-rate", "0.5", "--config", str(conf),
    )  # fmt: skip
    pred = tmp_path / "pred.jsonl"
    edge("inspect", "--config", str(conf), "--source", str(data), "--jsonl", str(pred))
    rep = json.loads(edge("eval", "--truth", str(data / "truth.jsonl"), "--pred", str(pred)))
    assert rep["expected_reject"] >= 4 and rep["expected_pass"] >= 4
    assert rep["escapes"] == 0 and rep["false_rejects"] == 0, rep
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    ocv = [f for r in rows for f in r["findings"] if f["tool"] == "ocv"]
    assert ocv and all("field" in f.get("detail", {}) or f["code"] == "OCV_NO_READ" for f in ocv)
