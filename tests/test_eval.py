"""`edge eval`: the numbers QA reads before trusting a recipe or a model."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edge.cli import app
from edge.truth_eval import score_against_truth

T = [
    {"id": "a", "expected": "PASS", "reasons": [], "defects": []},
    {
        "id": "b",
        "expected": "REJECT",
        "reasons": ["CRACK"],
        "defects": [{"class": "crack", "severity": "critical"}],
    },
    {
        "id": "c",
        "expected": "REJECT",
        "reasons": ["LOW_FILL"],
        "defects": [{"class": "low_fill", "severity": "critical"}],
    },
    {
        "id": "d",
        "expected": "REJECT",
        "reasons": ["SCRATCH"],
        "defects": [{"class": "scratch", "severity": "minor"}],
    },
    {"id": "e", "expected": "PASS", "reasons": [], "defects": []},
]
P = [
    {"id": "a", "verdict": "PASS", "reasons": []},
    {"id": "b", "verdict": "PASS", "reasons": []},  # a critical escape
    {"id": "c", "verdict": "REJECT", "reasons": ["LOW_FILL"]},
    {"id": "d", "verdict": "REJECT", "reasons": ["CRACK"]},  # rejected, but for another reason
    {"id": "e", "verdict": "REJECT", "reasons": ["TIMEOUT"]},  # a false reject
]


def test_escapes_false_rejects_and_per_reason_figures():
    r = score_against_truth(T, P)
    assert r["items"] == 5
    assert r["escapes"] == 1 and r["escape_rate"] == round(1 / 3, 5)
    assert r["critical_items"] == 2 and r["critical_escapes"] == 1
    assert r["critical_escape_rate"] == 0.5
    assert r["false_rejects"] == 1 and r["false_reject_rate"] == 0.5
    assert r["per_reason"]["LOW_FILL"]["recall"] == 1.0
    assert r["per_reason"]["CRACK"]["recall"] == 0.0
    assert r["per_reason"]["CRACK"]["precision"] == 0.0
    assert r["per_reason"]["SCRATCH"]["recall"] == 0.0
    assert r["confusion"] == {"PASS": {"PASS": 1, "REJECT": 1}, "REJECT": {"PASS": 1, "REJECT": 2}}


def test_an_item_without_a_prediction_counts_against_us():
    r = score_against_truth(T, P[1:])
    assert r["missing_predictions"] == 1
    assert r["false_rejects"] == 2  # "a" expected PASS, got nothing


def test_eval_cli_prints_json(tmp_path):
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(t) + "\n" for t in T))
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in P))
    res = CliRunner().invoke(
        app, ["eval", "--truth", str(tmp_path / "t.jsonl"), "--pred", str(tmp_path / "p.jsonl")]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["critical_escapes"] == 1


def test_eval_cli_refuses_garbage(tmp_path):
    (tmp_path / "t.jsonl").write_text("not json\n")
    res = CliRunner().invoke(
        app, ["eval", "--truth", str(tmp_path / "t.jsonl"), "--pred", str(tmp_path / "t.jsonl")]
    )
    assert res.exit_code == 2 and "not JSON" in res.output


def test_recall_per_defect_class_counts_a_reject_for_any_reason():
    """A novel defect rejected as a PARTICLE still stopped the item: it counts as caught,
    and the report says which reason caught it."""
    truth = [
        *T,
        {
            "id": "f",
            "expected": "REJECT",
            "reasons": ["ANOMALY"],
            "defects": [{"class": "fibre", "severity": "critical"}],
        },
        {
            "id": "g",
            "expected": "REJECT",
            "reasons": ["ANOMALY"],
            "defects": [{"class": "fibre", "severity": "critical"}],
        },
    ]
    pred = [
        *P,
        {"id": "f", "verdict": "REJECT", "reasons": ["PARTICLE"]},
        {"id": "g", "verdict": "PASS", "reasons": []},
    ]
    r = score_against_truth(truth, pred)
    fibre = r["per_class"]["fibre"]
    assert (fibre["items"], fibre["rejected"], fibre["recall"]) == (2, 1, 0.5)
    assert fibre["rejected_by"] == {"PARTICLE": 1}
    assert fibre["escaped_ids"] == ["g"]
    assert r["per_class"]["scratch"]["recall"] == 1.0  # rejected, though as a crack
    assert r["per_class"]["crack"]["recall"] == 0.0
    assert r["per_reason"]["ANOMALY"]["recall"] == 0.0  # no tool said ANOMALY
