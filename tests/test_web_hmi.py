"""The operator's and technician's flows through the web API, on a real line and database."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from edge.web.server import create_app

import web_support as ws


@pytest.fixture
def line(tmp_path):
    appl = ws.appliance(tmp_path, imgs=ws.images(8))
    ws.add_users(appl)
    app = create_app(appl)  # before the line starts, as the appliance builds it
    appl.start()
    assert appl.pipeline.wait(20)
    yield appl, app
    app.state.ctx.hub.close()
    if app.state.ctx.jobs:
        app.state.ctx.jobs.close()
    appl.stop()


def client_as(app, user):
    c = TestClient(app)
    csrf = ws.login(c, user)
    c.headers["x-csrf-token"] = csrf
    return c


def test_the_hmi_shows_counters_yield_rejects_and_the_last_item(line):
    _appl, app = line
    c = client_as(app, "olga")
    s = c.get("/api/line/state").json()
    assert s["stats"]["items"] == 8 and s["stats"]["rejected"] == 4
    assert s["stats"]["by_reason"] == {"CRACK": 4} and s["stats"]["yield"] == 0.5
    assert [r["reasons"] for r in s["rejects"]] == [["CRACK"]] * 4
    assert s["last"]["seq"] == 8 and s["last"]["verdict"] == "REJECT"
    jpg = c.get(f"/api/line/frame/{s['last']['seq']}.jpg")
    assert jpg.status_code == 200 and jpg.content[:3] == b"\xff\xd8\xff"
    png = c.get(f"/images/{s['rejects'][0]['image']}.png")
    assert png.content.startswith(b"\x89PNG")
    page = c.get("/hmi").text
    assert 'id="btn-start"' in page and "/static/hmi.js" in page


def test_the_live_stream_sends_state_events(line):
    _appl, app = line
    c = client_as(app, "quinn")
    with c.stream("GET", "/api/line/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        data = None
        for ln in r.iter_lines():
            if ln.startswith("data: "):
                data = json.loads(ln[6:])
                break
        app.state.ctx.hub.close()
    assert data["stats"]["items"] == 8


def test_a_batch_start_with_a_bad_gtin_is_refused_with_the_reason(line):
    _appl, app = line
    c = client_as(app, "olga")
    r = c.post("/api/line/batch/start", json={"lot": "L1", "gtin": "09506000134353"})
    assert r.status_code == 422 and "check digit" in r.json()["detail"]
    r = c.post("/api/line/batch/start", json={"lot": "L 1"})
    assert r.status_code == 422 and "lot" in r.json()["detail"]


def test_batch_start_and_stop_are_audited_and_end_in_a_report(line):
    appl, app = line
    op = client_as(app, "olga")
    r = op.post(
        "/api/line/batch/start", json={"lot": "A123", "gtin": "09506000134352", "expiry": "271231"}
    )
    assert r.status_code == 200
    bid = r.json()["batch"]
    assert appl.pipeline.batch.lot == "A123"
    r = op.post("/api/line/batch/stop", json={"reason": "end of shift"})
    assert r.json()["report"] == f"/reports/{bid}"
    assert appl.pipeline.batch is None
    actions = [(e["action"], e["target"]) for e in app.state.ctx.audit.entries()]
    assert ("batch.start", bid) in actions and ("batch.stop", bid) in actions
    start = app.state.ctx.audit.entries(action="batch.start")[0]
    assert json.loads(start["new"])["gtin"] == "09506000134352" and start["user"] == "olga"

    html = op.get(f"/reports/{bid}").text
    assert "A123" in html and "batch.start" in html and "not signed" in html
    csv_text = op.get(f"/reports/{bid}/report.csv").text
    assert "batch,lot,A123" in csv_text and "audit,batch.stop" in csv_text

    qa = client_as(app, "quinn")
    r = qa.post(f"/api/reports/{bid}/sign", json={"password": "wrong", "reason": "reviewed"})
    assert r.status_code == 403
    r = qa.post(f"/api/reports/{bid}/sign", json={"password": "qa-secret-1", "reason": "reviewed"})
    assert r.status_code == 200 and r.json()["full_name"] == "Quinn Quality"
    rep = qa.get(f"/api/reports/{bid}").json()
    assert rep["signatures"][0]["meaning"].startswith("review")
    assert (
        op.post(
            f"/api/reports/{bid}/sign", json={"password": "op-secret-1", "reason": "x" * 5}
        ).status_code
        == 403
    )


def test_reports_count_rejects_by_reason_for_their_batch(tmp_path):
    appl = ws.appliance(tmp_path, imgs=ws.images(6))
    ws.add_users(appl)
    appl.pipeline.start_batch(
        __import__("edge.domain", fromlist=["BatchState"]).BatchState("LOTX", None, None),
        by="olga",
    )
    appl.start()
    assert appl.pipeline.wait(20)
    bid = appl.pipeline.stop_batch(by="olga")
    c = client_as(create_app(appl), "quinn")
    rep = c.get(f"/api/reports/{bid}").json()
    assert rep["counts"] == {
        "inspected": 6,
        "good": 3,
        "rejected": 3,
        "yield": 0.5,
        "mean_latency_ms": rep["counts"]["mean_latency_ms"],
    }
    assert rep["by_reason"] == [{"reason": "CRACK", "n": 3}]
    appl.stop()


def test_an_alarm_acknowledgement_is_audited_with_who_and_what(line):
    appl, app = line
    appl.pipeline.alarms.raise_("BIN_FULL", "reject bin full", "major")
    op = client_as(app, "olga")
    assert op.post("/api/line/alarms/NOPE/ack", json={}).status_code == 404
    r = op.post("/api/line/alarms/BIN_FULL/ack", json={"reason": "bin emptied"})
    assert r.status_code == 200 and r.json()["acked_by"] == "olga"
    e = app.state.ctx.audit.entries(action="alarm.ack")[0]
    assert (e["user"], e["target"], e["reason"]) == ("olga", "BIN_FULL", "bin emptied")
    assert json.loads(e["old"]) == {"acked_by": None}


def png_bytes(value=120, shape=(60, 80, 3)):
    return cv2.imencode(".png", np.full(shape, value, np.uint8))[1].tobytes()


def test_uploads_are_checked_by_content_capped_and_stored_under_their_hash(line):
    appl, app = line
    t = client_as(app, "tom")
    r = t.post("/api/tech/upload", files={"file": ("x.png", b"#!/bin/sh\nrm -rf /\n", "image/png")})
    assert r.status_code == 415
    r = t.post(
        "/api/tech/upload", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"0" * 50, "image/png")}
    )
    assert r.status_code == 415  # the right magic, but it does not decode
    big = b"\x89PNG\r\n\x1a\n" + os.urandom(10 * 1024 * 1024)
    assert (
        t.post("/api/tech/upload", files={"file": ("big.png", big, "image/png")}).status_code == 413
    )
    r = t.post("/api/tech/upload", files={"file": ("../../etc/passwd", png_bytes(), "image/png")})
    assert r.status_code == 200
    sha = r.json()["sha"]
    assert appl.pipeline.images.path_for(sha).is_file()
    assert not (appl.pipeline.images.root.parent / "etc").exists()
    assert not list(appl.pipeline.images.root.rglob("passwd"))


def test_labelled_images_become_a_frozen_dataset_version_with_a_manifest(line):
    _appl, app = line
    t = client_as(app, "tom")
    imgs = t.get("/api/tech/images", params={"verdict": "REJECT"}).json()
    assert imgs and all(i["verdict"] == "REJECT" for i in imgs)
    assert t.get("/api/tech/images", params={"reason": "CRACK"}).json()
    assert t.get("/api/tech/images", params={"date_from": "bad"}).status_code == 422
    shas = [i["image_sha256"] for i in imgs][:2]
    r = t.put(
        f"/api/tech/labels/{shas[0]}", json={"boxes": [{"cls": "nonsense", "bbox": [1, 1, 5, 5]}]}
    )
    assert r.status_code == 422
    r = t.put(
        f"/api/tech/labels/{shas[0]}",
        json={"boxes": [{"cls": "crack", "bbox": [10, 10, 20, 15]}], "reason": "crack seen"},
    )
    assert r.status_code == 200
    assert t.put(f"/api/tech/labels/{shas[1]}", json={"boxes": []}).status_code == 200
    assert t.get(f"/api/tech/labels/{shas[0]}").json()["boxes"][0]["cls"] == "crack"
    r = t.post("/api/tech/datasets", json={"note": "first"})
    assert r.status_code == 200, r.text
    ver = r.json()["version"]
    root = app.state.ctx.state_dir / "datasets" / ver
    from edge.train.dataset import verify_manifest

    assert verify_manifest(root) == []
    assert yaml.safe_load((root / "data.yaml").read_text())["names"][0] == "crack"
    labels = list((root / "labels").rglob("*.txt"))
    assert any(p.read_text().startswith("0 ") for p in labels)
    assert not os.access(root / "data.yaml", os.W_OK) or os.geteuid() == 0
    assert app.state.ctx.audit.entries(action="label.save")[0]["reason"] == "crack seen"
    assert app.state.ctx.audit.entries(action="dataset.build")[0]["target"] == ver


def make_candidate(models, name="defects", version="2", verified=True, status="candidate"):
    from edge.models import cards

    d = models / name / version
    d.mkdir(parents=True)
    (d / cards.FP32).write_bytes(b"fp32-" + version.encode())
    (d / cards.INT8).write_bytes(b"int8-" + version.encode())
    card = cards.ModelCard(
        name=name,
        version=version,
        status=status,
        classes=["crack"],
        files={f: cards.sha256_file(d / f) for f in (cards.FP32, cards.INT8)},
        verify={"passed": verified, "summary": "ok" if verified else "FAILED"},
    )
    cards.save_card(d, card)


def test_a_model_is_promoted_only_with_a_qa_signature_and_rolled_back_the_same_way(line):
    from edge.models.registry import ModelRegistry, model_roots

    appl, app = line
    models = appl.cfg.inference.models_dir
    make_candidate(models, version="1")
    make_candidate(models, version="2")
    reg = ModelRegistry(model_roots(appl.cfg.records.state_dir, models))  # what the web writes
    qa = client_as(app, "quinn")
    tech = client_as(app, "tom")
    body = {"password": "qa-secret-1", "reason": "validated on test set T1"}
    assert tech.post("/api/models/defects/1/approve", json=body).status_code == 403
    r = qa.post("/api/models/defects/1/approve", json={**body, "password": "nope"})
    assert r.status_code == 403 and reg.card("defects", "1").status == "candidate"
    r = qa.post("/api/models/defects/1/approve", json=body)
    assert r.status_code == 200, r.text
    assert reg.card("defects", "1").status == "approved"
    sig = reg.card("defects", "1").model_dump()["signatures"][0]
    assert sig["full_name"] == "Quinn Quality" and sig["meaning"].startswith("approval")
    assert qa.post("/api/models/defects/2/approve", json=body).status_code == 200
    assert reg.approved("defects").version == "2"
    r = qa.post("/api/models/defects/rollback", json={**body, "reason": "false rejects up"})
    assert r.status_code == 200 and r.json()["version"] == "1"
    acts = [e["action"] for e in app.state.ctx.audit.entries()]
    assert acts.count("esign") == 3 and "model.approve" in acts and "model.rollback" in acts
    assert app.state.ctx.audit.verify()[0]
    page = qa.get("/models").text
    assert "Quinn Quality" in page


def test_an_unverified_candidate_is_not_approved_even_with_a_signature(line):
    appl, app = line
    make_candidate(appl.cfg.inference.models_dir, version="3", verified=False)
    qa = client_as(app, "quinn")
    r = qa.post(
        "/api/models/defects/3/approve", json={"password": "qa-secret-1", "reason": "go ahead"}
    )
    assert r.status_code == 409 and "verify" in r.json()["detail"]


def test_qa_sees_the_threshold_a_candidate_runs_at_and_what_it_gave_on_validation(line):
    from edge.models import cards

    appl, app = line
    models = appl.cfg.inference.models_dir
    make_candidate(models, version="4")
    card = cards.load_card(models / "defects" / "4")
    card.operating_threshold = {
        "conf": 0.17,
        "rule": "lowest threshold flagging at most 5% of the validation good photos",
        "validation": {
            "defect_images": 6,
            "defect_images_found": 4,
            "good_images": 30,
            "good_images_flagged": 0,
        },
    }
    cards.save_card(models / "defects" / "4", card)
    html = client_as(app, "quinn").get("/models").text
    row = html[html.index('data-name="defects" data-version="4"') :].split("</tr>")[0]
    assert "runs at score &ge; 0.17, chosen on the validation photos" in row
    assert "4 of 6 defect photos found, 0 of 30 good photos flagged" in row


def test_a_job_runs_in_its_own_process_reports_failure_and_can_be_cancelled(line, tmp_path):
    from edge.web.jobs import Jobs

    jobs = Jobs(tmp_path / "jobs")
    jid = jobs.start(
        "evaluate",
        {
            "name": "defects",
            "candidate": "9",
            "test_dir": str(tmp_path),
            "models_dir": str(tmp_path / "none"),
        },
        by="tom",
    )
    for _ in range(300):
        if jobs.running() is None:
            break
        time.sleep(0.1)
    st = jobs.status(jid)
    assert st["state"] == "failed" and "ModelError" in st["error"]
    assert st["returncode"] == 1
    jid = jobs.start(
        "shadow",
        {
            "name": "x",
            "approved": "1",
            "candidate": "2",
            "models_dir": str(tmp_path),
            "state_dir": str(tmp_path),
        },
        by="tom",
    )
    assert jobs.running() == jid
    assert jobs.cancel(jid)
    assert jobs.status(jid)["state"] == "cancelled" and jobs.running() is None


def test_a_failed_candidate_is_discarded_by_the_technician_and_evaluation_refuses_bad_sets(line):
    """A failed job's version offers no approval or evaluation; the technician removes it
    (audited). An evaluation refuses, in plain words, a set the model was trained on and a
    set without one defect of its classes."""
    import json as _json

    from edge.models.registry import ModelRegistry, model_roots
    from edge.web.datasets import datasets_dir

    appl, app = line
    reg = ModelRegistry(model_roots(appl.cfg.records.state_dir, appl.cfg.inference.models_dir))
    src = appl.cfg.records.state_dir / "src.onnx"
    src.write_bytes(b"fp32")
    reg.create("capsules", "1", src, classes=["capsule_defect"], input_size=320, by="job")
    assert reg.path("capsules", "1").is_relative_to(appl.cfg.records.state_dir)
    reg.mark_failed("capsules", "1", "ValueError: Too many bins", by="job")
    tech, qa = client_as(app, "tom"), client_as(app, "quinn")
    r = qa.post(
        "/api/models/capsules/1/approve",
        json={"password": "qa-secret-1", "reason": "validated on T1"},
    )
    assert r.status_code == 409 and "failed" in r.json()["detail"]
    # the models page says it failed and why, offers the technician Discard, nothing else
    html = tech.get("/models").text
    row = html[html.index('data-name="capsules" data-version="1"') :].split("</tr>")[0]
    assert 'data-status="failed"' in row and "capsule_defect" in row
    assert "The job stopped: Too many bins" in row and "ValueError" not in row  # a sentence
    assert 'data-act="discard"' in row
    assert 'data-act="approve"' not in row and 'data-act="evaluate"' not in row
    assert 'data-act="discard"' not in qa.get("/models").text  # QA approves; it does not discard
    ds = datasets_dir(app.state.ctx)
    for name, label in (("ds-1", ""), ("ds-2", "0 0.5 0.5 0.1 0.1")):
        (ds / name / "images" / "val").mkdir(parents=True)
        (ds / name / "labels" / "val").mkdir(parents=True)
        (ds / name / "images" / "val" / "a.png").write_bytes(b"png")
        (ds / name / "labels" / "val" / "a.txt").write_text(label)
        (ds / name / "manifest.json").write_text(_json.dumps({"sha256": name}))
    body = {"name": "capsules", "candidate": "1", "test_set": "ds-2"}
    r = tech.post("/api/models/evaluate", json=body)
    assert r.status_code == 409 and "failed job" in r.json()["detail"]
    assert qa.post("/api/models/capsules/1/discard", json={}).status_code == 403
    r = tech.post("/api/models/capsules/1/discard", json={"reason": "calibration failed"})
    assert r.status_code == 200 and reg.versions("capsules") == []
    entry = app.state.ctx.audit.entries(action="model.discard")[0]
    assert entry["target"] == "model:capsules/1"
    reg.create(
        "capsules",
        "2",
        src,
        classes=["capsule_defect"],
        input_size=320,
        by="job",
        dataset={"version": "ds-2", "manifest_sha256": "ds-2"},
    )
    r = tech.post("/api/models/evaluate", json={**body, "candidate": "2"})
    assert r.status_code == 409 and "used to train" in r.json()["detail"]
    r = tech.post("/api/models/evaluate", json={**body, "candidate": "2", "test_set": "ds-1"})
    assert r.status_code == 409
    assert "no labelled defects of the model's classes (capsule_defect)" in r.json()["detail"]


def test_a_training_run_is_named_for_its_product_and_writes_under_the_state_directory(line):
    """The model name follows the product (recipe) unless the technician names it, so that
    approving one product's model never retires another's; the job's registry is the
    state directory first, the shipped folder read-only after it."""
    import json as _json

    from edge.web.datasets import datasets_dir

    appl, app = line
    tech = client_as(app, "tom")
    ds = datasets_dir(app.state.ctx) / "ds-1"
    ds.mkdir(parents=True)
    (ds / "manifest.json").write_text(_json.dumps({"sha256": "x"}))
    r = tech.post("/api/tech/train", json={"dataset": "ds-1", "product": "capsules"})
    assert r.status_code == 422 and "no product" in r.json()["detail"]
    r = tech.post("/api/tech/train", json={"dataset": "ds-1", "epochs": 1})
    assert r.status_code == 200, r.text
    jid = r.json()["job"]
    app.state.ctx.jobs.cancel(jid)
    args = _json.loads((app.state.ctx.jobs.root / jid / "job.json").read_text())["args"]
    assert args["product"] == "t" and args["model_name"] == "t"  # the test recipe's name
    state = appl.cfg.records.state_dir.resolve()
    assert args["models_dir"][0] == str(state / "models")
    assert args["models_dir"][1] == str(Path(appl.cfg.inference.models_dir).resolve())
