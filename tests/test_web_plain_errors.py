"""Technicians and QA read errors as sentences and metrics as tables, never a Python
message or a raw dict: on a real line and database, through the web API and pages."""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from test_web_hmi import client_as, line  # noqa: F401  (the fixture)

from edge.web import errors
from edge.web.metrics_view import metric_tables

SHIPPED_CARD = Path(__file__).resolve().parents[1] / "models/defects/1.0.1/card.yaml"


def test_a_form_that_does_not_validate_says_which_field_and_what_it_must_be(line):  # noqa: F811
    _appl, app = line
    t = client_as(app, "tom")
    r = t.post("/api/tech/train", json={"dataset": "x", "epochs": 100000, "imgsz": 33, "batch": 2})
    assert r.status_code == 422
    msg = r.json()["detail"]
    assert isinstance(msg, str) and msg.startswith("Please check:")
    assert "epochs must be at most" in msg and "imgsz must be a multiple of 32" in msg
    assert "Input should" not in msg and "body" not in msg
    r = t.put("/api/tech/labels/" + "0" * 64, json={"boxes": "many"})
    assert r.status_code == 422 and "boxes must be a list" in r.json()["detail"]


def test_python_wrapping_is_taken_off_a_refusal():
    assert errors.plain("'capsules'") == "capsules was not found"
    assert errors.plain("ValueError: the dataset is empty") == "the dataset is empty"
    assert errors.plain("no batch is running") == "no batch is running"  # a sentence stays
    assert errors.plain(["a", "list"]) == ["a", "list"]


def test_a_failed_job_is_explained_where_the_cause_is_known():
    quant = "ValueError: Too many bins for data range. Cannot create 2048 finite-sized bins."
    assert errors.explain_failure(quant).startswith("Quantisation to INT8 failed")
    assert "finite-sized" not in errors.explain_failure(quant)
    other = "Traceback (most recent call last):\n  File x\nRuntimeError: the labels disagree"
    assert errors.explain_failure(other) == "The job stopped: the labels disagree"
    assert errors.explain_failure(None) is None


def test_an_unexpected_error_answers_a_sentence_and_is_logged_not_shown(line, caplog):  # noqa: F811
    _appl, app = line

    @app.get("/api/tech/boom")
    def boom() -> None:
        raise KeyError("internal_state_field")

    c = TestClient(app, raise_server_exceptions=False)
    r = c.get("/api/tech/boom")
    assert r.status_code == 500
    assert r.json()["detail"].startswith("The appliance could not complete this")
    assert "internal_state_field" not in r.text and "KeyError" not in r.text
    assert any("internal_state_field" in rec.getMessage() for rec in caplog.records)


def test_the_shipped_cards_metrics_are_a_table_per_test_set_with_a_row_per_class():
    metrics = yaml.safe_load(SHIPPED_CARD.read_text())["metrics"]
    tables = {t["title"].split(",")[0]: t for t in metric_tables(metrics)}
    vials = tables["simulator vials-2001"]
    assert vials["columns"] == ["class", "AP50 FP32", "AP50 INT8", "instances"]
    rows = {r[0]: r for r in vials["rows"]}
    ap = metrics["vials-2001"]
    assert rows["crack"] == [
        "crack",
        f"{ap['fp32']['ap50']['crack']:.3f}",
        f"{ap['int8']['ap50']['crack']:.3f}",
        str(ap["fp32"]["instances"]["crack"]),
    ]
    assert rows["all (mAP50)"][1] == f"{ap['fp32']['map50']:.3f}"
    other = metric_tables({"train_minutes": 12.5, "split": {"val_defect_images": 4}})
    assert other[0]["rows"] == [("train minutes", "12.500"), ("split · val defect images", "4")]
    assert metric_tables({}) == []


def test_the_models_page_shows_metrics_as_a_table_not_a_dict(line):  # noqa: F811
    from test_web_hmi import make_candidate

    appl, app = line
    models = appl.cfg.inference.models_dir
    make_candidate(models, version="1")
    card = Path(models) / "defects/1/card.yaml"
    data = yaml.safe_load(card.read_text())
    data["metrics"] = {"t1": {"fp32": {"ap50": {"crack": 0.875}, "map50": 0.875, "images": 20}}}
    card.write_text(yaml.safe_dump(data))
    page = client_as(app, "quinn").get("/models").text
    assert '<table class="metrics">' in page and "<td>0.875</td>" in page
    assert "{&#39;t1&#39;" not in page and "{'t1'" not in page


def test_a_page_opened_with_a_bad_filter_shows_the_sentence_not_json(line):  # noqa: F811
    _appl, app = line
    t = client_as(app, "tom")
    r = t.get("/tech/images", params={"min_score": "high"}, headers={"accept": "text/html"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "The score is a number" in r.text and '"detail"' not in r.text
    r = t.get("/tech/images", params={"date_from": "yesterday"}, headers={"accept": "text/html"})
    assert r.status_code == 422 and "dates are YYYY-MM-DD" in r.text
    api = t.get("/api/tech/images", params={"date_from": "yesterday"})
    assert api.json() == {"detail": "dates are YYYY-MM-DD"}
