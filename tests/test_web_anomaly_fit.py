"""Teach a product from good images in the web UI: pick, fit as a job, read the scores, approve.

A real appliance and database, real uploads, the fit in its own low-priority process (the
teaching side: torch), QA's approval with an e-signature. The model is small (a 320x256
input, a small memory) so the job takes a minute: the requirements are about the flow,
the refusals and what the page shows, not about accuracy (bench/anomaly.py).
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from edge.config import SimulatorSource
from edge.models.registry import ModelRegistry, model_roots
from edge.sim.twin import LineSimulator
from edge.web.server import create_app

import web_support as ws

pytest.importorskip("efficientnet_lite_pytorch")


def vials(n: int, seed: int = 21) -> list[np.ndarray]:
    sim = LineSimulator(SimulatorSource(scenario="vials", seed=seed, realtime=False, defect_rate=0))
    return [sim.render(i)[0] for i in range(n)]


def stained(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    cv2.circle(out, (320, 240), 45, (20, 20, 120), -1)
    return out


def png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


@pytest.fixture
def web(tmp_path):
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    app = create_app(appl)
    appl.start()
    yield appl, app
    app.state.ctx.hub.close()
    if app.state.ctx.jobs:
        app.state.ctx.jobs.close()
    appl.stop()


def client_as(app, user):
    c = TestClient(app)
    c.headers["x-csrf-token"] = ws.login(c, user)
    return c


def upload(c, images: list[np.ndarray], product: str) -> list[str]:
    files = [("files", (f"v{i:02d}.png", png(img), "image/png")) for i, img in enumerate(images)]
    r = c.post("/api/tech/uploads", files=files, data={"product": product})
    assert r.status_code == 200, r.text
    return [s["sha"] for s in r.json()["stored"]]


def test_a_pick_the_fit_cannot_use_is_refused_at_once_in_plain_words(web):
    _appl, app = web
    tech = client_as(app, "tom")
    shas = upload(tech, vials(15), "vials")
    small = upload(tech, [cv2.resize(vials(1, seed=5)[0], (320, 240))], "vials")
    body = {"name": "vial-anomaly", "input": "320x256", "memory": 300}
    r = tech.post("/api/tech/anomaly/fit", json={**body, "images": shas[:8]})
    assert r.status_code == 422 and "at least" in r.json()["detail"]
    r = tech.post("/api/tech/anomaly/fit", json={**body, "images": shas + small})
    assert r.status_code == 422 and "mixed sizes" in r.json()["detail"]
    r = tech.post("/api/tech/anomaly/fit", json={**body, "images": shas, "roi": [600, 0, 100, 100]})
    assert r.status_code == 422 and "outside" in r.json()["detail"]
    r = tech.post("/api/tech/anomaly/fit", json={**body, "product": "vials"})
    assert r.status_code == 422 and "No good images" in r.json()["detail"]  # none marked good
    assert client_as(app, "quinn").post("/api/tech/anomaly/fit", json=body).status_code == 403
    assert app.state.ctx.jobs is None or app.state.ctx.jobs.running() is None


def test_good_images_teach_a_candidate_whose_scores_are_shown_and_qa_approves_it(web):
    appl, app = web
    tech, qa = client_as(app, "tom"), client_as(app, "quinn")
    imgs = vials(16)
    imgs[0] = stained(imgs[0])  # a defect in the "good" set: the page must name it
    shas = upload(tech, imgs, "vials")
    r = tech.post("/api/tech/labels/good", json={"images": shas})
    assert r.status_code == 200
    assert "vials: 16 marked good" in tech.get("/tech/anomaly").text
    body = {"name": "vial-anomaly", "version": "1.0.0", "input": "320x256", "memory": 300}
    r = tech.post("/api/tech/anomaly/fit", json={**body, "images": shas})  # in this order
    assert r.status_code == 200, r.text
    jid = r.json()["job"]
    assert r.json()["images"] == 16
    again = tech.post("/api/tech/anomaly/fit", json={**body, "product": "vials", "version": "2"})
    assert again.status_code == 409  # one job at a time
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        st = tech.get(f"/api/jobs/{jid}").json()
        if st["state"] != "running":
            break
        time.sleep(2)
    assert st["state"] == "finished", st["log"][-2000:]
    res = st["result"]
    assert res["teach"] == 13 and res["held"] == 3 and res["verify_passed"], res
    stained_sha = shas[0]
    assert stained_sha in res["outliers"]  # named, and left out of the threshold
    held = [s for i, s in enumerate(shas) if i % 5 == 4]
    assert sorted(res["unseen"]) == sorted(held)

    page = tech.get(f"/tech/anomaly/{jid}").text
    assert page.count("<svg") == 2 and "threshold" in page
    assert stained_sha in page and "scored far out" in page
    assert f"{res['unseen_above']} of 3 held-back good images" in page

    reg = ModelRegistry(model_roots(appl.cfg.records.state_dir, appl.cfg.inference.models_dir))
    card = reg.card("vial-anomaly", "1.0.0")
    assert card.status == "candidate" and card.task == "anomaly"
    assert sorted(card.dataset["images_sha256"]) == sorted(set(shas) - set(held))
    assert card.verify["passed"] and len(card.verify["scores"]) == 3
    sign = {"password": "qa-secret-1", "reason": "good vials, held-back images verified"}
    assert tech.post("/api/models/vial-anomaly/1.0.0/approve", json=sign).status_code == 403
    r = qa.post("/api/models/vial-anomaly/1.0.0/approve", json=sign)
    assert r.status_code == 200, r.text
    assert reg.card("vial-anomaly", "1.0.0").status == "approved"
    assert "/models/vial-anomaly/1.0.0/scores.svg" in qa.get("/models").text  # what QA signs
    svg = qa.get("/models/vial-anomaly/1.0.0/scores.svg")
    assert svg.status_code == 200 and "<svg" in svg.text and "threshold" in svg.text
    assert qa.get("/models/vial-anomaly/9/scores.svg").status_code == 404
    acts = [e["action"] for e in app.state.ctx.audit.entries()]
    assert "anomaly.fit.start" in acts and "model.approve" in acts and "esign" in acts
